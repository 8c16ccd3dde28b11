//! Errors from building tokens and handling keys.
//!
//! Verification failures are not errors: they are [`Denial`](crate::Denial) values with a
//! stable [`Reason`](crate::Reason).

use std::path::PathBuf;

use crate::reason::Denial;

/// An error from building, signing or loading something.
///
/// Messages are lowercase, name user input in backticks and never contain key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An agent id is not a valid `spiffe://<trust-domain>/<path>` name.
    #[error("invalid agent id `{id}`: {why}")]
    InvalidAgentId {
        /// The offending id (truncated to 64 characters).
        id: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// Hex text of the wrong length or with non-hex characters.
    #[error("invalid {what}: expected {len} bytes of hex")]
    InvalidHex {
        /// What was being parsed.
        what: &'static str,
        /// Expected length in bytes.
        len: usize,
    },
    /// A resource pattern is not a literal or a literal prefix followed by one final `*`.
    #[error("invalid resource pattern `{0}`: `*` is allowed only once, as the last character")]
    InvalidResourcePattern(String),
    /// A capability, constraint or link field is not acceptable.
    #[error("invalid {what}: {why}")]
    Invalid {
        /// The field or structure.
        what: &'static str,
        /// What is wrong with it.
        why: String,
    },
    /// A public key is not a valid, non-weak Ed25519 point encoding.
    #[error("invalid public key: {0}")]
    InvalidKey(&'static str),
    /// A key file could not be read or written.
    #[error("key file `{path}`: {source}")]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A key file is readable by other users, so the key may have leaked.
    #[error(
        "key file `{path}` is readable by group or others (mode {mode:o}); run `chmod 600` on it"
    )]
    KeyFilePermissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A key file does not hold a PKCS#8 PEM Ed25519 key.
    #[error("key file `{path}` does not hold a PKCS#8 PEM Ed25519 private key")]
    KeyFileFormat {
        /// The file.
        path: PathBuf,
    },
    /// The operating system's random number generator failed.
    #[error("the operating system's random number generator failed")]
    Randomness,
    /// Something built locally would not pass verification (for example a delegation that
    /// widens its parent).
    ///
    /// The denial is the whole error, not a cause: it is not reported as `source()`, so
    /// error chains print it once.
    #[error("would be rejected: {0}")]
    Rejected(Denial),
}

impl From<Denial> for Error {
    fn from(d: Denial) -> Error {
        Error::Rejected(d)
    }
}
