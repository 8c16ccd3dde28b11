//! Obligations: what a permitting policy requires, read from its annotations.

use std::fmt;

/// Requirements attached to a permit. Several permits may apply; the tightest value of
/// each obligation wins.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Obligations {
    /// `@max_ttl("15m")`: the longest lifetime of the link, ms.
    pub max_ttl_ms: Option<u64>,
    /// `@max_depth("2")`: the deepest link allowed below the root (the root is depth 0).
    pub max_depth: Option<u32>,
    /// `@require_approval`: a person must approve the grant before it is issued.
    pub require_approval: bool,
    /// `@require_online`: every call must be checked online with `Authorize`.
    pub require_online: bool,
}

/// Annotation keys Mandate understands. Any other key is refused, so a misspelt
/// obligation cannot be silently ignored.
pub(crate) const KNOWN: &[&str] = &[
    "id",
    "reason",
    "description",
    "max_ttl",
    "max_depth",
    "require_approval",
    "require_online",
];

impl Obligations {
    /// Combines two sets of obligations, keeping the tightest of each.
    pub fn tighten(&mut self, other: &Obligations) {
        self.max_ttl_ms = min_opt(self.max_ttl_ms, other.max_ttl_ms);
        self.max_depth = min_opt(self.max_depth, other.max_depth);
        self.require_approval |= other.require_approval;
        self.require_online |= other.require_online;
    }

    /// Whether no obligation is set.
    pub fn is_empty(&self) -> bool {
        *self == Obligations::default()
    }

    /// Reads one annotation into `self`. `Ok(false)` for keys that carry no obligation.
    pub(crate) fn read(&mut self, key: &str, value: &str) -> Result<bool, String> {
        match key {
            "max_ttl" => self.max_ttl_ms = Some(parse_duration(value)?),
            "max_depth" => {
                let d: u32 = value.trim().parse().map_err(|_| {
                    format!("@max_depth(\"{value}\") must be a whole number of hops")
                })?;
                if d > 15 {
                    return Err(format!("@max_depth(\"{value}\") is above the limit of 15"));
                }
                self.max_depth = Some(d);
            }
            "require_approval" => self.require_approval = parse_flag(key, value)?,
            "require_online" => self.require_online = parse_flag(key, value)?,
            _ => return Ok(false),
        }
        Ok(true)
    }
}

impl fmt::Display for Obligations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(t) = self.max_ttl_ms {
            parts.push(format!("max_ttl {}", format_duration(t)));
        }
        if let Some(d) = self.max_depth {
            parts.push(format!("max_depth {d}"));
        }
        if self.require_approval {
            parts.push("require_approval".to_owned());
        }
        if self.require_online {
            parts.push("require_online".to_owned());
        }
        if parts.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

fn min_opt<T: Ord>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

fn parse_flag(key: &str, value: &str) -> Result<bool, String> {
    match value.trim() {
        "" | "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!(
            "@{key}(\"{value}\") must be empty, \"true\" or \"false\""
        )),
    }
}

/// Parses `90s`, `15m`, `1h`, `1h30m` or `500ms` into milliseconds (above 0).
pub(crate) fn parse_duration(s: &str) -> Result<u64, String> {
    let bad = || format!("`{s}` is not a duration such as \"90s\", \"15m\", \"1h30m\"");
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total: u64 = 0;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let (unit, len) = if rest.starts_with("ms") {
            (1, 2)
        } else if rest.starts_with('s') {
            (1_000, 1)
        } else if rest.starts_with('m') {
            (60_000, 1)
        } else if rest.starts_with('h') {
            (3_600_000, 1)
        } else if rest.starts_with('d') {
            (86_400_000, 1)
        } else {
            return Err(bad());
        };
        rest = &rest[len..];
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
    }
    if total == 0 {
        return Err(bad());
    }
    Ok(total)
}

/// Formats milliseconds the way [`parse_duration`] reads them.
pub(crate) fn format_duration(ms: u64) -> String {
    if ms.is_multiple_of(3_600_000) {
        format!("{}h", ms / 3_600_000)
    } else if ms.is_multiple_of(60_000) {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1_000) {
        format!("{}s", ms / 1_000)
    } else {
        format!("{ms}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Ok(90_000));
        assert_eq!(parse_duration("15m"), Ok(900_000));
        assert_eq!(parse_duration("1h30m"), Ok(5_400_000));
        assert_eq!(parse_duration("250ms"), Ok(250));
        assert_eq!(parse_duration("1d"), Ok(86_400_000));
        for bad in [
            "",
            "0s",
            "15",
            "m",
            "1x",
            "-1s",
            "1.5h",
            "99999999999999999999h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(format_duration(5_400_000), "90m");
        assert_eq!(format_duration(3_600_000), "1h");
        assert_eq!(format_duration(1_500), "1500ms");
    }

    #[test]
    fn tightest_wins() {
        let mut a = Obligations {
            max_ttl_ms: Some(900_000),
            max_depth: None,
            require_approval: false,
            require_online: true,
        };
        a.tighten(&Obligations {
            max_ttl_ms: Some(300_000),
            max_depth: Some(2),
            require_approval: true,
            require_online: false,
        });
        assert_eq!(
            a,
            Obligations {
                max_ttl_ms: Some(300_000),
                max_depth: Some(2),
                require_approval: true,
                require_online: true,
            }
        );
        assert_eq!(
            a.to_string(),
            "max_ttl 5m, max_depth 2, require_approval, require_online"
        );
    }

    #[test]
    fn annotations() {
        let mut o = Obligations::default();
        assert_eq!(o.read("max_ttl", "1h"), Ok(true));
        assert_eq!(o.read("require_approval", ""), Ok(true));
        assert_eq!(o.read("reason", "anything"), Ok(false));
        assert!(o.read("max_depth", "16").is_err());
        assert!(o.read("max_depth", "two").is_err());
        assert!(o.read("require_online", "yes").is_err());
        assert_eq!(o.max_ttl_ms, Some(3_600_000));
        assert!(o.require_approval);
    }
}
