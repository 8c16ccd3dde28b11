//! Starts a coordinator with a manual clock in a temporary directory and hands out signed
//! clients.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use mandate_core::{
    AgentId, Capability, Chain, Clock, ManualClock, SigningKey, SystemClock, keyfile,
};
use mandate_proto::token as tpb;
use mandate_proto::v1 as pb;
use mandate_sdk::{Client, Signer};
use mandate_server::keys::Rotation;
use mandate_server::{Config, Server};
use tonic::transport::Channel;

tokio::task_local! {
    /// The store every harness started inside `STORE.scope(...)` runs on (sled otherwise):
    /// the etcd runs of the suite (`on_etcd`).
    pub static STORE: mandate_server::StoreChoice;
}

pub struct Harness {
    pub server: Option<Server>,
    pub dir: tempfile::TempDir,
    pub clock: Arc<ManualClock>,
    pub channel: Channel,
    pub admin: Client,
}

pub fn config(dir: &Path, clock: Arc<ManualClock>) -> Config {
    let mut c = Config::new(SocketAddr::from(([127, 0, 0, 1], 0)), dir.join("data"));
    c.clock = clock;
    c.heartbeat = Duration::from_millis(200);
    c
}

/// Polls the health service until the server answers (never sleeps blindly for long).
pub async fn wait_healthy(addr: SocketAddr) -> Channel {
    let endpoint = format!("http://{addr}");
    for _ in 0..200 {
        if let Ok(channel) = Channel::from_shared(endpoint.clone())
            .unwrap()
            .connect()
            .await
        {
            let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
            let req = tonic_health::pb::HealthCheckRequest {
                service: String::new(),
            };
            if let Ok(resp) = health.check(req).await
                && resp.into_inner().status
                    == tonic_health::pb::health_check_response::ServingStatus::Serving as i32
            {
                return channel;
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("server at {addr} never became healthy");
}

impl Harness {
    pub async fn start() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(SystemClock.now_ms()));
        Harness::start_in(dir, clock).await
    }

    pub async fn start_in(dir: tempfile::TempDir, clock: Arc<ManualClock>) -> Harness {
        Harness::start_configured(dir, clock, |_| {}).await
    }

    /// Starts with `edit` applied to the default test configuration.
    pub async fn start_configured(
        dir: tempfile::TempDir,
        clock: Arc<ManualClock>,
        edit: impl FnOnce(&mut Config),
    ) -> Harness {
        let mut cfg = config(dir.path(), Arc::clone(&clock));
        if let Ok(store) = STORE.try_with(Clone::clone) {
            cfg.store = store;
        }
        edit(&mut cfg);
        // A store just closed in this process (a test that edits it directly) may hold its
        // file lock for a moment while sled's threads wind down.
        let mut attempts = 0;
        let server = loop {
            match mandate_server::start(cfg.clone()).await {
                Ok(s) => break s,
                Err(e) if attempts < 100 && e.to_string().contains("lock") => {
                    attempts += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("the server did not start: {e}"),
            }
        };
        let channel = wait_healthy(server.local_addr).await;
        let admin_key = keyfile::load_signing_key(&server.admin_key_path).unwrap();
        let admin = Client::with_channel(
            channel.clone(),
            Signer::with_clock(
                AgentId::new(server.admin_id.clone()).unwrap(),
                admin_key,
                clock.clone(),
            ),
        );
        Harness {
            server: Some(server),
            dir,
            clock,
            channel,
            admin,
        }
    }

    /// Stops the server and starts a new one on the same data directory.
    pub async fn restart(mut self) -> Harness {
        self.server.take().unwrap().shutdown().await.unwrap();
        Harness::start_in(self.dir, self.clock).await
    }

    pub fn server(&self) -> &Server {
        self.server.as_ref().unwrap()
    }

    /// A client signing as `id` with `key`.
    pub fn client(&self, id: &str, key: &SigningKey) -> Client {
        Client::with_channel(
            self.channel.clone(),
            Signer::with_clock(
                AgentId::new(id).unwrap(),
                key.clone(),
                self.clock.clone() as Arc<dyn Clock>,
            ),
        )
    }

    /// Registers an agent through `by` and returns a client for it.
    pub async fn register(
        &self,
        by: &mut Client,
        id: &str,
        role: &str,
        parent: &str,
    ) -> (SigningKey, Client) {
        let key = SigningKey::generate().unwrap();
        by.register_agent(pb::RegisterAgentRequest {
            agent_id: id.into(),
            public_key: key.public_key().as_bytes().to_vec(),
            role: role.into(),
            owner: "tests".into(),
            parent_agent_id: parent.into(),
            ..Default::default()
        })
        .await
        .unwrap();
        let client = self.client(id, &key);
        (key, client)
    }

    /// The hash of the policy set in force, as `GetPolicy` reports it.
    pub async fn policy_hash(&self) -> String {
        let mut admin = self.admin.clone();
        admin
            .get_policy(pb::GetPolicyRequest {})
            .await
            .unwrap()
            .policy
            .unwrap()
            .policy_hash
    }

    /// Every audit record, from the store.
    pub fn audit(&self) -> Vec<mandate_store::AuditRecord> {
        self.server()
            .coordinator()
            .store()
            .audit_after(0, 100_000)
            .unwrap()
    }

    pub fn now(&self) -> u64 {
        self.clock.now_ms()
    }
}

pub fn cap_pb(resource: &str, actions: &[&str]) -> tpb::Capability {
    tpb::Capability {
        resource: resource.into(),
        actions: actions.iter().map(|a| a.to_string()).collect(),
        constraints: vec![],
    }
}

pub fn cap(resource: &str, actions: &[&str]) -> Capability {
    Capability::new(resource, actions.iter().copied()).unwrap()
}

pub fn decode(bytes: &[u8]) -> Chain {
    Chain::decode(bytes, &mandate_core::Limits::default()).unwrap()
}

/// `rotate_coordinator_key` on a coordinator just stopped in this process. Its lock file's
/// descriptor may live on for a moment in a child another test is spawning (between fork
/// and exec), so "a coordinator runs here" is retried for up to two seconds.
pub async fn rotate_stopped(data: &Path, trust_old_for_ms: u64, now_ms: u64) -> Rotation {
    for _ in 0..100 {
        match mandate_server::keys::rotate_coordinator_key(data, trust_old_for_ms, now_ms) {
            Ok(r) => return r,
            Err(e) if e.to_string().contains("a coordinator runs") => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("rotate-key failed: {e}"),
        }
    }
    panic!("the data directory stayed locked after its coordinator stopped");
}
