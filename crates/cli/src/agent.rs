//! `mandate keygen` and `mandate agent register|show|list|disable`.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use mandate_core::{PublicKey, SigningKey, keyfile};
use mandate_proto::v1 as pb;
use serde_json::{Value as Json, json};

use crate::Outcome;
use crate::client::Connection;
use crate::output::{agent_json, print};

/// `mandate keygen`.
#[derive(clap::Args, Debug)]
pub(crate) struct KeygenArgs {
    /// Where to write the private key (PKCS#8 PEM, mode 0600; never overwritten).
    #[arg(long)]
    out: PathBuf,
}

/// `mandate agent ...`.
#[derive(clap::Subcommand, Debug)]
pub(crate) enum AgentCommand {
    /// Register an agent (admin; or your own worker with --parent set to yourself).
    Register {
        /// Agent id, `spiffe://<trust-domain>/<path>`.
        id: String,
        /// Its public key (unpadded base64url; it may start with `-`), or…
        #[arg(long, conflicts_with = "key_file", allow_hyphen_values = true)]
        public_key: Option<String>,
        /// …its private key file, to take the public key from.
        #[arg(long)]
        key_file: Option<PathBuf>,
        /// Role: worker (default), planner, tool, auditor, admin.
        #[arg(long, default_value = "worker")]
        role: String,
        /// Accountable owner.
        #[arg(long, default_value = "")]
        owner: String,
        /// Parent agent (for workers).
        #[arg(long, default_value = "")]
        parent: String,
        /// Labels, `key=value` (repeatable).
        #[arg(long = "label")]
        labels: Vec<String>,
    },
    /// Show one agent.
    Show {
        /// Agent id.
        id: String,
    },
    /// List agents.
    List,
    /// Disable an agent (and its workers), revoking every link they hold or issued.
    Disable {
        /// Agent id.
        id: String,
        /// Why.
        #[arg(long, default_value = "disabled from the CLI")]
        reason: String,
    },
}

pub(crate) fn keygen(args: &KeygenArgs, conn: &Connection) -> anyhow::Result<Outcome> {
    let key = SigningKey::generate()?;
    keyfile::save_signing_key(&key, &args.out)?;
    let pk = key.public_key().to_string();
    print(
        conn.json,
        &json!({ "key_file": args.out.display().to_string(), "public_key": pk }),
        || format!("wrote {} (mode 0600)\npublic key: {pk}", args.out.display()),
    );
    Ok(Outcome::Ok)
}

pub(crate) async fn agent(cmd: AgentCommand, conn: &Connection) -> anyhow::Result<Outcome> {
    let mut client = conn.client().await?;
    match cmd {
        AgentCommand::Register {
            id,
            public_key,
            key_file,
            role,
            owner,
            parent,
            labels,
        } => {
            let pk = match (public_key, key_file) {
                (Some(p), _) => PublicKey::from_text(&p)?,
                (None, Some(f)) => keyfile::load_signing_key(&f)?.public_key(),
                (None, None) => bail!("give --public-key or --key-file"),
            };
            let labels = labels
                .iter()
                .map(|l| {
                    l.split_once('=')
                        .map(|(k, v)| (k.to_owned(), v.to_owned()))
                        .with_context(|| format!("label `{l}` must be key=value"))
                })
                .collect::<anyhow::Result<_>>()?;
            let a = client
                .register_agent(pb::RegisterAgentRequest {
                    agent_id: id,
                    public_key: pk.as_bytes().to_vec(),
                    role,
                    owner,
                    labels,
                    parent_agent_id: parent,
                })
                .await?
                .agent
                .unwrap_or_default();
            print(conn.json, &agent_json(&a), || {
                format!("registered {} ({})", a.agent_id, a.role)
            });
        }
        AgentCommand::Show { id } => {
            let a = client
                .get_agent(pb::GetAgentRequest { agent_id: id })
                .await?
                .agent
                .unwrap_or_default();
            let j = agent_json(&a);
            print(conn.json, &j, || {
                format!(
                    "{}\n  role {}  status {}  parent {}\n  key {}",
                    a.agent_id,
                    a.role,
                    j["status"],
                    if a.parent_agent_id.is_empty() {
                        "-"
                    } else {
                        &a.parent_agent_id
                    },
                    j["public_key"]
                )
            });
        }
        AgentCommand::List => {
            let mut token = String::new();
            let mut all = Vec::new();
            loop {
                let page = client
                    .list_agents(pb::ListAgentsRequest {
                        page_size: 1000,
                        page_token: token,
                    })
                    .await?;
                all.extend(page.agents);
                if page.next_page_token.is_empty() {
                    break;
                }
                token = page.next_page_token;
            }
            if conn.json {
                out!("{}", Json::Array(all.iter().map(agent_json).collect()));
            } else {
                for a in &all {
                    let status = if a.status == pb::AgentStatus::Active as i32 {
                        "active"
                    } else {
                        "disabled"
                    };
                    out!("{:<50} {:<8} {status}", a.agent_id, a.role);
                }
            }
        }
        AgentCommand::Disable { id, reason } => {
            let r = client
                .disable_agent(pb::DisableAgentRequest {
                    agent_id: id.clone(),
                    reason,
                })
                .await?;
            print(
                conn.json,
                &json!({ "agent_id": id, "revoked_link_ids": r.revoked_link_ids, "revocation_epoch": r.revocation_epoch }),
                || {
                    format!(
                        "disabled {id}; revoked {} link(s)",
                        r.revoked_link_ids.len()
                    )
                },
            );
        }
    }
    Ok(Outcome::Ok)
}
