//! Identifiers: agent ids (validated workload names), link and task ids, digests.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

use crate::error::Error;

/// Longest agent id accepted, in bytes.
pub const MAX_AGENT_ID_LEN: usize = 255;

/// A workload identity: `spiffe://<trust-domain>/<path>`.
///
/// The trust domain is lowercase letters, digits, `.`, `-` and `_`. The path is one or
/// more non-empty segments of letters, digits, `.`, `-` and `_`, none of them `.` or `..`.
/// No query, fragment, port or user info. At most [`MAX_AGENT_ID_LEN`] bytes.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AgentId(String);

impl AgentId {
    /// Validates `s` as an agent id.
    pub fn new(s: impl Into<String>) -> Result<AgentId, Error> {
        let s = s.into();
        validate_agent_id(&s).map_err(|why| Error::InvalidAgentId {
            id: truncate_for_error(&s),
            why,
        })?;
        Ok(AgentId(s))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The trust domain, e.g. `example.org`.
    pub fn trust_domain(&self) -> &str {
        let rest = &self.0["spiffe://".len()..];
        rest.split('/').next().unwrap_or_default()
    }
}

fn truncate_for_error(s: &str) -> String {
    s.chars().take(64).collect()
}

fn validate_agent_id(s: &str) -> Result<(), &'static str> {
    if s.len() > MAX_AGENT_ID_LEN {
        return Err("longer than 255 bytes");
    }
    let rest = s
        .strip_prefix("spiffe://")
        .ok_or("must start with `spiffe://`")?;
    let (domain, path) = rest
        .split_once('/')
        .ok_or("needs a path after the trust domain")?;
    if domain.is_empty() {
        return Err("empty trust domain");
    }
    if !domain
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_'))
    {
        return Err("trust domain may hold only lowercase letters, digits, `.`, `-` and `_`");
    }
    for segment in path.split('/') {
        if segment.is_empty() {
            return Err("empty path segment");
        }
        if segment == "." || segment == ".." {
            return Err("path segment `.` or `..`");
        }
        if !segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        {
            return Err("path may hold only letters, digits, `.`, `-`, `_` and `/`");
        }
    }
    Ok(())
}

impl FromStr for AgentId {
    type Err = Error;
    fn from_str(s: &str) -> Result<AgentId, Error> {
        AgentId::new(s)
    }
}

/// An agent id reads as the text it is (it is validated text): `&AgentId` works where a
/// `&str` is wanted.
impl std::ops::Deref for AgentId {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for AgentId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for AgentId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for AgentId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for AgentId {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl PartialEq<String> for AgentId {
    fn eq(&self, other: &String) -> bool {
        &self.0 == other
    }
}

impl PartialEq<AgentId> for String {
    fn eq(&self, other: &AgentId) -> bool {
        *self == other.0
    }
}

impl PartialEq<AgentId> for str {
    fn eq(&self, other: &AgentId) -> bool {
        self == other.0
    }
}

impl PartialEq<AgentId> for &str {
    fn eq(&self, other: &AgentId) -> bool {
        *self == other.0
    }
}

impl From<AgentId> for String {
    fn from(id: AgentId) -> String {
        id.0
    }
}

impl fmt::Display for AgentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for AgentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AgentId({})", self.0)
    }
}

/// Writes bytes as lowercase hex.
pub(crate) fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    // One write per 32 bytes instead of a formatting call per byte: revoking a large tree
    // prints every id in it.
    let mut buf = [0u8; 64];
    for chunk in bytes.chunks(32) {
        for (i, b) in chunk.iter().enumerate() {
            buf[2 * i] = DIGITS[usize::from(b >> 4)];
            buf[2 * i + 1] = DIGITS[usize::from(b & 0x0f)];
        }
        f.write_str(std::str::from_utf8(&buf[..2 * chunk.len()]).map_err(|_| fmt::Error)?)?;
    }
    Ok(())
}

fn parse_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != N * 2 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&s[i * 2..i * 2 + 2], 16).ok()?;
    }
    Some(out)
}

macro_rules! byte_id {
    ($(#[$doc:meta])* $name:ident, $len:expr, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name([u8; $len]);

        impl $name {
            /// Length in bytes.
            pub const LEN: usize = $len;

            /// Wraps raw bytes.
            pub const fn from_bytes(bytes: [u8; $len]) -> $name {
                $name(bytes)
            }

            /// Reads exactly [`Self::LEN`] bytes.
            pub fn from_slice(bytes: &[u8]) -> Option<$name> {
                bytes.try_into().ok().map($name)
            }

            /// The raw bytes.
            pub const fn as_bytes(&self) -> &[u8; $len] {
                &self.0
            }

            /// Parses lowercase or uppercase hex.
            pub fn from_hex(s: &str) -> Result<$name, Error> {
                parse_hex::<$len>(s)
                    .map($name)
                    .ok_or_else(|| Error::InvalidHex { what: $what, len: $len })
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write_hex(f, &self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "("))?;
                write_hex(f, &self.0)?;
                write!(f, ")")
            }
        }

        impl FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<$name, Error> {
                $name::from_hex(s)
            }
        }
    };
}

byte_id!(
    /// A link's random 128-bit id: what revocation names.
    LinkId,
    16,
    "link id"
);
byte_id!(
    /// A task's 128-bit id.
    TaskId,
    16,
    "task id"
);
byte_id!(
    /// A SHA-256 digest.
    Digest,
    32,
    "digest"
);

impl LinkId {
    /// A fresh random id from the operating system's generator.
    pub fn random() -> Result<LinkId, Error> {
        random_bytes().map(LinkId)
    }
}

impl TaskId {
    /// A fresh random id from the operating system's generator.
    pub fn random() -> Result<TaskId, Error> {
        random_bytes().map(TaskId)
    }
}

impl Digest {
    /// SHA-256 over the concatenation of `parts`.
    pub fn of(parts: &[&[u8]]) -> Digest {
        let mut h = Sha256::new();
        for p in parts {
            h.update(p);
        }
        Digest(h.finalize().into())
    }
}

pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N], Error> {
    let mut out = [0u8; N];
    getrandom::fill(&mut out).map_err(|_| Error::Randomness)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_ids_accept_spiffe_names() {
        for ok in [
            "spiffe://example.org/planner",
            "spiffe://acme.example/agent/worker-1",
            "spiffe://a_b-c.d/x/y.z/W_1",
        ] {
            let id = AgentId::new(ok).unwrap();
            assert_eq!(id.as_str(), ok);
        }
        assert_eq!(
            AgentId::new("spiffe://acme.example/agent/w")
                .unwrap()
                .trust_domain(),
            "acme.example"
        );
    }

    #[test]
    fn agent_ids_reject_everything_else() {
        let long = format!("spiffe://d/{}", "a".repeat(250));
        for bad in [
            "",
            "planner",
            "https://example.org/planner",
            "spiffe://example.org",
            "spiffe://example.org/",
            "spiffe:///planner",
            "spiffe://Example.org/planner",
            "spiffe://example.org//planner",
            "spiffe://example.org/a/../b",
            "spiffe://example.org/a/./b",
            "spiffe://example.org/planner?x=1",
            "spiffe://example.org/planner#f",
            "spiffe://user@example.org/planner",
            "spiffe://example.org:443/planner",
            "spiffe://example.org/plan ner",
            long.as_str(),
        ] {
            let err = AgentId::new(bad).unwrap_err();
            assert!(
                matches!(err, Error::InvalidAgentId { .. }),
                "{bad:?} gave {err:?}"
            );
        }
    }

    #[test]
    fn ids_print_and_parse_as_hex() {
        let id = LinkId::from_bytes([0xab; 16]);
        let text = id.to_string();
        assert_eq!(text, "ab".repeat(16));
        assert_eq!(text.parse::<LinkId>().unwrap(), id);
        assert_eq!(format!("{id:?}"), format!("LinkId({text})"));
        assert!("abc".parse::<LinkId>().is_err());
        assert!("zz".repeat(16).parse::<LinkId>().is_err());
        assert!(TaskId::from_slice(&[1; 15]).is_none());
        let bytes: [u8; 32] = std::array::from_fn(|i| (i * 37 + 5) as u8);
        let want: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(Digest::from_bytes(bytes).to_string(), want);
    }

    #[test]
    fn random_ids_differ() {
        assert_ne!(LinkId::random().unwrap(), LinkId::random().unwrap());
    }

    #[test]
    fn digest_of_parts_is_digest_of_concatenation() {
        assert_eq!(Digest::of(&[b"ab", b"c"]), Digest::of(&[b"abc"]));
        // SHA-256("abc")
        assert_eq!(
            Digest::of(&[b"abc"]).to_string(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
