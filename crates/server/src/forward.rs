//! Forwarding, for several coordinators on one etcd (#19): a coordinator that does not
//! lead the service passes every call of the `mandate.v1` services, as it came (its
//! signature headers, its body, its stream), to the one that does, and the answer back.
//! The leader authenticates the caller and checks the request's nonce itself, so a
//! forwarding coordinator needs no trust of its own: it opens no store and signs nothing.
//! Health answers locally.

use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};

use tonic::body::Body;
use tonic::server::NamedService;
use tonic::transport::Channel;

/// How long a leader may leave a forwarded call's connection unanswered (HTTP/2 pings
/// included) before the calls on it fail with `UNAVAILABLE`.
const LEADER_SILENCE: std::time::Duration = std::time::Duration::from_secs(2);

/// Where forwarded calls go: the leader's channel, changed when another coordinator leads
/// (`None`: no leader known; calls are answered `UNAVAILABLE`, which clients given several
/// coordinators take as a reason to try the next).
#[derive(Clone, Debug, Default)]
pub struct ForwardTarget {
    current: Arc<RwLock<Option<(String, Channel)>>>,
    /// How to reach the leader over TLS (`None`: plaintext).
    tls: Option<tonic::transport::ClientTlsConfig>,
}

impl ForwardTarget {
    /// A target reached over TLS: the leader's certificate must chain to `tls`'s CA and
    /// name the host it advertises.
    pub fn with_tls(tls: &mandate_tls::ClientTls) -> Result<ForwardTarget, mandate_tls::TlsError> {
        Ok(ForwardTarget {
            current: Arc::default(),
            tls: Some(tls.tonic_config()?),
        })
    }

    /// Forwards to the coordinator at `address` (`host:port` or a URI) from now on; the
    /// connection is made when first used.
    pub fn set(&self, address: &str) -> Result<(), String> {
        let mut target = self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if target.as_ref().is_some_and(|(a, _)| a == address) {
            return Ok(());
        }
        let uri = match (address.split_once("://"), &self.tls) {
            (Some(_), _) => address.to_owned(),
            (None, Some(_)) => format!("https://{address}"),
            (None, None) => format!("http://{address}"),
        };
        // A leader that stops answering (stopped, partitioned) fails the calls in flight
        // to it within `LEADER_SILENCE` instead of holding them for ever: the clients
        // move on, and the calls go to whoever leads next.
        let mut endpoint = Channel::from_shared(uri).map_err(|e| format!("`{address}`: {e}"))?;
        if let Some(tls) = &self.tls {
            endpoint = endpoint
                .tls_config(tls.clone())
                .map_err(|e| format!("`{address}`: {e}"))?;
        }
        let channel = endpoint
            .tcp_nodelay(true)
            .http2_keep_alive_interval(LEADER_SILENCE / 2)
            .keep_alive_timeout(LEADER_SILENCE / 2)
            .keep_alive_while_idle(true)
            .connect_lazy();
        *target = Some((address.to_owned(), channel));
        Ok(())
    }

    /// Stops forwarding (no leader known).
    pub fn clear(&self) {
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }

    /// Where calls go now.
    pub fn address(&self) -> Option<String> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .map(|(a, _)| a.clone())
    }

    fn channel(&self) -> Option<Channel> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .map(|(_, c)| c.clone())
    }
}

/// The name of a forwarded service (what tonic routes on).
trait Named: Send + Sync + 'static {
    const NAME: &'static str;
}

macro_rules! services {
    ($($marker:ident = $name:literal),* $(,)?) => {
        $(
            #[derive(Clone, Copy)]
            struct $marker;
            impl Named for $marker {
                const NAME: &'static str = $name;
            }
        )*
    };
}

services! {
    Agents = "mandate.v1.AgentService",
    Tasks = "mandate.v1.TaskService",
    Authorization = "mandate.v1.AuthorizationService",
    Approvals = "mandate.v1.ApprovalService",
    Policy = "mandate.v1.PolicyService",
    Audit = "mandate.v1.AuditService",
    Access = "mandate.v1.AccessService",
}

/// One service's calls, forwarded.
struct Forward<S> {
    target: ForwardTarget,
    service: PhantomData<fn() -> S>,
}

impl<S> Forward<S> {
    fn to(target: &ForwardTarget) -> Forward<S> {
        Forward {
            target: target.clone(),
            service: PhantomData,
        }
    }
}

impl<S> Clone for Forward<S> {
    fn clone(&self) -> Self {
        Forward {
            target: self.target.clone(),
            service: PhantomData,
        }
    }
}

impl<S: Named> NamedService for Forward<S> {
    const NAME: &'static str = S::NAME;
}

type ResponseFuture = std::pin::Pin<
    Box<
        dyn std::future::Future<Output = Result<http::Response<Body>, std::convert::Infallible>>
            + Send,
    >,
>;

impl<S: Named> tower::Service<http::Request<Body>> for Forward<S> {
    type Response = http::Response<Body>;
    type Error = std::convert::Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let channel = self.target.channel();
        Box::pin(async move {
            use tower::ServiceExt as _;
            let Some(channel) = channel else {
                return Ok(
                    tonic::Status::unavailable("no coordinator leads the service now").into_http(),
                );
            };
            match channel.oneshot(request).await {
                Ok(response) => Ok(response),
                Err(e) => Ok(tonic::Status::unavailable(format!(
                    "the leading coordinator cannot be reached: {e}"
                ))
                .into_http()),
            }
        })
    }
}

/// A forwarding coordinator, serving until [`Forwarding::shutdown`].
#[derive(Debug)]
pub struct Forwarding {
    /// Where it listens.
    pub local_addr: SocketAddr,
    /// Where its calls go.
    pub target: ForwardTarget,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    join: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
}

impl Forwarding {
    /// Listens on `listen` (over TLS when `tls` is given) and forwards every `mandate.v1`
    /// call to `target`.
    pub async fn start(
        listen: SocketAddr,
        target: ForwardTarget,
        tls: Option<Arc<mandate_tls::ServerTls>>,
    ) -> Result<Forwarding, crate::StartError> {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|source| crate::StartError::Listen {
                addr: listen,
                source,
            })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| crate::StartError::Listen {
                addr: listen,
                source,
            })?;
        let (health, health_service) = tonic_health::server::health_reporter();
        health
            .set_service_status("", tonic_health::ServingStatus::Serving)
            .await;
        let router = tonic::transport::Server::builder()
            .add_service(health_service)
            .add_service(Forward::<Agents>::to(&target))
            .add_service(Forward::<Tasks>::to(&target))
            .add_service(Forward::<Authorization>::to(&target))
            .add_service(Forward::<Approvals>::to(&target))
            .add_service(Forward::<Policy>::to(&target))
            .add_service(Forward::<Audit>::to(&target))
            .add_service(Forward::<Access>::to(&target));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let stopped = async move {
            let _ = stopped.await;
        };
        let join = match tls {
            Some(tls) => tokio::spawn(
                router.serve_with_incoming_shutdown(mandate_tls::incoming(listener, tls), stopped),
            ),
            None => {
                let incoming =
                    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
                tokio::spawn(router.serve_with_incoming_shutdown(incoming, stopped))
            }
        };
        tracing::info!(%local_addr, to = ?target.address(), "forwarding calls to the leading coordinator");
        Ok(Forwarding {
            local_addr,
            target,
            stop: Some(stop),
            join,
        })
    }

    /// Stops listening; calls in flight finish, and connections still open after the
    /// grace period (a stream being followed) are cut.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if tokio::time::timeout(crate::SHUTDOWN_GRACE, &mut self.join)
            .await
            .is_err()
        {
            self.join.abort();
            let _ = (&mut self.join).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mandate_proto::v1::{
        access_service_server::AccessServiceServer, agent_service_server::AgentServiceServer,
        approval_service_server::ApprovalServiceServer, audit_service_server::AuditServiceServer,
        authorization_service_server::AuthorizationServiceServer,
        policy_service_server::PolicyServiceServer, task_service_server::TaskServiceServer,
    };

    #[test]
    fn forwarded_names_are_the_services_names() {
        assert_eq!(Agents::NAME, AgentServiceServer::<crate::Api>::NAME);
        assert_eq!(Tasks::NAME, TaskServiceServer::<crate::Api>::NAME);
        assert_eq!(
            Authorization::NAME,
            AuthorizationServiceServer::<crate::Api>::NAME
        );
        assert_eq!(Approvals::NAME, ApprovalServiceServer::<crate::Api>::NAME);
        assert_eq!(Policy::NAME, PolicyServiceServer::<crate::Api>::NAME);
        assert_eq!(Audit::NAME, AuditServiceServer::<crate::Api>::NAME);
        assert_eq!(Access::NAME, AccessServiceServer::<crate::Api>::NAME);
    }
}
