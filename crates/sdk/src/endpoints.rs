//! Reaching coordinators: one address or several (`a,b,c`), each a channel; a call goes to
//! the current one and, while it cannot be reached (or no longer leads), to the next, as
//! the same signed request.

use tonic::transport::Channel;

use crate::{ClientTls, Error};

/// A signed request that can be sent again as it is (to another coordinator, when the
/// first could not be reached): the same bytes, the same nonce.
pub(crate) struct Signed<M> {
    pub(crate) message: M,
    pub(crate) metadata: tonic::metadata::MetadataMap,
}

impl<M: Clone> Signed<M> {
    pub(crate) fn request(&self) -> tonic::Request<M> {
        tonic::Request::from_parts(
            self.metadata.clone(),
            tonic::Extensions::default(),
            self.message.clone(),
        )
    }
}

/// The coordinators a client calls, one channel each, and the one calls go to now.
#[derive(Debug)]
pub(crate) struct Endpoints {
    pub(crate) channels: Vec<Channel>,
    pub(crate) current: std::sync::atomic::AtomicUsize,
}

/// Whether a call failed without any coordinator answering it (the connection was refused,
/// reset or lost), or was answered by one that no longer leads the service (`NOT_LEADER`):
/// then the same signed request may go to another coordinator. If the first one took it
/// after all (a connection lost after the commit, or an answer withheld because the lease
/// ran out after it), the next refuses it as replayed (`REQUEST_REPLAYED`): it is never
/// applied twice.
fn unreachable(status: &tonic::Status) -> bool {
    use tonic_types::StatusExt as _;
    status.code() == tonic::Code::Unavailable
        && status
            .get_details_error_info()
            .is_none_or(|info| info.reason == "NOT_LEADER")
}

impl Endpoints {
    /// Sends with `send` to the current coordinator, and to the next ones in turn while
    /// they cannot be reached (each is tried once).
    pub(crate) async fn call<T, F, Fut>(&self, mut send: F) -> Result<T, Error>
    where
        F: FnMut(Channel) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        use std::sync::atomic::Ordering::Relaxed;
        let n = self.channels.len();
        let mut attempt = 0;
        loop {
            let index = self.current.load(Relaxed) % n;
            match send(self.channels[index].clone()).await {
                Ok(response) => return Ok(response.into_inner()),
                Err(status) if attempt + 1 < n && unreachable(&status) => {
                    // Concurrent calls that failed on the same coordinator move on once.
                    let _ = self
                        .current
                        .compare_exchange(index, (index + 1) % n, Relaxed, Relaxed);
                    attempt += 1;
                }
                Err(status) => return Err(status.into()),
            }
        }
    }
}

/// The endpoint URI of a coordinator address: `host:port` becomes `http://host:port`; a
/// URI is kept as it is.
pub fn endpoint(server: &str) -> String {
    if server.contains("://") {
        server.to_owned()
    } else {
        format!("http://{server}")
    }
}

/// A channel to `server` (`host:port` or a URI). With TLS files, `host:port` means
/// `https://host:port`; `https://` needs at least the CA file; `http://` with TLS files is
/// refused rather than silently sent in plaintext.
pub async fn channel(server: &str, tls: &ClientTls) -> Result<Channel, Error> {
    let (endpoint, _) = endpoint_and_tls(server, tls)?;
    Ok(endpoint.connect().await?)
}

/// The coordinator addresses in `server`: one, or several separated by commas
/// (`a:7468,b:7468`, as `--server` and `MANDATE_SERVER` take them).
pub fn servers(server: &str) -> Result<Vec<&str>, Error> {
    let list: Vec<&str> = server
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if list.is_empty() {
        return Err(Error::Status {
            code: tonic::Code::InvalidArgument,
            reason: "INVALID_ARGUMENT".into(),
            message: "no coordinator address given".into(),
        });
    }
    Ok(list)
}

/// How long a coordinator may leave a call's connection unanswered (HTTP/2 pings
/// included) before the call fails as unreachable.
pub const SILENT_COORDINATOR: std::time::Duration = std::time::Duration::from_secs(10);

/// The endpoint of one coordinator address, and whether it is TLS (see [`channel`]).
pub(crate) fn endpoint_and_tls(
    server: &str,
    tls: &ClientTls,
) -> Result<(tonic::transport::Endpoint, bool), Error> {
    let uri = if server.contains("://") {
        server.to_owned()
    } else if tls.is_set() {
        format!("https://{server}")
    } else {
        format!("http://{server}")
    };
    let https = uri.starts_with("https://");
    if tls.is_set() && !https {
        return Err(Error::Tls(format!(
            "`{uri}` is plaintext but TLS files were given: use https://"
        )));
    }
    if https && tls.ca.is_none() {
        return Err(Error::Tls(format!(
            "`{uri}` needs the CA that signed the coordinator's certificate (a CA file)"
        )));
    }
    let endpoint = Channel::from_shared(uri)
        .map_err(|e| Error::Status {
            code: tonic::Code::InvalidArgument,
            reason: "INVALID_ARGUMENT".into(),
            message: e.to_string(),
        })?
        // A coordinator that stops answering (stopped, cut off) fails the calls waiting on
        // it within `SILENT_COORDINATOR`, which moves them to the next coordinator given.
        .http2_keep_alive_interval(SILENT_COORDINATOR / 2)
        .keep_alive_timeout(SILENT_COORDINATOR / 2);
    let endpoint = if https {
        let config = tls.tonic_config().map_err(|e| Error::Tls(e.to_string()))?;
        endpoint
            .tls_config(config)
            .map_err(|e| Error::Tls(e.to_string()))?
    } else {
        endpoint
    };
    Ok((endpoint, https))
}
