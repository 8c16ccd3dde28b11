use super::*;

fn pat(s: &str) -> ResourcePattern {
    ResourcePattern::parse(s).unwrap()
}

#[test]
fn resource_patterns_parse() {
    assert_eq!(pat("a/b"), ResourcePattern::Exact("a/b".into()));
    assert_eq!(pat("a/*"), ResourcePattern::Prefix("a/".into()));
    assert_eq!(pat("*"), ResourcePattern::Prefix(String::new()));
    for bad in ["", "a*b", "*a", "a/**", "**"] {
        assert!(ResourcePattern::parse(bad).is_err(), "{bad}");
    }
    assert_eq!(pat("a/*").to_string(), "a/*");
}

#[test]
fn resource_matching() {
    assert!(pat("a/b").matches("a/b"));
    assert!(!pat("a/b").matches("a/bc"));
    assert!(pat("a/*").matches("a/"));
    assert!(pat("a/*").matches("a/b/c"));
    assert!(!pat("a/*").matches("a"));
    assert!(pat("*").matches("anything"));
}

#[test]
fn resource_narrowing() {
    assert!(pat("a/b").is_within(&pat("a/b")));
    assert!(pat("a/b").is_within(&pat("a/*")));
    assert!(pat("a/b/*").is_within(&pat("a/*")));
    assert!(pat("a/*").is_within(&pat("a/*")));
    assert!(pat("a/*").is_within(&pat("*")));
    // Widening.
    assert!(!pat("a/*").is_within(&pat("a/b")));
    assert!(!pat("*").is_within(&pat("a/*")));
    assert!(!pat("b/x").is_within(&pat("a/*")));
    assert!(!pat("a*").is_within(&pat("a/*")));
    // A literal that merely looks like the parent's pattern is not within a literal parent.
    assert!(!pat("a/bc").is_within(&pat("a/b")));
}

#[test]
fn actions_narrowing() {
    let any = Actions::new(["*"]).unwrap();
    let rw = Actions::new(["write", "read"]).unwrap();
    let r = Actions::new(["read"]).unwrap();
    assert!(r.is_within(&rw));
    assert!(rw.is_within(&any));
    assert!(any.is_within(&any));
    assert!(!rw.is_within(&r));
    assert!(!any.is_within(&rw));
    assert!(rw.allows("read") && rw.allows("write") && !rw.allows("delete"));
    assert!(any.allows("delete"));
    assert_eq!(rw.to_strings(), vec!["read", "write"]);
    assert!(Actions::new(Vec::<String>::new()).is_err());
    assert!(Actions::new(["re*d"]).is_err());
    assert!(Actions::new([""]).is_err());
    assert_eq!(Actions::new(["read", "*"]).unwrap(), Actions::Any);
}

fn text(s: &str) -> Value {
    Value::Text(s.into())
}

#[test]
fn conditions_hold() {
    assert!(Condition::Exact(text("a")).holds(&text("a")));
    assert!(!Condition::Exact(text("a")).holds(&Value::Int(1)));
    let one_of = Condition::one_of([text("b"), text("a")]).unwrap();
    assert!(one_of.holds(&text("a")) && !one_of.holds(&text("c")));
    assert!(Condition::Prefix("ab".into()).holds(&text("abc")));
    assert!(!Condition::Prefix("ab".into()).holds(&Value::Int(1)));
    let range = Condition::range(1, 3).unwrap();
    assert!(range.holds(&Value::Int(1)) && range.holds(&Value::Int(3)));
    assert!(!range.holds(&Value::Int(4)) && !range.holds(&text("2")));
    assert!(Condition::range(3, 1).is_err());
    assert!(Condition::one_of([]).is_err());
}

#[test]
fn condition_narrowing_exact_and_one_of() {
    let exact = Condition::Exact(text("a"));
    let ab = Condition::one_of([text("a"), text("b")]).unwrap();
    let abc = Condition::one_of([text("a"), text("b"), text("c")]).unwrap();
    assert!(exact.is_within(&ab));
    assert!(ab.is_within(&abc));
    assert!(!abc.is_within(&ab));
    assert!(!ab.is_within(&exact));
    assert!(Condition::one_of([text("a")]).unwrap().is_within(&exact));
    assert!(ab.is_within(&Condition::Prefix(String::new())));
}

#[test]
fn condition_narrowing_prefix() {
    let p = Condition::Prefix("/tmp/".into());
    assert!(Condition::Prefix("/tmp/a/".into()).is_within(&p));
    assert!(!Condition::Prefix("/tm".into()).is_within(&p));
    assert!(Condition::Exact(text("/tmp/x")).is_within(&p));
    assert!(!Condition::Exact(text("/etc/x")).is_within(&p));
    // A prefix is never within a finite set.
    assert!(!p.is_within(&Condition::one_of([text("/tmp/")]).unwrap()));
    assert!(!p.is_within(&Condition::Exact(text("/tmp/"))));
}

#[test]
fn condition_narrowing_range() {
    let r = Condition::range(0, 100).unwrap();
    assert!(Condition::range(10, 20).unwrap().is_within(&r));
    assert!(Condition::range(0, 100).unwrap().is_within(&r));
    assert!(!Condition::range(-1, 20).unwrap().is_within(&r));
    assert!(!Condition::range(10, 101).unwrap().is_within(&r));
    assert!(Condition::Exact(Value::Int(5)).is_within(&r));
    assert!(!Condition::Exact(Value::Int(500)).is_within(&r));
    // A range is within a set only when the set lists every value.
    let set = Condition::one_of([Value::Int(1), Value::Int(2), Value::Int(3)]).unwrap();
    assert!(Condition::range(1, 3).unwrap().is_within(&set));
    assert!(!Condition::range(1, 4).unwrap().is_within(&set));
    assert!(
        Condition::range(2, 2)
            .unwrap()
            .is_within(&Condition::Exact(Value::Int(2)))
    );
    assert!(
        !Condition::range(i64::MIN, i64::MAX)
            .unwrap()
            .is_within(&set)
    );
    assert!(
        !Condition::range(1, 2)
            .unwrap()
            .is_within(&Condition::Prefix(String::new()))
    );
}

fn cap(resource: &str, actions: &[&str]) -> Capability {
    Capability::new(resource, actions.iter().copied()).unwrap()
}

#[test]
fn capability_narrowing_requires_every_parent_constraint() {
    let parent =
        cap("db/*", &["query"]).with_constraint("limit", Condition::range(0, 100).unwrap());
    let narrower = cap("db/users", &["query"])
        .with_constraint("limit", Condition::range(0, 10).unwrap())
        .with_constraint("table", Condition::Exact(text("users")));
    assert!(narrower.is_within(&parent));
    // Dropping the parent's constraint widens.
    assert!(!cap("db/users", &["query"]).is_within(&parent));
    // A constraint on another argument does not stand in for it.
    let other =
        cap("db/users", &["query"]).with_constraint("offset", Condition::range(0, 10).unwrap());
    assert!(!other.is_within(&parent));
    // A wider range widens.
    let wider =
        cap("db/users", &["query"]).with_constraint("limit", Condition::range(0, 1000).unwrap());
    assert!(!wider.is_within(&parent));
    // A wider action widens.
    let act = cap("db/users", &["query", "drop"])
        .with_constraint("limit", Condition::range(0, 1).unwrap());
    assert!(!act.is_within(&parent));
}

#[test]
fn permits_checks_resource_action_and_every_constraint() {
    let c = cap("files/*", &["read"])
        .with_constraint("mode", Condition::Exact(text("ro")))
        .with_constraint("size", Condition::range(0, 10).unwrap());
    let ok = Call::new("read", "files/a")
        .with_arg("mode", "ro")
        .with_arg("size", 5);
    assert!(c.permits(&ok));
    assert!(!c.permits(&Call {
        action: "write".into(),
        ..ok.clone()
    }));
    assert!(!c.permits(&Call {
        resource: "other/a".into(),
        ..ok.clone()
    }));
    assert!(!c.permits(&ok.clone().with_arg("size", 11)));
    // A constrained argument that is missing fails.
    assert!(!c.permits(&Call::new("read", "files/a").with_arg("mode", "ro")));
    // Unconstrained extra arguments are fine.
    assert!(c.permits(&ok.with_arg("extra", "x")));
}

#[test]
fn attenuation_over_sets() {
    let parent = vec![cap("a/*", &["read"]), cap("b", &["write"])];
    assert!(is_attenuation(&[cap("a/x", &["read"])], &parent));
    assert!(is_attenuation(
        &[cap("a/x", &["read"]), cap("b", &["write"])],
        &parent
    ));
    assert!(is_attenuation(&[], &parent));
    assert!(!is_attenuation(&[cap("a/x", &["write"])], &parent));
    assert!(!is_attenuation(&[cap("c", &["read"])], &parent));
}
