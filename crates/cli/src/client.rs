//! Connecting as an agent: server address, key file and agent id from flags or env.

use std::path::PathBuf;

use anyhow::Context as _;
use mandate_sdk::{Client, Signer};

/// How to reach the coordinator and who to be.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct Connection {
    /// Coordinator address, or several separated by commas (`a:7468,b:7468`): calls go
    /// to the first that answers and move on when it cannot be reached.
    #[arg(
        long,
        global = true,
        env = "MANDATE_SERVER",
        default_value = "127.0.0.1:7468"
    )]
    pub(crate) server: String,
    /// The agent's private key (PKCS#8 PEM, mode 0600).
    #[arg(
        long,
        global = true,
        env = "MANDATE_KEY",
        default_value = "mandate-data/admin.key"
    )]
    pub(crate) key: PathBuf,
    /// The agent id to sign as.
    #[arg(
        long,
        global = true,
        env = "MANDATE_AGENT",
        default_value = "spiffe://mandate.local/admin"
    )]
    pub(crate) agent: String,
    /// CA certificate (PEM) that signed the coordinator's TLS certificate; with it,
    /// `host:port` means TLS.
    #[arg(long, global = true, env = "MANDATE_CA_FILE")]
    pub(crate) ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for a coordinator that requires mutual TLS.
    #[arg(long, global = true, env = "MANDATE_CLIENT_CERT")]
    pub(crate) client_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, global = true, env = "MANDATE_CLIENT_KEY")]
    pub(crate) client_key: Option<PathBuf>,
    /// Machine-readable output: JSON (one object per line for record streams).
    #[arg(long, global = true)]
    pub(crate) json: bool,
}

impl Connection {
    pub(crate) async fn client(&self) -> anyhow::Result<Client> {
        let signer = Signer::from_key_file(&self.agent, &self.key)?;
        Client::connect_tls(&self.server, signer, &self.tls())
            .await
            .with_context(|| format!("cannot reach the coordinator at {}", self.server))
    }

    /// The TLS files given.
    pub(crate) fn tls(&self) -> mandate_sdk::ClientTls {
        mandate_sdk::ClientTls {
            ca: self.ca_file.clone(),
            cert: self.client_cert.clone(),
            key: self.client_key.clone(),
        }
    }
}

/// Unix milliseconds as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub(crate) fn time(ms: u64) -> String {
    let secs = ms / 1000;
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_render_in_utc() {
        assert_eq!(super::time(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(super::time(1_800_000_000_123), "2027-01-15T08:00:00.123Z");
        assert_eq!(super::time(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }
}
