//! A tower layer that puts Mandate in front of a tonic tool service: one line,
//! `Server::builder().layer(MandateLayer::new(verifier).action("/pkg.Svc/Read", "read"))`.
//!
//! Callers send their chain and invocation proof in the `x-mandate-chain` and
//! `x-mandate-invocation` metadata (text forms). The layer maps the gRPC method to an
//! action, verifies (offline, or online when required), and either refuses the call with
//! `PERMISSION_DENIED` (the reason in `ErrorInfo`) or hands the handler an [`Authorized`]
//! in the request extensions. The proof names the resource and arguments: the handler must
//! check that what it is about to do is exactly that ([`Authorized::require_resource`],
//! [`Authorized::require_arg`]).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use mandate_core::{Call, Chain, Invocation, Limits, Value};
use tonic_types::{ErrorDetails, StatusExt as _};
use tower::{Layer, Service};

use crate::tool::ToolVerifier;

/// Metadata key carrying the caller's chain (text form, `mandate1.`…).
pub const HEADER_CHAIN: &str = "x-mandate-chain";
/// Metadata key carrying the invocation proof (text form, `mandate-inv1.`…).
pub const HEADER_INVOCATION: &str = "x-mandate-invocation";

/// What a verified call is allowed to do; in the request extensions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authorized {
    /// The holder's agent id.
    pub holder: String,
    /// The task (hex).
    pub task: String,
    /// The call the proof authorises.
    pub call: Call,
    /// Whether the coordinator decided online.
    pub online: bool,
}

fn denied(reason: &str, message: String) -> tonic::Status {
    tonic::Status::with_error_details(
        tonic::Code::PermissionDenied,
        message,
        ErrorDetails::with_error_info(reason, "mandate.dev", HashMap::<String, String>::new()),
    )
}

impl Authorized {
    /// Refuses unless the proof was for exactly `resource`.
    pub fn require_resource(&self, resource: &str) -> Result<(), tonic::Status> {
        if self.call.resource == resource {
            Ok(())
        } else {
            Err(denied(
                "INVOCATION_MISMATCH",
                format!(
                    "the proof is for `{}`, not `{resource}`",
                    self.call.resource
                ),
            ))
        }
    }

    /// Refuses unless the proof carried argument `name` with exactly `value`.
    pub fn require_arg(&self, name: &str, value: impl Into<Value>) -> Result<(), tonic::Status> {
        if self.call.args.get(name) == Some(&value.into()) {
            Ok(())
        } else {
            Err(denied(
                "INVOCATION_MISMATCH",
                format!("the proof does not carry argument `{name}` with this value"),
            ))
        }
    }
}

/// See the module documentation.
#[derive(Clone, Debug)]
pub struct MandateLayer {
    verifier: ToolVerifier,
    actions: Arc<HashMap<String, String>>,
}

impl MandateLayer {
    /// Protects a service with `verifier`. Map each method with [`MandateLayer::action`];
    /// calls to unmapped methods are refused.
    pub fn new(verifier: ToolVerifier) -> MandateLayer {
        MandateLayer {
            verifier,
            actions: Arc::new(HashMap::new()),
        }
    }

    /// Calls to `method` (full gRPC path, e.g. `/files.v1.FileStore/Read`) need a proof for
    /// `action`.
    pub fn action(mut self, method: &str, action: &str) -> MandateLayer {
        Arc::make_mut(&mut self.actions).insert(method.to_owned(), action.to_owned());
        self
    }
}

impl<S> Layer<S> for MandateLayer {
    type Service = MandateService<S>;
    fn layer(&self, inner: S) -> MandateService<S> {
        MandateService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`MandateLayer`] produces.
#[derive(Clone, Debug)]
pub struct MandateService<S> {
    inner: S,
    layer: MandateLayer,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for MandateService<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = http::Response<ResBody>;
    type Error = S::Error;
    type Future = BoxFuture<Result<http::Response<ResBody>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<ReqBody>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        let method = req.uri().path().to_owned();
        let headers = req.headers().clone();
        Box::pin(async move {
            match check(&layer, &method, &headers).await {
                Ok(authorized) => {
                    req.extensions_mut().insert(authorized);
                    inner.call(req).await
                }
                Err(status) => Ok(status.into_http()),
            }
        })
    }
}

async fn check(
    layer: &MandateLayer,
    method: &str,
    headers: &http::HeaderMap,
) -> Result<Authorized, tonic::Status> {
    let action = layer.actions.get(method).ok_or_else(|| {
        denied(
            "NOT_PERMITTED",
            format!("method `{method}` is not open to Mandate callers"),
        )
    })?;
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                denied(
                    "MALFORMED",
                    format!("the call carries no `{name}` metadata"),
                )
            })
    };
    let limits = Limits::default();
    let chain = Chain::from_text(header(HEADER_CHAIN)?, &limits)
        .map_err(|d| denied(d.reason().code(), d.to_string()))?;
    let proof = Invocation::from_text(header(HEADER_INVOCATION)?, &limits)
        .map_err(|d| denied(d.reason().code(), d.to_string()))?;
    let call = proof.body().call.clone();
    if call.action != *action {
        return Err(denied(
            "INVOCATION_MISMATCH",
            format!(
                "the proof is for action `{}`, this method needs `{action}`",
                call.action
            ),
        ));
    }
    let decision = layer
        .verifier
        .authorize(&chain.encode(), &proof.encode(), &call)
        .await;
    if !decision.allowed {
        return Err(denied(
            &decision.reason,
            format!("{}: {}", decision.reason, decision.detail),
        ));
    }
    Ok(Authorized {
        holder: decision.holder.unwrap_or_default(),
        task: decision.task.unwrap_or_default(),
        call,
        online: decision.online,
    })
}

/// Adds the chain and a fresh invocation proof to an outgoing request to a protected tool.
pub fn attach<T>(
    req: &mut tonic::Request<T>,
    chain: &Chain,
    proof: &Invocation,
) -> Result<(), crate::Error> {
    let bad = |what: &str| crate::Error::Status {
        code: tonic::Code::InvalidArgument,
        reason: "INVALID_ARGUMENT".into(),
        message: format!("cannot put the {what} in metadata"),
    };
    req.metadata_mut().insert(
        HEADER_CHAIN,
        chain.to_text().parse().map_err(|_| bad("chain"))?,
    );
    req.metadata_mut().insert(
        HEADER_INVOCATION,
        proof.to_text().parse().map_err(|_| bad("proof"))?,
    );
    Ok(())
}
