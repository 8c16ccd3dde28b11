//! TLS for Mandate's listeners and clients (rustls with the `ring` provider).
//!
//! - [`ServerTls`]: a certificate and key from PEM files, optionally a client CA (mTLS),
//!   reloaded from the same files without a restart ([`ServerTls::reload`]); a connection
//!   keeps the configuration it was accepted with, the next one gets the new one.
//! - [`incoming`]: a TCP listener's connections after the handshake, for tonic's
//!   `serve_with_incoming`. Handshakes run concurrently (a slow client cannot hold up the
//!   others), each within [`HANDSHAKE_TIMEOUT`], at most [`MAX_HANDSHAKES`] at once.
//! - [`spiffe_ids`]: the SPIFFE ids (URI SANs) of a peer certificate, which the coordinator
//!   checks against the agent id a request is signed as.
//! - [`ClientTls`]: the CA a client trusts and its own certificate, for tonic channels.

#![forbid(unsafe_code)]

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

pub use tonic::transport::server::TlsConnectInfo;

/// Longest a TLS handshake may take before the connection is closed.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Most handshakes in progress at once; further connections wait to be accepted.
pub const MAX_HANDSHAKES: usize = 1024;

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read `{path}`: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A file holds no PEM item of the kind needed.
    #[error("`{path}` holds no {what} (PEM)")]
    Empty {
        /// The file.
        path: PathBuf,
        /// What was looked for: "certificate" or "private key".
        what: &'static str,
    },
    /// A PEM file does not parse.
    #[error("`{path}`: {message}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// rustls refused the certificates or the key (e.g. the key does not match).
    #[error("TLS configuration: {0}")]
    Config(String),
    /// A client certificate was given without its key, or the reverse.
    #[error("a client certificate needs its key, and a key its certificate")]
    IdentityIncomplete,
}

/// Where a listener's certificate, key and (for mTLS) client CA are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerTlsFiles {
    /// The certificate chain (PEM), leaf first.
    pub cert: PathBuf,
    /// The private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// CA certificates (PEM) that client certificates must chain to; when set, every
    /// client must present a certificate (mutual TLS).
    pub client_ca: Option<PathBuf>,
}

/// The application protocols a listener offers (ALPN).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alpn {
    /// gRPC: HTTP/2 (and HTTP/1.1, which gRPC clients do not pick).
    Grpc,
    /// HTTP/1.1 only (the gateway).
    Http1,
}

/// A listener's TLS configuration, reloadable.
pub struct ServerTls {
    files: ServerTlsFiles,
    alpn: Alpn,
    current: RwLock<TlsAcceptor>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Every certificate in a PEM file (at least one).
fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Empty {
            path: path.to_owned(),
            what: "certificate",
        });
    }
    Ok(certs)
}

/// The first private key in a PEM file. The key's bytes are never part of an error.
fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::Empty {
            path: path.to_owned(),
            what: "private key",
        },
        _ => TlsError::Pem {
            path: path.to_owned(),
            message: "the private key does not parse".into(),
        },
    })
}

fn roots(path: &Path) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in certificates(path)? {
        roots.add(cert).map_err(|e| TlsError::Pem {
            path: path.to_owned(),
            message: format!("not a usable CA certificate: {e}"),
        })?;
    }
    Ok(roots)
}

fn server_config(files: &ServerTlsFiles, alpn: Alpn) -> Result<rustls::ServerConfig, TlsError> {
    let certs = certificates(&files.cert)?;
    let key = private_key(&files.key)?;
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots(ca)?),
                provider(),
            )
            .build()
            .map_err(|e| TlsError::Config(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = match alpn {
        Alpn::Grpc => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        Alpn::Http1 => vec![b"http/1.1".to_vec()],
    };
    Ok(config)
}

impl ServerTls {
    /// Loads the files; fails if any is missing or unusable.
    pub fn load(files: ServerTlsFiles, alpn: Alpn) -> Result<ServerTls, TlsError> {
        let acceptor = TlsAcceptor::from(Arc::new(server_config(&files, alpn)?));
        Ok(ServerTls {
            files,
            alpn,
            current: RwLock::new(acceptor),
        })
    }

    /// Reads the files again. On error the configuration in use stays (a half-written
    /// certificate never replaces a good one).
    pub fn reload(&self) -> Result<(), TlsError> {
        let acceptor = TlsAcceptor::from(Arc::new(server_config(&self.files, self.alpn)?));
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = acceptor;
        Ok(())
    }

    /// The acceptor for the next connection.
    pub fn acceptor(&self) -> TlsAcceptor {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Whether clients must present a certificate.
    pub fn mutual(&self) -> bool {
        self.files.client_ca.is_some()
    }

    /// The files.
    pub fn files(&self) -> &ServerTlsFiles {
        &self.files
    }
}

/// The connections of `listener` once their handshake completes, for tonic's
/// `serve_with_incoming`. A failed or slow handshake closes that connection only. The
/// stream ends when the listener fails; the accept loop stops when the stream is dropped.
pub fn incoming(
    listener: TcpListener,
    tls: Arc<ServerTls>,
) -> tokio_stream::wrappers::ReceiverStream<Result<TlsStream<TcpStream>, io::Error>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let handshakes = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
    tokio::spawn(async move {
        loop {
            let Ok(permit) = Arc::clone(&handshakes).acquire_owned().await else {
                return;
            };
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = tx.closed() => return,
            };
            let (tcp, peer) = match accepted {
                Ok(conn) => conn,
                Err(e) if transient(&e) => {
                    tracing::debug!(error = %e, "accept failed; continuing");
                    continue;
                }
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            };
            // See the plaintext listener: responses are written in several pieces.
            let _ = tcp.set_nodelay(true);
            let acceptor = tls.acceptor();
            let tx = tx.clone();
            tokio::spawn(async move {
                let _permit = permit;
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let _ = tx.send(Ok(stream)).await;
                    }
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// Accept errors that concern one connection (or a passing shortage), not the listener.
fn transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    ) || e
        .raw_os_error()
        .is_some_and(|code| code == 24 || code == 23) // EMFILE, ENFILE
}

/// The SPIFFE ids (`spiffe://` URI subject alternative names) of a DER certificate, or
/// why they cannot be read.
fn read_spiffe_ids(cert: &[u8]) -> Result<Vec<String>, &'static str> {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(cert) else {
        return Err("the client certificate does not parse");
    };
    let san = match cert.subject_alternative_name() {
        Ok(Some(san)) => san,
        Ok(None) => return Ok(Vec::new()),
        Err(_) => return Err("the client certificate's SAN does not parse"),
    };
    Ok(san
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            x509_parser::extensions::GeneralName::URI(uri) if uri.starts_with("spiffe://") => {
                Some((*uri).to_owned())
            }
            _ => None,
        })
        .collect())
}

/// The SPIFFE ids (`spiffe://` URI subject alternative names) of a DER certificate. A
/// certificate that does not parse has none.
pub fn spiffe_ids(cert: &[u8]) -> Vec<String> {
    read_spiffe_ids(cert).unwrap_or_default()
}

/// What a connection's client certificate says about who the client is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerIdentity {
    /// No client certificate, or one without a SPIFFE id: no identity claim.
    None,
    /// Exactly one SPIFFE id.
    Spiffe(String),
    /// A certificate that cannot be read, or names several SPIFFE ids (an SVID has
    /// exactly one): refused rather than ignored.
    Invalid(&'static str),
}

/// The identity the client certificate of a connection claims.
pub fn peer_identity<T>(info: &TlsConnectInfo<T>) -> PeerIdentity {
    let Some(certs) = info.peer_certs() else {
        return PeerIdentity::None;
    };
    let Some(leaf) = certs.first() else {
        return PeerIdentity::None;
    };
    let ids = match read_spiffe_ids(leaf) {
        Ok(ids) => ids,
        Err(why) => return PeerIdentity::Invalid(why),
    };
    let mut ids = ids.into_iter();
    match (ids.next(), ids.next()) {
        (None, _) => PeerIdentity::None,
        (Some(id), None) => PeerIdentity::Spiffe(id),
        (Some(_), Some(_)) => {
            PeerIdentity::Invalid("the client certificate names several SPIFFE ids")
        }
    }
}

/// What a client trusts and, for mTLS, presents.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientTls {
    /// CA certificates (PEM) the server's certificate must chain to.
    pub ca: Option<PathBuf>,
    /// The client's certificate chain (PEM), for mTLS.
    pub cert: Option<PathBuf>,
    /// The client's private key (PEM), for mTLS.
    pub key: Option<PathBuf>,
}

impl ClientTls {
    /// Whether any file is named (a client with none connects in plaintext).
    pub fn is_set(&self) -> bool {
        self.ca.is_some() || self.cert.is_some() || self.key.is_some()
    }

    /// The tonic configuration: the files are read and checked now.
    pub fn tonic_config(&self) -> Result<tonic::transport::ClientTlsConfig, TlsError> {
        let mut config = tonic::transport::ClientTlsConfig::new();
        if let Some(ca) = &self.ca {
            let pem = read(ca)?;
            // Parse now so a bad file is reported by name, not as a handshake failure.
            roots(ca)?;
            config = config.ca_certificate(tonic::transport::Certificate::from_pem(pem));
        }
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                certificates(cert)?;
                private_key(key)?;
                config = config.identity(tonic::transport::Identity::from_pem(
                    read(cert)?,
                    read(key)?,
                ));
            }
            (None, None) => {}
            _ => return Err(TlsError::IdentityIncomplete),
        }
        Ok(config)
    }
}

#[cfg(any(test, feature = "test-pki"))]
pub mod test_pki;

#[cfg(test)]
mod tests;
