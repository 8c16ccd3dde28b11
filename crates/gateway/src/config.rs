//! The gateway's configuration: one TOML file (docs/GATEWAY.md has the reference).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Why a configuration is refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read `{path}`: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML for this configuration (the message names the line).
    #[error("`{path}`: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, with its line and column.
        message: String,
    },
    /// No file was named.
    #[error("no configuration: pass --config <file> or set MANDATE_GATEWAY_CONFIG")]
    Missing,
    /// A value is not acceptable.
    #[error("`{path}`: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// The whole file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The gateway itself.
    pub gateway: GatewaySection,
    /// The upstreams it fronts.
    #[serde(default, rename = "upstream")]
    pub upstreams: Vec<Upstream>,
}

/// `[gateway]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewaySection {
    /// Where to listen (default 127.0.0.1:7469).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// The gateway's agent id (registered with role `tool`): the audience proofs name.
    pub agent: String,
    /// Its private key (PKCS#8 PEM, mode 0600), relative to the config file.
    pub key: PathBuf,
    /// The coordinator (`host:port` or `http://host:port`), or several separated by commas
    /// (the gateway moves to the next when one cannot be reached).
    pub coordinator: String,
    /// Largest request body accepted, bytes.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// How old the revocation feed may be before calls are refused (`FEED_STALE`), ms.
    #[serde(default = "default_staleness")]
    pub max_staleness_ms: u64,
    /// Most offline decisions kept for the coordinator's audit log while it is away; when
    /// full, calls are refused (`AUDIT_BACKLOG`).
    #[serde(default = "default_spool")]
    pub max_spooled_decisions: usize,
    /// A file that keeps the offline decisions not yet delivered across a crash (default:
    /// memory only).
    #[serde(default)]
    pub spool_file: Option<PathBuf>,
    /// Most client connections open at once; more are closed as they arrive.
    #[serde(default = "default_connections")]
    pub max_connections: usize,
    /// Requests the gateway takes per minute in all (a minute's worth may come at once);
    /// over it, `429 RATE_LIMITED`. 0: no limit.
    #[serde(default = "default_total_rate")]
    pub max_requests_per_minute: u32,
    /// Allowed calls per holder per minute; over it, `429 RATE_LIMITED`. 0: no limit.
    #[serde(default = "default_holder_rate")]
    pub max_calls_per_holder_per_minute: u32,
    /// TLS certificate chain (PEM) of the listener; with `tls_key`, the gateway serves
    /// HTTPS. Reloaded on SIGHUP.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM) of the listener.
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// CA (PEM) for client certificates: every client must present one.
    #[serde(default)]
    pub tls_client_ca: Option<PathBuf>,
    /// Serve plaintext on a non-loopback address (only behind a TLS-terminating proxy).
    #[serde(default)]
    pub insecure_plaintext: bool,
    /// CA (PEM) of the coordinator's TLS certificate; with it the coordinator is reached
    /// over TLS.
    #[serde(default)]
    pub coordinator_ca: Option<PathBuf>,
    /// Client certificate (PEM) for a coordinator that requires mutual TLS.
    #[serde(default)]
    pub coordinator_client_cert: Option<PathBuf>,
    /// Its private key (PEM).
    #[serde(default)]
    pub coordinator_client_key: Option<PathBuf>,
}

impl GatewaySection {
    /// The listener's TLS files, if it serves TLS.
    pub fn tls(&self) -> Option<mandate_tls::ServerTlsFiles> {
        Some(mandate_tls::ServerTlsFiles {
            cert: self.tls_cert.clone()?,
            key: self.tls_key.clone()?,
            client_ca: self.tls_client_ca.clone(),
        })
    }

    /// How the gateway reaches the coordinator.
    pub fn coordinator_tls(&self) -> mandate_tls::ClientTls {
        mandate_tls::ClientTls {
            ca: self.coordinator_ca.clone(),
            cert: self.coordinator_client_cert.clone(),
            key: self.coordinator_client_key.clone(),
        }
    }
}

fn default_total_rate() -> u32 {
    1_200_000
}

fn default_holder_rate() -> u32 {
    6_000
}

fn default_connections() -> usize {
    4096
}

fn default_spool() -> usize {
    100_000
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7469))
}

fn default_max_body() -> usize {
    1 << 20
}

fn default_staleness() -> u64 {
    10_000
}

/// `[[upstream]]`: an HTTP API mounted under `/<name>/`, or an MCP server (streamable
/// HTTP) whose endpoint is `/<name>`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    /// Its name: the first path segment at the gateway.
    pub name: String,
    /// `http` (the default) or `mcp`.
    #[serde(default = "default_kind")]
    pub kind: String,
    /// Its base URL (`http://host:port[/base]`); for MCP, its endpoint
    /// (`http://host:port/mcp`).
    pub url: String,
    /// The credential injected on allowed calls.
    pub credential: Option<Credential>,
    /// The calls it accepts; anything else is refused.
    #[serde(default, rename = "route")]
    pub routes: Vec<Route>,
    /// Decide every call to this upstream online (`Authorize`), not only the marked ones.
    #[serde(default)]
    pub online: bool,
    /// MCP: the tools decided online, by name or by a prefix ending in `*`
    /// (`["delete_*", "transfer"]`).
    #[serde(default)]
    pub online_tools: Vec<String>,
}

impl Upstream {
    /// Whether a call of this MCP tool is decided online.
    pub fn tool_online(&self, tool: &str) -> bool {
        self.online || tool_matches(&self.online_tools, tool)
    }
}

/// Whether `tool` is one of `patterns`: a name, or a prefix ending in `*` (`*` alone
/// matches every tool).
pub(crate) fn tool_matches(patterns: &[String], tool: &str) -> bool {
    patterns.iter().any(|p| match p.strip_suffix('*') {
        Some(prefix) => tool.starts_with(prefix),
        None => p == tool,
    })
}

/// `[upstream.credential]`: where the secret comes from and how it is sent.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credential {
    /// The header that carries it (default `authorization`).
    #[serde(default = "default_header")]
    pub header: String,
    /// `bearer` (`Bearer <secret>`), `basic` (`Basic <secret>`, the secret already
    /// `user:password` in base64) or `raw` (the secret as it is).
    #[serde(default = "default_scheme")]
    pub scheme: String,
    /// An environment variable holding the secret.
    pub env: Option<String>,
    /// A file holding the secret (surrounding whitespace trimmed), relative to the config.
    pub file: Option<PathBuf>,
}

fn default_kind() -> String {
    "http".into()
}

fn default_header() -> String {
    "authorization".into()
}

fn default_scheme() -> String {
    "bearer".into()
}

/// `[[upstream.route]]`: a method and path pattern, and the action and resource a call
/// needs.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// HTTP method (`GET`, `POST`, ...).
    pub method: String,
    /// Path below the upstream's mount, with `{param}` segments: `/invoices/{id}`.
    pub path: String,
    /// The action checked against the chain.
    pub action: String,
    /// The resource, where `{param}` takes the path parameter: `billing/invoices/{id}`.
    pub resource: String,
    /// Decide this route online (`Authorize`: live revocation, the Cedar `Invoke` policy
    /// with the call as signals, the coordinator's audit log) rather than offline.
    #[serde(default)]
    pub online: bool,
}

impl Config {
    /// Reads and checks a configuration file. Relative paths in it are taken from the
    /// file's directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Config::parse(&text, path, base)
    }

    /// Parses and checks configuration text (`path` names it in errors).
    pub fn parse(text: &str, path: &Path, base: &Path) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string().trim_end().replace('\n', " "),
        })?;
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_owned(),
            message,
        };
        mandate_core::AgentId::new(config.gateway.agent.clone())
            .map_err(|e| invalid(format!("gateway.agent: {e}")))?;
        for (key, value) in [
            ("max_body_bytes", config.gateway.max_body_bytes),
            ("max_connections", config.gateway.max_connections),
            (
                "max_spooled_decisions",
                config.gateway.max_spooled_decisions,
            ),
        ] {
            if value == 0 {
                return Err(invalid(format!(
                    "gateway.{key} is at least 1 (0 would refuse every call)"
                )));
            }
        }
        if let Some(spool) = config.gateway.spool_file.as_mut()
            && spool.is_relative()
        {
            *spool = base.join(&*spool);
        }
        if config.gateway.key.is_relative() {
            config.gateway.key = base.join(&config.gateway.key);
        }
        let g = &mut config.gateway;
        for p in [
            &mut g.tls_cert,
            &mut g.tls_key,
            &mut g.tls_client_ca,
            &mut g.coordinator_ca,
            &mut g.coordinator_client_cert,
            &mut g.coordinator_client_key,
        ]
        .into_iter()
        .flatten()
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        if g.tls_cert.is_some() != g.tls_key.is_some()
            || (g.tls_client_ca.is_some() && g.tls_cert.is_none())
        {
            return Err(invalid(
                "gateway.tls_cert and gateway.tls_key go together (and tls_client_ca needs both)"
                    .into(),
            ));
        }
        if g.tls_cert.is_none() && !g.listen.ip().is_loopback() && !g.insecure_plaintext {
            return Err(invalid(format!(
                "refusing to serve plaintext on {}, which is not a loopback address: set \
                 gateway.tls_cert and gateway.tls_key, or insecure_plaintext = true behind a \
                 TLS-terminating proxy",
                g.listen
            )));
        }
        let mut names = std::collections::HashSet::new();
        for u in &mut config.upstreams {
            if u.name.is_empty() || u.name.contains('/') || !names.insert(u.name.clone()) {
                return Err(invalid(format!(
                    "upstream `{}`: names are unique, non-empty and contain no `/`",
                    u.name
                )));
            }
            if !matches!(u.kind.as_str(), "http" | "mcp") {
                return Err(invalid(format!(
                    "upstream `{}`: kind is http or mcp",
                    u.name
                )));
            }
            if u.kind != "mcp" && !u.online_tools.is_empty() {
                return Err(invalid(format!(
                    "upstream `{}`: online_tools is for MCP upstreams (mark HTTP routes with online = true)",
                    u.name
                )));
            }
            if u.kind == "mcp" && !u.routes.is_empty() {
                return Err(invalid(format!(
                    "upstream `{}`: an MCP upstream has no routes (its tools are `mcp/{}/<tool>`)",
                    u.name, u.name
                )));
            }
            if !u.url.starts_with("http://") {
                return Err(invalid(format!(
                    "upstream `{}`: url must start with http://",
                    u.name
                )));
            }
            if let Some(c) = &mut u.credential {
                if c.env.is_some() == c.file.is_some() {
                    return Err(invalid(format!(
                        "upstream `{}`: a credential names exactly one of `env` and `file`",
                        u.name
                    )));
                }
                if !matches!(c.scheme.as_str(), "bearer" | "basic" | "raw") {
                    return Err(invalid(format!(
                        "upstream `{}`: credential scheme is bearer, basic or raw",
                        u.name
                    )));
                }
                http::HeaderName::from_bytes(c.header.as_bytes()).map_err(|_| {
                    invalid(format!("upstream `{}`: bad credential header", u.name))
                })?;
                if let Some(f) = &mut c.file
                    && f.is_relative()
                {
                    *f = base.join(&*f);
                }
            }
            for r in &u.routes {
                http::Method::from_bytes(r.method.as_bytes()).map_err(|_| {
                    invalid(format!(
                        "upstream `{}`: route method `{}` is not an HTTP method",
                        u.name, r.method
                    ))
                })?;
                if !r.path.starts_with('/') || r.action.is_empty() || r.resource.is_empty() {
                    return Err(invalid(format!(
                        "upstream `{}`: a route has a path starting with `/`, an action and a resource",
                        u.name
                    )));
                }
            }
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[gateway]
agent = "spiffe://mandate.local/gateways/g"
key = "g.key"
coordinator = "127.0.0.1:7468"

[[upstream]]
name = "billing"
url = "http://127.0.0.1:9000"
credential = { env = "BILLING_TOKEN" }

[[upstream.route]]
method = "GET"
path = "/invoices/{id}"
action = "read"
resource = "billing/invoices/{id}"
"#;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("g.toml"), Path::new("/etc/mandate"))
    }

    #[test]
    fn a_good_config_reads_with_defaults_and_paths_from_its_directory() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.gateway.key, Path::new("/etc/mandate/g.key"));
        assert_eq!(c.gateway.max_body_bytes, 1 << 20);
        let cred = c.upstreams[0].credential.as_ref().unwrap();
        assert_eq!(
            (cred.header.as_str(), cred.scheme.as_str()),
            ("authorization", "bearer")
        );
    }

    #[test]
    fn bad_configs_are_refused_with_a_clear_message() {
        let err = parse("[gateway]\nagent = 3\n").unwrap_err().to_string();
        assert!(err.contains("g.toml") && err.contains("line 2"), "{err}");
        let unknown =
            parse(&GOOD.replace("key = \"g.key\"", "key = \"g.key\"\nkeys = 1")).unwrap_err();
        assert!(unknown.to_string().contains("unknown field"), "{unknown}");
        for (from, to, says) in [
            (
                "spiffe://mandate.local/gateways/g",
                "not-an-id",
                "gateway.agent",
            ),
            ("http://127.0.0.1:9000", "ftp://x", "http://"),
            (
                "{ env = \"BILLING_TOKEN\" }",
                "{ env = \"A\", file = \"b\" }",
                "exactly one",
            ),
            (
                "method = \"GET\"",
                "method = \"G E T\"",
                "not an HTTP method",
            ),
            (
                "path = \"/invoices/{id}\"",
                "path = \"invoices\"",
                "starting with `/`",
            ),
            (
                "key = \"g.key\"",
                "key = \"g.key\"\nmax_connections = 0",
                "gateway.max_connections is at least 1",
            ),
            (
                "key = \"g.key\"",
                "key = \"g.key\"\nmax_spooled_decisions = 0",
                "gateway.max_spooled_decisions is at least 1",
            ),
            (
                "url = \"http://127.0.0.1:9000\"",
                "url = \"http://127.0.0.1:9000\"\nonline_tools = [\"x\"]",
                "online_tools is for MCP upstreams",
            ),
        ] {
            let err = parse(&GOOD.replace(from, to)).unwrap_err().to_string();
            assert!(err.contains(says), "{from} → {to}: {err}");
        }
    }
}
