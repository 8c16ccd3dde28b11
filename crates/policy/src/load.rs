//! Loading a policy set: parsing, ids, obligations, validation against the schema, hash.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use cedar_policy::{
    ActionConstraint, Effect, EntityUid, PolicyId, PrincipalConstraint, Schema, ValidationMode,
    Validator,
};
use miette::Diagnostic;
use sha2::{Digest, Sha256};

use crate::decide::Action;
use crate::obligations::{KNOWN, Obligations};
use crate::{DEFAULT_POLICIES, SCHEMA};

/// Why a policy set was refused.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A file or directory could not be read.
    #[error("cannot read `{path}`: {error}")]
    Io {
        /// What was read.
        path: PathBuf,
        /// Why it failed.
        error: std::io::Error,
    },
    /// The policies are not valid; every problem found is listed, one per line, as
    /// `file:line:column: message`.
    #[error("the policy set was refused ({} problem{}):\n{}", problems.len(), if problems.len() == 1 { "" } else { "s" }, problems.join("\n"))]
    Invalid {
        /// One message per problem.
        problems: Vec<String>,
    },
}

/// What the engine knows about one policy besides its Cedar text.
#[derive(Clone, Debug)]
pub(crate) struct Meta {
    pub(crate) obligations: Obligations,
    pub(crate) reason: Option<String>,
}

/// A validated policy set. Cheap to share behind an `Arc`; replaced whole on reload.
pub struct PolicySet {
    pub(crate) set: cedar_policy::PolicySet,
    /// The policies whose scope can match each (action, principal is human): Cedar
    /// evaluates every policy it is given, so each decision only gets its slice.
    pub(crate) slices: HashMap<(Action, bool), cedar_policy::PolicySet>,
    pub(crate) schema: Arc<Schema>,
    pub(crate) authorizer: cedar_policy::Authorizer,
    pub(crate) meta: HashMap<PolicyId, Meta>,
    hash: String,
    files: Vec<String>,
    sources: Vec<(String, String)>,
}

impl std::fmt::Debug for PolicySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicySet")
            .field("hash", &self.hash)
            .field("files", &self.files)
            .field("policies", &self.meta.len())
            .finish_non_exhaustive()
    }
}

/// The schema, parsed once.
fn schema() -> Result<Arc<Schema>, LoadError> {
    static PARSED: std::sync::OnceLock<Result<Arc<Schema>, String>> = std::sync::OnceLock::new();
    PARSED
        .get_or_init(|| {
            Schema::from_cedarschema_str(SCHEMA)
                .map(|(s, _)| Arc::new(s))
                .map_err(|e| format!("the built-in schema does not parse: {e}"))
        })
        .clone()
        .map_err(|e| LoadError::Invalid { problems: vec![e] })
}

/// `file:line:column` of a byte offset.
fn position(file: &str, text: &str, offset: usize) -> String {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("{file}:{line}:{column}")
}

/// Formats a Cedar diagnostic with the position of its first label.
fn problem(file: &str, text: &str, d: &dyn Diagnostic) -> String {
    let at = d
        .labels()
        .and_then(|mut l| l.next())
        .map_or_else(|| file.to_owned(), |l| position(file, text, l.offset()));
    let mut msg = format!("{at}: {d}");
    if let Some(help) = d.help() {
        msg.push_str(&format!(" (help: {help})"));
    }
    msg
}

impl PolicySet {
    /// The policy set shipped with Mandate ([`DEFAULT_POLICIES`]).
    pub fn default_set() -> Result<PolicySet, LoadError> {
        PolicySet::from_sources(&[("default.cedar".to_owned(), DEFAULT_POLICIES.to_owned())])
    }

    /// Every `*.cedar` file of `dir` (not recursive), in name order.
    pub fn load_dir(dir: &Path) -> Result<PolicySet, LoadError> {
        PolicySet::from_sources(&PolicySet::read_dir(dir)?)
    }

    /// The `*.cedar` files of `dir` (not recursive) as (name, text), in name order, without
    /// checking them; none is an error.
    pub fn read_dir(dir: &Path) -> Result<Vec<(String, String)>, LoadError> {
        let io = |path: &Path, error| LoadError::Io {
            path: path.to_owned(),
            error,
        };
        let mut sources = BTreeMap::new();
        for entry in std::fs::read_dir(dir).map_err(|e| io(dir, e))? {
            let path = entry.map_err(|e| io(dir, e))?.path();
            if path.extension().is_some_and(|e| e == "cedar") && path.is_file() {
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let text = std::fs::read_to_string(&path).map_err(|e| io(&path, e))?;
                sources.insert(name, text);
            }
        }
        if sources.is_empty() {
            return Err(LoadError::Invalid {
                problems: vec![format!(
                    "`{}` holds no `*.cedar` file: an empty set would deny everything (write `forbid (principal, action, resource);` if that is what you want)",
                    dir.display()
                )],
            });
        }
        Ok(sources.into_iter().collect())
    }

    /// A set from `(file name, text)` pairs. Policy ids come from `@id("...")`, or are
    /// `<file stem>:<n>` for the n-th policy of the file (from 1).
    pub fn from_sources(sources: &[(String, String)]) -> Result<PolicySet, LoadError> {
        let schema = schema()?;
        let mut problems = Vec::new();
        let mut set = cedar_policy::PolicySet::new();
        let mut meta = HashMap::new();
        // Where each policy came from, to place validation errors.
        let mut origin: HashMap<PolicyId, (String, &str)> = HashMap::new();
        let mut hasher = Sha256::new();
        hasher.update(b"mandate-policy-v1\0");
        hasher.update((SCHEMA.len() as u64).to_be_bytes());
        hasher.update(SCHEMA.as_bytes());
        let mut files: Vec<&(String, String)> = sources.iter().collect();
        files.sort_by(|a, b| a.0.cmp(&b.0));
        for (file, text) in &files {
            for part in [file.as_bytes(), text.as_bytes()] {
                hasher.update((part.len() as u64).to_be_bytes());
                hasher.update(part);
            }
            let parsed = match cedar_policy::PolicySet::from_str(text) {
                Ok(p) => p,
                Err(e) => {
                    problems.extend(e.iter().map(|d| problem(file, text, d)));
                    continue;
                }
            };
            if parsed.templates().next().is_some() {
                problems.push(format!(
                    "{file}: templates (`?principal`, `?resource`) are not supported"
                ));
                continue;
            }
            // Cedar names the policies of a text `policy0`, `policy1`, ... in order.
            let mut policies: Vec<_> = parsed.policies().collect();
            policies.sort_by_key(|p| {
                p.id()
                    .to_string()
                    .trim_start_matches("policy")
                    .parse::<usize>()
                    .unwrap_or(usize::MAX)
            });
            let stem = file.strip_suffix(".cedar").unwrap_or(file);
            for (n, policy) in policies.into_iter().enumerate() {
                let id = policy
                    .annotation("id")
                    .map_or_else(|| format!("{stem}:{}", n + 1), str::to_owned);
                let at = file.as_str();
                let mut m = Meta {
                    obligations: Obligations::default(),
                    reason: None,
                };
                for (key, value) in policy.annotations() {
                    if !KNOWN.contains(&key) {
                        problems.push(format!(
                            "{at}: policy `{id}`: unknown annotation `@{key}` (known: {})",
                            KNOWN.join(", ")
                        ));
                        continue;
                    }
                    match m.obligations.read(key, value) {
                        Ok(true) if policy.effect() == Effect::Forbid => problems.push(format!(
                            "{at}: policy `{id}`: `@{key}` is an obligation; only a permit can carry one"
                        )),
                        Ok(true) => {
                            let honouring = honoured_by(key);
                            if !Action::ALL
                                .iter()
                                .any(|a| honouring.contains(a) && covers(policy, *a))
                            {
                                problems.push(format!(
                                    "{at}: policy `{id}`: `@{key}` would have no effect: it applies to {} only",
                                    honouring.iter().map(|a| a.name()).collect::<Vec<_>>().join(", ")
                                ));
                            }
                        }
                        Ok(false) => {}
                        Err(e) => problems.push(format!("{at}: policy `{id}`: {e}")),
                    }
                    if key == "reason" {
                        m.reason = Some(value.to_owned());
                    }
                }
                if id.is_empty() || id.len() > 128 || id.chars().any(char::is_control) {
                    problems.push(format!(
                        "{at}: policy id `{id}` must be 1 to 128 printable characters"
                    ));
                    continue;
                }
                let pid = PolicyId::new(&id);
                if let Some((other, _)) = origin.get(&pid) {
                    problems.push(format!("{at}: policy id `{id}` is already used in {other}"));
                    continue;
                }
                if let Err(e) = set.add(policy.new_id(pid.clone())) {
                    problems.push(format!("{at}: {e}"));
                    continue;
                }
                origin.insert(pid.clone(), (file.clone(), text.as_str()));
                meta.insert(pid, m);
            }
        }
        if problems.is_empty() && meta.is_empty() {
            problems.push(
                "the set holds no policy: it would deny everything (write `forbid (principal, action, resource);` if that is what you want)".to_owned(),
            );
        }
        if problems.is_empty() {
            let result = Validator::new((*schema).clone()).validate(&set, ValidationMode::Strict);
            let place = |id: &PolicyId| {
                origin
                    .get(id)
                    .map_or(("?".to_owned(), ""), |(f, t)| (f.clone(), *t))
            };
            for e in result.validation_errors() {
                let (file, text) = place(e.policy_id());
                problems.push(format!(
                    "{} (policy `{}`)",
                    problem(&file, text, e),
                    e.policy_id()
                ));
            }
            // Warnings are refused too: an impossible policy (a forbid that can never
            // match because of a typo) or a confusable identifier is a hazard here.
            for w in result.validation_warnings() {
                let (file, text) = place(w.policy_id());
                problems.push(format!(
                    "{} (policy `{}`)",
                    problem(&file, text, w),
                    w.policy_id()
                ));
            }
        }
        if !problems.is_empty() {
            return Err(LoadError::Invalid { problems });
        }
        let hash = format!("sha256:{}", hex(&hasher.finalize()));
        let mut slices = HashMap::new();
        for action in Action::ALL {
            for human in [false, true] {
                let mut slice = cedar_policy::PolicySet::new();
                for p in set.policies() {
                    if in_scope(p, action, human) {
                        slice.add(p.clone()).map_err(|e| LoadError::Invalid {
                            problems: vec![e.to_string()],
                        })?;
                    }
                }
                slices.insert((action, human), slice);
            }
        }
        Ok(PolicySet {
            slices,
            set,
            schema,
            authorizer: cedar_policy::Authorizer::new(),
            meta,
            hash,
            files: files.iter().map(|(f, _)| f.clone()).collect(),
            sources: files.iter().map(|&f| f.clone()).collect(),
        })
    }

    /// `sha256:<hex>` over the schema and every file (name and text), in name order.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// The files the set was made of, (name, Cedar text), in name order: what
    /// [`PolicySet::from_sources`] makes the same set from.
    pub fn sources(&self) -> &[(String, String)] {
        &self.sources
    }

    /// The files the set was read from, in name order.
    pub fn files(&self) -> &[String] {
        &self.files
    }

    /// Every policy id with its effect and obligations, in id order.
    pub fn policies(&self) -> Vec<(String, bool, Obligations)> {
        let mut out: Vec<_> = self
            .set
            .policies()
            .map(|p| {
                let o = self
                    .meta
                    .get(p.id())
                    .map(|m| m.obligations)
                    .unwrap_or_default();
                (p.id().to_string(), p.effect() == Effect::Permit, o)
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

/// The actions whose decisions apply an obligation.
fn honoured_by(key: &str) -> &'static [Action] {
    match key {
        "max_ttl" | "require_online" => &[
            Action::RequestGrant,
            Action::Renew,
            Action::Delegate,
            Action::BreakGlass,
        ],
        "max_depth" => &[Action::RequestGrant, Action::Renew, Action::Delegate],
        "require_approval" => &[Action::RequestGrant],
        _ => &[],
    }
}

/// Whether the action scope of `p` includes `action`.
fn covers(p: &cedar_policy::Policy, action: Action) -> bool {
    in_scope(p, action, false) || in_scope(p, action, true)
}

/// Whether the scope of `p` can match a request for `action` by a principal of the given
/// kind. Conservative: anything not recognised stays in.
fn in_scope(p: &cedar_policy::Policy, action: Action, human: bool) -> bool {
    let kind = if human {
        "Mandate::Human"
    } else {
        "Mandate::Agent"
    };
    let is_action = |u: &EntityUid| {
        u.type_name().to_string() == "Mandate::Action" && u.id().unescaped() == action.name()
    };
    let action_ok = match p.action_constraint() {
        ActionConstraint::Any => true,
        ActionConstraint::Eq(u) => is_action(&u),
        ActionConstraint::In(list) => list.iter().any(is_action),
    };
    let principal_ok = match p.principal_constraint() {
        PrincipalConstraint::Is(t) | PrincipalConstraint::IsIn(t, _) => t.to_string() == kind,
        PrincipalConstraint::Eq(u) => u.type_name().to_string() == kind,
        PrincipalConstraint::Any | PrincipalConstraint::In(_) => true,
    };
    action_ok && principal_ok
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
