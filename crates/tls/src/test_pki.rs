//! A throwaway certificate authority for tests: a CA and leaf certificates for
//! `localhost` / `127.0.0.1`, optionally with a SPIFFE id, written as PEM files.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, KeyUsagePurpose, SanType,
};

/// A CA whose files live in one directory.
pub struct TestPki {
    dir: PathBuf,
    ca: CertifiedIssuer<'static, KeyPair>,
    name: String,
}

impl std::fmt::Debug for TestPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestPki")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// A certificate and its key, as files.
#[derive(Clone, Debug)]
pub struct Issued {
    /// The certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
}

fn write(path: &Path, text: &str) -> Result<(), rcgen::Error> {
    std::fs::write(path, text).map_err(|_| rcgen::Error::CouldNotParseCertificate)
}

impl TestPki {
    /// A new CA named `name`; its certificate is written to `<dir>/<name>-ca.pem`.
    pub fn new(dir: &Path, name: &str) -> Result<TestPki, rcgen::Error> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("{name} test CA"));
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
        let pki = TestPki {
            dir: dir.to_owned(),
            ca,
            name: name.to_owned(),
        };
        write(&pki.ca_path(), &pki.ca.pem())?;
        Ok(pki)
    }

    /// The CA certificate file.
    pub fn ca_path(&self) -> PathBuf {
        self.dir.join(format!("{}-ca.pem", self.name))
    }

    /// A leaf certificate for `localhost` and `127.0.0.1` (and `spiffe`, a URI SAN, when
    /// given), written to `<dir>/<file>.pem` and `<dir>/<file>.key`.
    pub fn issue(&self, file: &str, spiffe: Option<&str>) -> Result<Issued, rcgen::Error> {
        self.issue_ids(file, spiffe.as_slice())
    }

    /// [`TestPki::issue`] with any number of SPIFFE ids (URI SANs).
    pub fn issue_ids(&self, file: &str, spiffe: &[&str]) -> Result<Issued, rcgen::Error> {
        let mut params = CertificateParams::new(vec!["localhost".to_owned()])?;
        params
            .subject_alt_names
            .push(SanType::IpAddress([127, 0, 0, 1].into()));
        for id in spiffe {
            params
                .subject_alt_names
                .push(SanType::URI((*id).to_owned().try_into()?));
        }
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.ca)?;
        let issued = Issued {
            cert: self.dir.join(format!("{file}.pem")),
            key: self.dir.join(format!("{file}.key")),
        };
        write(&issued.cert, &cert.pem())?;
        write(&issued.key, &key.serialize_pem())?;
        Ok(issued)
    }
}

/// Sends `GET path` over HTTPS/1.1 to `addr`, trusting only the CA in `ca`, and returns
/// the whole response as text (for tests of HTTPS listeners).
pub async fn https_get(
    addr: std::net::SocketAddr,
    ca: &Path,
    path: &str,
) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let other = |e: String| std::io::Error::other(e);
    let mut roots = rustls::RootCertStore::empty();
    for cert in crate::certificates(ca).map_err(|e| other(e.to_string()))? {
        roots.add(cert).map_err(|e| other(e.to_string()))?;
    }
    let config = rustls::ClientConfig::builder_with_provider(crate::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| other(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name =
        rustls::pki_types::ServerName::try_from("localhost").map_err(|e| other(e.to_string()))?;
    let mut stream = connector.connect(name, tcp).await?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await?;
    let mut out = String::new();
    stream.read_to_string(&mut out).await?;
    Ok(out)
}
