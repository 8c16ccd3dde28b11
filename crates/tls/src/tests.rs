use std::sync::Arc;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_stream::StreamExt as _;

use super::test_pki::TestPki;
use super::*;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn files(pki: &TestPki, name: &str, mutual: bool) -> Result<ServerTlsFiles, rcgen::Error> {
    let issued = pki.issue(name, None)?;
    Ok(ServerTlsFiles {
        cert: issued.cert,
        key: issued.key,
        client_ca: mutual.then(|| pki.ca_path()),
    })
}

/// Connects with rustls directly, trusting `ca` (and presenting `identity`), writes one
/// byte and reads it back through the server side, which reports the client's SPIFFE ids.
async fn round_trip(
    listener_tls: Arc<ServerTls>,
    ca: &Path,
    identity: Option<&test_pki::Issued>,
) -> Result<Option<Vec<String>>, Box<dyn std::error::Error>> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let mut conns = incoming(listener, listener_tls);
    let server = tokio::spawn(async move {
        let mut stream = conns.next().await?.ok()?;
        let ids = {
            let (_, session) = stream.get_ref();
            session
                .peer_certificates()
                .and_then(|c| c.first().map(|leaf| spiffe_ids(leaf)))
        };
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte).await.ok()?;
        stream.write_all(&byte).await.ok()?;
        stream.flush().await.ok()?;
        Some(ids)
    });
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots(ca)?);
    let config = match identity {
        Some(id) => {
            builder.with_client_auth_cert(certificates(&id.cert)?, private_key(&id.key)?)?
        }
        None => builder.with_no_client_auth(),
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await?;
    let mut stream = connector
        .connect(ServerName::try_from("localhost")?, tcp)
        .await?;
    stream.write_all(b"x").await?;
    stream.flush().await?;
    let mut byte = [0u8; 1];
    stream.read_exact(&mut byte).await?;
    assert_eq!(&byte, b"x");
    Ok(server.await?.flatten())
}

#[tokio::test]
async fn a_client_trusting_the_ca_connects_and_one_trusting_another_does_not() -> TestResult {
    let dir = tempfile::tempdir()?;
    let pki = TestPki::new(dir.path(), "right")?;
    let other = TestPki::new(dir.path(), "other")?;
    let tls = Arc::new(ServerTls::load(files(&pki, "server", false)?, Alpn::Grpc)?);
    assert_eq!(
        round_trip(Arc::clone(&tls), &pki.ca_path(), None).await?,
        None
    );
    assert!(round_trip(tls, &other.ca_path(), None).await.is_err());
    Ok(())
}

#[tokio::test]
async fn mutual_tls_requires_a_client_certificate_from_the_ca() -> TestResult {
    let dir = tempfile::tempdir()?;
    let pki = TestPki::new(dir.path(), "ca")?;
    let other = TestPki::new(dir.path(), "other")?;
    let tls = Arc::new(ServerTls::load(files(&pki, "server", true)?, Alpn::Grpc)?);
    assert!(tls.mutual());
    let id = "spiffe://example.org/worker";
    let client = pki.issue("client", Some(id))?;
    assert_eq!(
        round_trip(Arc::clone(&tls), &pki.ca_path(), Some(&client)).await?,
        Some(vec![id.to_owned()])
    );
    // No certificate, or one from another CA: the handshake (or the first read) fails.
    assert!(
        round_trip(Arc::clone(&tls), &pki.ca_path(), None)
            .await
            .is_err()
    );
    let stranger = other.issue("stranger", Some(id))?;
    assert!(
        round_trip(tls, &pki.ca_path(), Some(&stranger))
            .await
            .is_err()
    );
    Ok(())
}

#[tokio::test]
async fn reload_takes_new_files_and_keeps_the_old_on_error() -> TestResult {
    let dir = tempfile::tempdir()?;
    let old_ca = TestPki::new(dir.path(), "old")?;
    let new_ca = TestPki::new(dir.path(), "new")?;
    let server_files = files(&old_ca, "server", false)?;
    let tls = Arc::new(ServerTls::load(server_files.clone(), Alpn::Grpc)?);
    assert!(
        round_trip(Arc::clone(&tls), &old_ca.ca_path(), None)
            .await
            .is_ok()
    );

    // A half-written certificate: reload refuses, the old configuration keeps serving.
    std::fs::write(&server_files.cert, "-----BEGIN CERTIFICATE-----\nAAAA")?;
    assert!(tls.reload().is_err());
    assert!(
        round_trip(Arc::clone(&tls), &old_ca.ca_path(), None)
            .await
            .is_ok()
    );

    // The new certificate in place: the next connection gets it.
    let issued = new_ca.issue("server-next", None)?;
    std::fs::copy(&issued.cert, &server_files.cert)?;
    std::fs::copy(&issued.key, &server_files.key)?;
    tls.reload()?;
    assert!(
        round_trip(Arc::clone(&tls), &new_ca.ca_path(), None)
            .await
            .is_ok()
    );
    assert!(round_trip(tls, &old_ca.ca_path(), None).await.is_err());
    Ok(())
}

#[test]
fn unusable_files_are_refused_by_name() -> TestResult {
    let dir = tempfile::tempdir()?;
    let pki = TestPki::new(dir.path(), "ca")?;
    let good = files(&pki, "server", false)?;
    let other = pki.issue("other", None)?;

    let missing = ServerTlsFiles {
        cert: dir.path().join("nope.pem"),
        ..good.clone()
    };
    let err = ServerTls::load(missing, Alpn::Grpc)
        .err()
        .map(|e| e.to_string());
    assert!(err.is_some_and(|e| e.contains("nope.pem")));

    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "")?;
    let err = ServerTls::load(
        ServerTlsFiles {
            key: empty.clone(),
            ..good.clone()
        },
        Alpn::Grpc,
    )
    .err();
    assert!(matches!(
        err,
        Some(TlsError::Empty {
            what: "private key",
            ..
        })
    ));

    // A key that is not the certificate's.
    let err = ServerTls::load(
        ServerTlsFiles {
            key: other.key.clone(),
            ..good.clone()
        },
        Alpn::Grpc,
    )
    .err();
    assert!(matches!(err, Some(TlsError::Config(_))), "{err:?}");

    let err = ClientTls {
        cert: Some(other.cert),
        ..ClientTls::default()
    }
    .tonic_config()
    .err();
    assert!(matches!(err, Some(TlsError::IdentityIncomplete)));
    Ok(())
}

#[test]
fn spiffe_ids_are_the_spiffe_uri_sans_only() -> TestResult {
    let dir = tempfile::tempdir()?;
    let pki = TestPki::new(dir.path(), "ca")?;
    let with = pki.issue("with", Some("spiffe://example.org/a"))?;
    let without = pki.issue("without", None)?;
    let leaf = |p: &Path| -> Result<Vec<u8>, TlsError> {
        Ok(certificates(p)?.remove(0).as_ref().to_vec())
    };
    assert_eq!(
        spiffe_ids(&leaf(&with.cert)?),
        vec!["spiffe://example.org/a"]
    );
    assert!(spiffe_ids(&leaf(&without.cert)?).is_empty());
    assert!(spiffe_ids(b"not a certificate").is_empty());
    Ok(())
}
