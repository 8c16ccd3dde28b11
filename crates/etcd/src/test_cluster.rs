//! An etcd cluster on loopback for tests: members started from Debian's `etcd-server`
//! (`/usr/bin/etcd`, or `$ETCD_BIN`) in a temporary directory, each on its own free ports,
//! polled until a leader answers, killed by pid (SIGKILL) when dropped. A machine without
//! etcd fails with a message saying how to get it.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::etcdserverpb::StatusRequest;
use crate::etcdserverpb::maintenance_client::MaintenanceClient;

/// One member.
#[derive(Debug)]
struct Member {
    name: String,
    client: u16,
    /// The TLS client port, when the cluster serves TLS.
    tls_client: u16,
    peer: u16,
    child: Option<Child>,
}

/// TLS for the members' client listeners (PEM files).
#[derive(Clone, Debug)]
pub struct ClusterTls {
    /// The members' certificate (for 127.0.0.1).
    pub cert: PathBuf,
    /// Its key.
    pub key: PathBuf,
    /// The CA clients' certificates must chain to (client certificates are required).
    pub client_ca: PathBuf,
}

/// How to start a cluster beyond the defaults.
#[derive(Clone, Debug, Default)]
pub struct ClusterOptions {
    /// A second, TLS client listener on each member (the plain one stays, for readiness).
    pub tls: Option<ClusterTls>,
    /// More flags for every member (`--auth-token-ttl=1`, ...).
    pub extra_args: Vec<String>,
}

/// A running cluster; every member still running is killed on drop.
#[derive(Debug)]
pub struct EtcdCluster {
    dir: tempfile::TempDir,
    binary: PathBuf,
    members: Vec<Member>,
    options: ClusterOptions,
}

fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

/// The etcd binary, or a message saying how to get one.
pub fn etcd_binary() -> Result<PathBuf, String> {
    let candidates = std::env::var_os("ETCD_BIN")
        .map(PathBuf::from)
        .into_iter()
        .chain([
            PathBuf::from("/usr/bin/etcd"),
            PathBuf::from("/usr/local/bin/etcd"),
        ]);
    for c in candidates {
        if c.exists() {
            return Ok(c);
        }
    }
    Err(
        "the etcd tests need an etcd 3.4 binary: install Debian's etcd-server \
         (`.ci/setup` does: apt-get install etcd-server) or set ETCD_BIN"
            .into(),
    )
}

impl EtcdCluster {
    /// Starts `n` members and waits until every one answers and they have a leader.
    pub async fn start(n: usize) -> Result<EtcdCluster, String> {
        EtcdCluster::start_with(n, ClusterOptions::default()).await
    }

    /// [`EtcdCluster::start`] with TLS or more flags.
    pub async fn start_with(n: usize, options: ClusterOptions) -> Result<EtcdCluster, String> {
        // A port found free can be taken by another test's process before etcd binds it;
        // etcd then exits at once. Start again on new ports.
        let mut failed = String::new();
        for _ in 0..3 {
            match EtcdCluster::start_once(n, options.clone()).await {
                Ok(cluster) => return Ok(cluster),
                Err(e) => failed = e,
            }
        }
        Err(failed)
    }

    async fn start_once(n: usize, options: ClusterOptions) -> Result<EtcdCluster, String> {
        let binary = etcd_binary()?;
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let mut members = Vec::new();
        for i in 0..n {
            members.push(Member {
                name: format!("m{i}"),
                client: free_port()?,
                tls_client: free_port()?,
                peer: free_port()?,
                child: None,
            });
        }
        let mut cluster = EtcdCluster {
            dir,
            binary,
            members,
            options,
        };
        for i in 0..n {
            cluster.spawn(i, "new")?;
        }
        cluster.wait_ready().await?;
        Ok(cluster)
    }

    fn initial_cluster(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn spawn(&mut self, i: usize, state: &str) -> Result<(), String> {
        let initial = self.initial_cluster();
        let data = self.dir.path().join(&self.members[i].name);
        let m = &mut self.members[i];
        let mut clients = format!("http://127.0.0.1:{}", m.client);
        let mut tls_args = Vec::new();
        if let Some(tls) = &self.options.tls {
            clients.push_str(&format!(",https://127.0.0.1:{}", m.tls_client));
            tls_args = vec![
                format!("--cert-file={}", tls.cert.display()),
                format!("--key-file={}", tls.key.display()),
                format!("--trusted-ca-file={}", tls.client_ca.display()),
                "--client-cert-auth".to_owned(),
            ];
        }
        let child = Command::new(&self.binary)
            .arg(format!("--name={}", m.name))
            .arg(format!("--data-dir={}", data.display()))
            .arg(format!("--listen-client-urls={clients}"))
            .arg(format!("--advertise-client-urls={clients}"))
            .args(&tls_args)
            .args(&self.options.extra_args)
            .arg(format!("--listen-peer-urls=http://127.0.0.1:{}", m.peer))
            .arg(format!(
                "--initial-advertise-peer-urls=http://127.0.0.1:{}",
                m.peer
            ))
            .arg(format!("--initial-cluster={initial}"))
            .arg(format!("--initial-cluster-state={state}"))
            .arg("--initial-cluster-token=mandate-test")
            // Fast elections on loopback.
            .arg("--heartbeat-interval=50")
            .arg("--election-timeout=500")
            .arg("--logger=zap")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.binary.display()))?;
        m.child = Some(child);
        Ok(())
    }

    /// Client endpoints (`http://127.0.0.1:PORT`) of every member, running or not.
    /// The `--store` value of a coordinator on this cluster, its keys under `prefix`
    /// (empty: the default prefix).
    pub fn store_url(&self, prefix: &str) -> String {
        let members: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("127.0.0.1:{}", m.client))
            .collect();
        match prefix {
            "" => format!("etcd://{}", members.join(",")),
            p => format!("etcd://{}/{p}", members.join(",")),
        }
    }

    /// The directory holding every member's data.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("http://127.0.0.1:{}", m.client))
            .collect()
    }

    /// TLS client endpoints (`https://127.0.0.1:PORT`), when the cluster serves TLS.
    pub fn tls_endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("https://127.0.0.1:{}", m.tls_client))
            .collect()
    }

    /// Kills member `i` with SIGKILL.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts member `i` again on its data directory.
    pub async fn restart(&mut self, i: usize) -> Result<(), String> {
        self.spawn(i, "existing")?;
        self.wait_member(i).await
    }

    async fn status(endpoint: &str) -> Option<u64> {
        let channel = tonic::transport::Channel::from_shared(endpoint.to_owned())
            .ok()?
            .connect_timeout(Duration::from_millis(200))
            .timeout(Duration::from_millis(500))
            .connect()
            .await
            .ok()?;
        let status = MaintenanceClient::new(channel)
            .status(StatusRequest {})
            .await
            .ok()?
            .into_inner();
        (status.leader != 0).then_some(status.leader)
    }

    async fn wait_member(&mut self, i: usize) -> Result<(), String> {
        let endpoint = self.endpoints()[i].clone();
        for _ in 0..600 {
            if Self::status(&endpoint).await.is_some() {
                return Ok(());
            }
            if let Some(child) = &mut self.members[i].child
                && let Ok(Some(exit)) = child.try_wait()
            {
                return Err(format!(
                    "etcd member {i} ({endpoint}) exited while starting: {exit}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(format!("etcd member {i} ({endpoint}) did not become ready"))
    }

    async fn wait_ready(&mut self) -> Result<(), String> {
        for i in 0..self.members.len() {
            self.wait_member(i).await?;
        }
        Ok(())
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::etcdserverpb::kv_client::KvClient;
    use crate::etcdserverpb::{PutRequest, RangeRequest};

    async fn kv(endpoint: &str) -> Result<KvClient<tonic::transport::Channel>, String> {
        let channel = tonic::transport::Channel::from_shared(endpoint.to_owned())
            .map_err(|e| e.to_string())?
            .timeout(Duration::from_secs(2))
            .connect()
            .await
            .map_err(|e| e.to_string())?;
        Ok(KvClient::new(channel))
    }

    async fn put(endpoint: &str, key: &str, value: &str) -> Result<(), String> {
        kv(endpoint)
            .await?
            .put(PutRequest {
                key: key.into(),
                value: value.into(),
                ..Default::default()
            })
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    async fn get(endpoint: &str, key: &str) -> Result<Option<Vec<u8>>, String> {
        let r = kv(endpoint)
            .await?
            .range(RangeRequest {
                key: key.into(),
                ..Default::default()
            })
            .await
            .map_err(|e| e.to_string())?
            .into_inner();
        Ok(r.kvs.into_iter().next().map(|kv| kv.value))
    }

    /// Retries `op` (each try bounded by the client timeout) until it succeeds, for up to
    /// about 20 s: an election after a lost leader takes a moment.
    async fn eventually<F, Fut>(op: F) -> Result<(), String>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<(), String>>,
    {
        let mut last = String::new();
        for _ in 0..40 {
            match op().await {
                Ok(()) => return Ok(()),
                Err(e) => last = e,
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(last)
    }

    #[tokio::test]
    async fn a_three_member_cluster_survives_one_loss_and_refuses_writes_without_quorum()
    -> Result<(), String> {
        let mut c = EtcdCluster::start(3).await?;
        let e = c.endpoints();
        put(&e[0], "k", "1").await?;
        assert_eq!(get(&e[2], "k").await?, Some(b"1".to_vec()), "replicated");
        // One member lost (perhaps the leader: a new one is elected): writes go on.
        c.kill(1);
        eventually(|| put(&e[0], "k", "2")).await?;
        assert_eq!(get(&e[2], "k").await?, Some(b"2".to_vec()));
        // Two of three lost: no quorum, no write.
        c.kill(2);
        assert!(put(&e[0], "k", "3").await.is_err(), "no quorum, no write");
        // Quorum back, writes back.
        c.restart(1).await?;
        eventually(|| put(&e[0], "k", "4")).await?;
        assert_eq!(get(&e[1], "k").await?, Some(b"4".to_vec()));
        Ok(())
    }
}
