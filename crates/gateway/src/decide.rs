//! Decisions: the verifier, the task budgets and the record of every offline decision on
//! its way to the coordinator's audit log.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use mandate_core::{Call, Clock as _, Value};
use mandate_sdk::{Client, Signer, ToolConfig, ToolVerifier, WhenStale};

use crate::{GatewaySection, StartError, audit, limits};

/// The delivery of offline decisions to the coordinator's audit log.
pub(crate) struct Reports {
    pub(crate) spool: Arc<audit::Spool>,
    verifier: ToolVerifier,
    task: tokio::task::JoinHandle<()>,
}

impl Reports {
    pub(crate) fn start(
        verifier: &ToolVerifier,
        gateway: &GatewaySection,
    ) -> Result<Reports, StartError> {
        let started = mandate_core::SystemClock.now_ms();
        let (capacity, prefix) = (gateway.max_spooled_decisions, format!("{started:x}"));
        let spool = Arc::new(match &gateway.spool_file {
            None => audit::Spool::new(capacity, prefix),
            Some(path) => {
                audit::Spool::open(capacity, prefix, path).map_err(|source| StartError::Spool {
                    path: path.clone(),
                    source,
                })?
            }
        });
        let task = tokio::spawn({
            let spool = Arc::clone(&spool);
            let verifier = verifier.clone();
            async move { spool.deliver(verifier, Duration::from_secs(1)).await }
        });
        Ok(Reports {
            spool,
            verifier: verifier.clone(),
            task,
        })
    }

    /// Stops the delivery task and delivers what waits (for up to 5 s); what cannot be
    /// delivered is counted in the log.
    pub(crate) async fn finish(self) {
        self.task.abort();
        let flushed =
            tokio::time::timeout(Duration::from_secs(5), self.spool.flush(&self.verifier)).await;
        if !matches!(flushed, Ok(Ok(()))) {
            tracing::error!(
                undelivered = self.spool.len(),
                "offline decisions could not be delivered to the coordinator's audit log"
            );
        }
    }
}

/// The gateway's offline verifier: its identity, the coordinator's trust bundle and
/// revocation feed, staleness that fails closed.
pub(crate) async fn verifier(gateway: &GatewaySection) -> Result<ToolVerifier, StartError> {
    let signer = Signer::from_key_file(&gateway.agent, &gateway.key)?;
    let client =
        Client::connect_tls(&gateway.coordinator, signer, &gateway.coordinator_tls()).await?;
    let mut tool = ToolConfig::new(gateway.agent.clone());
    tool.max_staleness = Duration::from_millis(gateway.max_staleness_ms);
    tool.when_stale = WhenStale::FailClosed;
    Ok(ToolVerifier::connect(client, tool).await?)
}

/// Everything a decision needs: the verifier, the spool of offline decisions, the budgets.
pub(crate) struct Decider {
    pub(crate) verifier: ToolVerifier,
    pub(crate) spool: Arc<audit::Spool>,
    pub(crate) limits: limits::Limits,
}

impl Decider {
    /// Decides a call: offline against the followed revocation feed, or, when `online`,
    /// with `Authorize` at the coordinator (which audits it) and the call as policy
    /// signals; then the holder's budget, and the offline decision's record.
    pub(crate) async fn decide(
        &self,
        online: bool,
        upstream: &str,
        call: &Call,
        chain: &[u8],
        proof: &[u8],
    ) -> mandate_sdk::Decision {
        let (verifier, spool, limits) = (&self.verifier, &*self.spool, &self.limits);
        let mut decision = if online {
            verifier
                .authorize_online(chain, proof, call, signals(upstream, call))
                .await
        } else {
            verifier.authorize(chain, proof, call).await
        };
        // The budget is the task's: a holder cannot multiply it by delegating to fresh keys.
        let budget = decision.task.as_deref().or(decision.holder.as_deref());
        if decision.allowed && !limits.call(budget.unwrap_or_default()) {
            decision.allowed = false;
            decision.reason = "RATE_LIMITED".into();
            decision.detail = "this task is over its call budget; retry later".into();
        }
        // An offline decision is reported to the coordinator's audit log; one that cannot be
        // recorded is not given.
        if !decision.online
            && !spool.push(
                upstream,
                call,
                &decision,
                mandate_core::SystemClock.now_ms(),
            )
        {
            tracing::error!(
                upstream,
                resource = %call.resource,
                allowed = decision.allowed,
                "the decision spool is full: refusing, and this decision is not in the coordinator's audit log"
            );
            decision.allowed = false;
            decision.reason = "AUDIT_BACKLOG".into();
            decision.detail =
                "the gateway cannot record more decisions until the coordinator takes them".into();
        }
        log_decision(upstream, call, &decision);
        decision
    }
}

/// The signals an online decision carries for the `Invoke` policy
/// (`context.signals.getTag("arg.id")`): `gateway.upstream`, and `arg.<name>` for each
/// argument whose name and value fit the coordinator's limits (names of `[A-Za-z0-9_.-]`
/// up to 64 characters with the prefix, values up to 256 bytes, integers in decimal; 32
/// signals in all). An argument that does not fit is left out, so a policy that needs it
/// should forbid when the tag is absent.
pub fn signals(upstream: &str, call: &Call) -> BTreeMap<String, String> {
    let mut signals = BTreeMap::new();
    if upstream.len() <= 256 {
        signals.insert("gateway.upstream".to_owned(), upstream.to_owned());
    }
    for (name, value) in &call.args {
        if signals.len() >= 32 {
            break;
        }
        let key = format!("arg.{name}");
        let value = match value {
            Value::Text(t) => t.clone(),
            Value::Int(i) => i.to_string(),
        };
        let fits = key.len() <= 64
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
            && value.len() <= 256;
        if fits {
            signals.insert(key, value);
        }
    }
    signals
}

/// One log line per decision (the credential and the tokens never appear).
fn log_decision(upstream: &str, call: &Call, decision: &mandate_sdk::Decision) {
    tracing::info!(
        upstream = %upstream,
        action = %call.action,
        resource = %call.resource,
        allowed = decision.allowed,
        reason = %decision.reason,
        holder = decision.holder.as_deref().unwrap_or_default(),
        task = decision.task.as_deref().unwrap_or_default(),
        "gateway decision"
    );
}
