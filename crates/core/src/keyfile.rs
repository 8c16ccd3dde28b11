//! Private key files: PKCS#8 PEM, created with mode 0600, refused when others can read them.
//!
//! This is the only file system access in `mandate-core`.

use std::fs;
use std::io::Write as _;
use std::path::Path;

use zeroize::Zeroizing;

use crate::crypto::SigningKey;
use crate::error::Error;

/// Writes `key` to a new file at `path` with mode 0600. Refuses to overwrite an existing
/// file, so a key is never silently replaced.
pub fn save_signing_key(key: &SigningKey, path: &Path) -> Result<(), Error> {
    let io_err = |source| Error::KeyFile {
        path: path.to_owned(),
        source,
    };
    let pem = key.to_pkcs8_pem()?;
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(io_err)?;
    file.write_all(pem.as_bytes()).map_err(io_err)?;
    file.sync_all().map_err(io_err)?;
    Ok(())
}

/// Reads a PKCS#8 PEM Ed25519 key from `path`. On Unix, refuses a file that group or
/// others can read.
pub fn load_signing_key(path: &Path) -> Result<SigningKey, Error> {
    let io_err = |source| Error::KeyFile {
        path: path.to_owned(),
        source,
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = fs::metadata(path).map_err(io_err)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(Error::KeyFilePermissions {
                path: path.to_owned(),
                mode,
            });
        }
    }
    let pem = Zeroizing::new(fs::read_to_string(path).map_err(io_err)?);
    SigningKey::from_pkcs8_pem(&pem).ok_or_else(|| Error::KeyFileFormat {
        path: path.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_then_load_gives_the_same_key_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.key");
        let key = SigningKey::generate().unwrap();
        save_signing_key(&key, &path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let loaded = load_signing_key(&path).unwrap();
        assert_eq!(loaded.public_key(), key.public_key());
    }

    #[test]
    fn save_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.key");
        save_signing_key(&SigningKey::generate().unwrap(), &path).unwrap();
        let err = save_signing_key(&SigningKey::generate().unwrap(), &path).unwrap_err();
        assert!(matches!(err, Error::KeyFile { .. }), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn load_refuses_a_world_readable_file() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.key");
        save_signing_key(&SigningKey::generate().unwrap(), &path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = load_signing_key(&path).unwrap_err();
        assert!(matches!(err, Error::KeyFilePermissions { mode: 0o644, .. }));
        assert!(err.to_string().contains("chmod 600"));
    }

    #[test]
    fn load_rejects_garbage_without_echoing_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.key");
        save_signing_key(&SigningKey::generate().unwrap(), &path).unwrap();
        fs::write(&path, "secret-looking-garbage").unwrap();
        let err = load_signing_key(&path).unwrap_err();
        assert!(matches!(err, Error::KeyFileFormat { .. }));
        assert!(!err.to_string().contains("secret-looking-garbage"));
        assert!(load_signing_key(&dir.path().join("missing.key")).is_err());
    }
}
