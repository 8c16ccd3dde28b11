//! Several coordinators on one etcd (#19): `mandate serve --store etcd://... --advertise
//! ADDR`. Each instance campaigns for the leader key ([`EtcdLeadership`]); while another
//! leads it forwards every call to it ([`Forwarding`]); once it wins it stops forwarding
//! and serves on the same address, its store fenced by the leadership and every call gated
//! on the lease ([`Config::leading`]). When the lease ends it stops serving at once and
//! returns [`HaError::LostLeadership`]: the process exits, and its supervisor starts it
//! again as a follower (fail-stop: no state of the lost term is kept).
//!
//! Until coordinator keys are kept in etcd, the instances of one service share the
//! coordinator key and the admin key (copy them into each data directory).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use mandate_store::EtcdLeadership;

use crate::{Config, ForwardTarget, Forwarding, Server, StartError, StoreChoice};

/// Why a highly available coordinator stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HaError {
    /// The settings do not allow it (no etcd store).
    #[error("{0}")]
    Config(String),
    /// Starting (forwarding or serving) failed.
    #[error(transparent)]
    Start(#[from] StartError),
    /// This coordinator led and its lease ended: it stopped serving.
    #[error("this coordinator's leader lease ended; it stopped serving (start it again to follow)")]
    LostLeadership,
}

/// What a running highly available coordinator tells its caller.
pub trait HaEvents: Send + Sync {
    /// Listening (forwarding until elected) on `addr`.
    fn listening(&self, addr: std::net::SocketAddr);
    /// Elected: serving as the leader.
    fn leading(&self, server: &Server);
}

/// Runs `config` as one instance of a highly available service until `stop` resolves
/// (then it steps down, releasing the lease) or its leadership is lost.
pub async fn serve_ha(
    mut config: Config,
    advertise: Option<String>,
    lease: Duration,
    events: Arc<dyn HaEvents>,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), HaError> {
    let StoreChoice::Etcd(etcd) = &config.store else {
        return Err(HaError::Config(
            "several coordinators need the store on etcd (--store etcd://...)".into(),
        ));
    };
    let etcd = (**etcd).clone();
    crate::check_transport(&config)?;
    // Over TLS, a forwarding coordinator serves the same certificate and checks the
    // leader's against `peer_ca`. Mutual TLS cannot work through it: the leader would see
    // the forwarding coordinator's certificate, not the caller's.
    let (target, tls) = match &config.tls {
        None => (ForwardTarget::default(), None),
        Some(files) => {
            if files.client_ca.is_some() {
                return Err(HaError::Config(
                    "several coordinators do not support mutual TLS (a forwarding coordinator cannot pass on the caller's certificate): drop tls_client_ca, or run one coordinator".into(),
                ));
            }
            let Some(ca) = &config.peer_ca else {
                return Err(HaError::Config(
                    "several coordinators over TLS need peer_ca (--peer-ca): the CA that signed the other coordinators' certificates".into(),
                ));
            };
            let target = ForwardTarget::with_tls(&mandate_tls::ClientTls {
                ca: Some(ca.clone()),
                ..Default::default()
            })
            .map_err(crate::StartError::from)?;
            let tls = mandate_tls::ServerTls::load(files.clone(), mandate_tls::Alpn::Grpc)
                .map_err(crate::StartError::from)?;
            (target, Some(Arc::new(tls)))
        }
    };
    // Without a handler SIGHUP would end a forwarding coordinator (an operator reloading
    // every instance's certificate at once): reload the certificate instead.
    let hup = config
        .reload_on_sighup
        .then(|| reload_tls_on_sighup(tls.clone()))
        .flatten();
    let forwarding = Forwarding::start(config.listen, target.clone(), tls).await?;
    let addr = forwarding.local_addr;
    let me = advertise.unwrap_or_else(|| addr.to_string());
    events.listening(addr);
    tokio::pin!(stop);
    let giving_up = Arc::new(AtomicBool::new(false));
    let campaign = {
        let (etcd, me, target, giving_up) = (
            etcd.clone(),
            me.clone(),
            target.clone(),
            Arc::clone(&giving_up),
        );
        tokio::task::spawn_blocking(move || {
            // etcd out of reach (at start, or lost while waiting): keep listening, answer
            // UNAVAILABLE (clients move on), and campaign again, backing off to 5 s.
            let mut pause = Duration::from_millis(100);
            loop {
                let tried = EtcdLeadership::campaign(etcd.clone(), &me, lease, |holder| {
                    match holder {
                        // A lease of this instance's previous run: never forward to itself.
                        Some(h) if h != me => {
                            if let Err(e) = target.set(h) {
                                tracing::warn!(error = %e, "the leader's address is not usable");
                            }
                        }
                        _ => target.clear(),
                    }
                    giving_up.load(Ordering::SeqCst)
                });
                let error = match tried {
                    Ok(won) => return won,
                    Err(e) => e,
                };
                target.clear();
                tracing::warn!(error = %error, "cannot campaign for the lead: trying again");
                let until = std::time::Instant::now() + pause;
                while std::time::Instant::now() < until {
                    if giving_up.load(Ordering::SeqCst) {
                        return None;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                pause = (pause * 2).min(Duration::from_secs(5));
            }
        })
    };
    tokio::pin!(campaign);
    let won = tokio::select! {
        won = &mut campaign => won.map_err(|e| HaError::Config(e.to_string())),
        () = &mut stop => {
            giving_up.store(true, Ordering::SeqCst);
            drop(campaign.await);
            Ok(None)
        }
    };
    forwarding.shutdown().await;
    // Elected or not, forwarding is over; an elected coordinator installs its own handler
    // (certificate and policy set).
    if let Some(hup) = &hup {
        hup.abort();
    }
    let Some(leadership) = won? else {
        return Ok(());
    };
    let leadership = Arc::new(leadership);
    config.listen = addr;
    config.store = StoreChoice::Etcd(Box::new(mandate_store::EtcdConfig {
        fence: Some(leadership.fence()),
        ..etcd
    }));
    let holds = Arc::clone(&leadership);
    config.leading = Some(Arc::new(move || holds.holds()));
    // One set for the service: the last installed through any coordinator.
    config.policy_from_store = true;
    config.instance = Some(me.clone());
    let server = crate::start(config).await?;
    events.leading(&server);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let lost = loop {
        tokio::select! {
            () = &mut stop => break false,
            _ = tick.tick() => if !leadership.holds() { break true },
        }
    };
    if lost {
        tracing::error!("the leader lease ended: stopping");
    }
    let _ = server.shutdown().await;
    // Stepping down: the next coordinator need not wait for the lease to expire.
    leadership.resign();
    if lost {
        return Err(HaError::LostLeadership);
    }
    Ok(())
}

/// While forwarding, SIGHUP reloads the listener's certificate; the policy set is the
/// leader's to reload (`mandate policy reload`).
fn reload_tls_on_sighup(
    tls: Option<Arc<mandate_tls::ServerTls>>,
) -> Option<tokio::task::JoinHandle<()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP");
            return None;
        }
    };
    Some(tokio::spawn(async move {
        while hup.recv().await.is_some() {
            if let Some(tls) = &tls {
                crate::reload_tls(tls);
            }
            tracing::info!(
                "SIGHUP while forwarding: the policy set is reloaded by the leader (`mandate policy reload`)"
            );
        }
    }))
}
