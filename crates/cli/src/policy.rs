//! `mandate policy show|reload|validate|schema|default`.

use std::path::PathBuf;

use mandate_proto::v1 as pb;
use serde_json::{Value as Json, json};

use crate::Outcome;
use crate::client::{Connection, time};
use crate::output::print;

/// `mandate policy ...`.
#[derive(clap::Subcommand, Debug)]
pub(crate) enum PolicyCommand {
    /// The policy set in force: hash, source, every policy with its obligations.
    Show,
    /// Install a new policy set: the `*.cedar` files of `--dir`, sent to the coordinator
    /// (the way to change the set of several coordinators: it is recorded in the store),
    /// or without `--dir` the server's own policy directory read again. Live links the new
    /// set denies are revoked.
    Reload {
        /// Directory of `*.cedar` files to send.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Check a policy directory offline, against the schema, without a server.
    Validate {
        /// Directory of `*.cedar` files.
        dir: PathBuf,
    },
    /// Print the Cedar schema policies are validated against.
    Schema,
    /// Print the default policy set (a starting point for your own).
    Default,
}

fn policy_text(p: &pb::PolicyInfo) -> String {
    let mut s = format!(
        "policy set {}\n  source: {}\n  loaded: {}\n  files:  {}\n",
        p.policy_hash,
        p.source,
        time(p.load_time_ms),
        p.files.join(", ")
    );
    for x in &p.policies {
        s.push_str(&format!(
            "  {:7} {:40} {}\n",
            if x.permit { "permit" } else { "forbid" },
            x.policy_id,
            if x.obligations == "none" {
                ""
            } else {
                &x.obligations
            }
        ));
    }
    s.trim_end().to_owned()
}

fn policy_json(p: &pb::PolicyInfo) -> Json {
    json!({
        "policy_hash": p.policy_hash,
        "source": p.source,
        "files": p.files,
        "load_time_ms": p.load_time_ms,
        "policies": p.policies.iter().map(|x| json!({"policy_id": x.policy_id, "permit": x.permit, "obligations": x.obligations})).collect::<Vec<_>>(),
    })
}

pub(crate) async fn policy(cmd: PolicyCommand, conn: &Connection) -> anyhow::Result<Outcome> {
    match cmd {
        PolicyCommand::Schema => {
            out_raw!("{}", mandate_policy::SCHEMA);
            return Ok(Outcome::Ok);
        }
        PolicyCommand::Default => {
            out_raw!("{}", mandate_policy::DEFAULT_POLICIES);
            return Ok(Outcome::Ok);
        }
        PolicyCommand::Validate { dir } => {
            return match mandate_policy::PolicySet::load_dir(&dir) {
                Ok(set) => {
                    let policies = set.policies();
                    print(
                        conn.json,
                        &json!({"valid": true, "policy_hash": set.hash(), "policies": policies.iter().map(|p| json!({"policy_id": p.0, "permit": p.1, "obligations": p.2.to_string()})).collect::<Vec<_>>()}),
                        || format!("valid: {} policies, hash {}", policies.len(), set.hash()),
                    );
                    Ok(Outcome::Ok)
                }
                Err(mandate_policy::LoadError::Invalid { problems }) => {
                    print(
                        conn.json,
                        &json!({"valid": false, "problems": problems}),
                        || format!("invalid:\n{}", problems.join("\n")),
                    );
                    Ok(Outcome::Denied)
                }
                Err(e) => Err(e.into()),
            };
        }
        PolicyCommand::Show | PolicyCommand::Reload { .. } => {}
    }
    let mut client = conn.client().await?;
    match cmd {
        PolicyCommand::Show => {
            let p = client
                .get_policy(pb::GetPolicyRequest {})
                .await?
                .policy
                .unwrap_or_default();
            print(conn.json, &policy_json(&p), || policy_text(&p));
        }
        PolicyCommand::Reload { dir } => {
            let files = match dir {
                Some(dir) => mandate_policy::PolicySet::read_dir(&dir)?
                    .into_iter()
                    .collect(),
                None => Default::default(),
            };
            let r = client
                .reload_policy(pb::ReloadPolicyRequest { files })
                .await?;
            let p = r.policy.unwrap_or_default();
            let mut j = policy_json(&p);
            j["previous_policy_hash"] = json!(r.previous_policy_hash);
            j["reevaluated_links"] = json!(r.reevaluated_links);
            j["revoked_link_ids"] = json!(r.revoked_link_ids);
            print(conn.json, &j, || {
                format!(
                    "reloaded: {} (was {})\n{} live links decided again, {} revoked by drift{}",
                    p.policy_hash,
                    r.previous_policy_hash,
                    r.reevaluated_links,
                    r.revoked_link_ids.len(),
                    r.revoked_link_ids
                        .iter()
                        .map(|l| format!("\n  revoked {l}"))
                        .collect::<String>()
                )
            });
        }
        _ => {}
    }
    Ok(Outcome::Ok)
}
