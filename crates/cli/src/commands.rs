//! Client commands: keys, agents, tasks, delegation, revocation, proofs, authorisation and
//! token inspection.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use mandate_core::{
    AgentId, Call, Capability, Chain, Invocation, Limits, LinkSpec, NoRevocations, PublicKey,
    SigningKey, TrustBundle, Value, Verifier, VerifierConfig, keyfile,
};
use mandate_proto::v1 as pb;
use serde_json::{Value as Json, json};

use crate::Outcome;
use crate::client::{Connection, time};
use crate::tree::scope;

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
        /// Its public key (unpadded base64url), or…
        #[arg(long, conflicts_with = "key_file")]
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

/// `mandate task ...`.
#[derive(clap::Subcommand, Debug)]
pub(crate) enum TaskCommand {
    /// Start a task; prints the task id and the root chain.
    Start {
        /// Capability `RESOURCE:ACTION[,ACTION…]`, e.g. `files/*:read,write` (repeatable).
        #[arg(long = "cap", required = true)]
        caps: Vec<String>,
        /// Lifetime: `90s`, `5m`, `1h` or milliseconds.
        #[arg(long, default_value = "5m")]
        ttl: String,
        /// Delegation hops allowed below the root.
        #[arg(long, default_value_t = 1)]
        max_depth: u32,
        /// What the task is for.
        #[arg(long, default_value = "")]
        intent: String,
        /// Require online authorisation of every call.
        #[arg(long)]
        online: bool,
        /// Intent field `name=value` for policy and audit, e.g. `ticket=CHG-12` (repeatable).
        #[arg(long = "field")]
        fields: Vec<String>,
        /// Signal `name=value` for policy, e.g. `risk_score=20` (repeatable).
        #[arg(long = "signal")]
        signals: Vec<String>,
        /// When policy requires approval, wait for the decision (else print the request
        /// and return).
        #[arg(long)]
        wait: bool,
        /// Also write the chain (text form) to this file.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Show one task.
    Show {
        /// Task id (hex).
        id: String,
    },
    /// List tasks.
    List {
        /// Only this requester's.
        #[arg(long, default_value = "")]
        requester: String,
    },
    /// Complete a task: its whole tree is revoked.
    Complete {
        /// Task id.
        id: String,
        /// Outcome.
        #[arg(long, default_value = "")]
        summary: String,
    },
    /// Fail a task: its whole tree is revoked.
    Fail {
        /// Task id.
        id: String,
        /// Why.
        #[arg(long, default_value = "")]
        reason: String,
    },
}

/// `mandate delegate`.
#[derive(clap::Args, Debug)]
pub(crate) struct DelegateArgs {
    /// Your chain (text form, or a file holding it); you must hold its leaf.
    #[arg(long)]
    chain: String,
    /// The new holder's agent id (registered).
    #[arg(long)]
    to: String,
    /// Capability for the new holder, `RESOURCE:ACTION[,ACTION…]` (repeatable).
    #[arg(long = "cap", required = true)]
    caps: Vec<String>,
    /// Lifetime (never beyond your own link).
    #[arg(long, default_value = "2m")]
    ttl: String,
    /// Hops the new holder may delegate further.
    #[arg(long, default_value_t = 0)]
    max_depth: u32,
    /// Write the new holder's chain (text form) to this file.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// `mandate prove`.
#[derive(clap::Args, Debug)]
pub(crate) struct ProveArgs {
    /// Your chain (text form, or a file holding it); you must hold its leaf.
    #[arg(long)]
    chain: String,
    /// The tool's agent id.
    #[arg(long)]
    audience: String,
    /// The action.
    #[arg(long)]
    action: String,
    /// The concrete resource.
    #[arg(long)]
    resource: String,
    /// Arguments `name=value` (integers are sent as integers; repeatable).
    #[arg(long = "arg")]
    args: Vec<String>,
    /// Sign the proof even if a tool would reject it (to test how tools refuse).
    #[arg(long)]
    force: bool,
}

/// `mandate authorize`.
#[derive(clap::Args, Debug)]
pub(crate) struct AuthorizeArgs {
    /// The caller's chain (text form, or a file).
    #[arg(long)]
    chain: String,
    /// The caller's invocation proof (text form, or a file).
    #[arg(long)]
    invocation: String,
    /// The action about to be performed.
    #[arg(long)]
    action: String,
    /// The concrete resource.
    #[arg(long)]
    resource: String,
    /// Arguments `name=value` (repeatable).
    #[arg(long = "arg")]
    args: Vec<String>,
    /// Context `name=value` for the Cedar `Invoke` decision, e.g. `risk_score=60`
    /// (repeatable).
    #[arg(long = "context")]
    context: Vec<String>,
    /// Refuse break-glass chains.
    #[arg(long)]
    refuse_break_glass: bool,
}

/// `mandate inspect`.
#[derive(clap::Args, Debug)]
pub(crate) struct InspectArgs {
    /// A chain or invocation proof (text form, or a file).
    token: String,
    /// Trusted coordinator public keys (base64url). Without any, the trust bundle is
    /// fetched from the coordinator if it can be reached.
    #[arg(long = "trust")]
    trust: Vec<String>,
}

fn text_or_file(s: &str) -> anyhow::Result<String> {
    if s.starts_with("mandate1.") || s.starts_with("mandate-inv1.") {
        return Ok(s.to_owned());
    }
    Ok(std::fs::read_to_string(s)
        .with_context(|| format!("`{s}` is neither a token nor a readable file"))?
        .trim()
        .to_owned())
}

fn read_chain(s: &str) -> anyhow::Result<Chain> {
    Ok(Chain::from_text(&text_or_file(s)?, &Limits::default())?)
}

pub(crate) fn parse_ttl(s: &str) -> anyhow::Result<u64> {
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map_or((s, ""), |i| s.split_at(i));
    let n: u64 = num
        .parse()
        .with_context(|| format!("`{s}` is not a duration (e.g. 90s, 5m, 1h)"))?;
    Ok(match unit {
        "" | "ms" => n,
        "s" => n * 1000,
        "m" => n * 60_000,
        "h" => n * 3_600_000,
        _ => bail!("unknown duration unit in `{s}` (ms, s, m, h)"),
    })
}

pub(crate) fn parse_cap(s: &str) -> anyhow::Result<Capability> {
    let (resource, actions) = s
        .rsplit_once(':')
        .with_context(|| format!("capability `{s}` must be RESOURCE:ACTION[,ACTION…]"))?;
    Ok(Capability::new(resource, actions.split(','))?)
}

fn parse_args(args: &[String]) -> anyhow::Result<BTreeMap<String, Value>> {
    args.iter()
        .map(|a| {
            let (k, v) = a
                .split_once('=')
                .with_context(|| format!("argument `{a}` must be name=value"))?;
            let value = v
                .parse::<i64>()
                .map_or_else(|_| Value::Text(v.to_owned()), Value::Int);
            Ok((k.to_owned(), value))
        })
        .collect()
}

/// `name=value` pairs (`what` names the flag in errors).
fn parse_pairs(pairs: &[String], what: &str) -> anyhow::Result<BTreeMap<String, String>> {
    pairs
        .iter()
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .with_context(|| format!("{what} `{p}` must be name=value"))
        })
        .collect()
}

pub(crate) fn write_new(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, format!("{text}\n"))
        .with_context(|| format!("cannot write `{}`", path.display()))
}

fn agent_json(a: &pb::Agent) -> Json {
    json!({
        "agent_id": a.agent_id,
        "public_key": PublicKey::from_bytes(&a.public_key.as_slice().try_into().unwrap_or([0; 32])).map(|k| k.to_string()).unwrap_or_default(),
        "role": a.role,
        "owner": a.owner,
        "labels": a.labels,
        "parent_agent_id": a.parent_agent_id,
        "status": if a.status == pb::AgentStatus::Active as i32 { "active" } else { "disabled" },
        "create_time_ms": a.create_time_ms,
    })
}

pub(crate) fn task_json(t: &pb::Task) -> Json {
    let state = pb::TaskState::try_from(t.state).map(|s| {
        s.as_str_name()
            .trim_start_matches("TASK_STATE_")
            .to_lowercase()
    });
    json!({
        "task_id": t.task_id,
        "requester": t.requester_agent_id,
        "intent": t.intent.as_ref().map(|i| i.text.clone()).unwrap_or_default(),
        "state": state.unwrap_or_default(),
        "deadline_ms": t.deadline_ms,
        "root_link_id": t.root_link_id,
        "end_reason": t.end_reason,
    })
}

/// Prints the outcome of a command that produced a chain: with `out`, the chain goes to
/// that file and the output names the file; without, the chain is printed after the
/// summary (and is the `chain` field of the JSON).
pub(crate) fn print_with_chain(
    conn: &Connection,
    mut j: Json,
    summary: String,
    chain: &str,
    out: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    match out {
        Some(path) => {
            write_new(path, chain)?;
            j["chain_file"] = json!(path.display().to_string());
            print(conn.json, &j, || {
                format!("{summary}\nchain written to {}", path.display())
            });
        }
        None => {
            j["chain"] = json!(chain);
            print(conn.json, &j, || format!("{summary}\n{chain}"));
        }
    }
    Ok(())
}

pub(crate) fn print(json_out: bool, j: &Json, text: impl FnOnce() -> String) {
    if json_out {
        out!("{j}");
    } else {
        out!("{}", text());
    }
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

pub(crate) async fn task(cmd: TaskCommand, conn: &Connection) -> anyhow::Result<Outcome> {
    let mut client = conn.client().await?;
    match cmd {
        TaskCommand::Start {
            caps,
            ttl,
            max_depth,
            intent,
            online,
            fields,
            signals,
            wait,
            out,
        } => {
            let capabilities = caps
                .iter()
                .map(|c| parse_cap(c).map(|c| c.to_pb()))
                .collect::<anyhow::Result<_>>()?;
            let r = client
                .start_task(pb::StartTaskRequest {
                    signals: parse_pairs(&signals, "signal")?,
                    intent: Some(pb::Intent {
                        text: intent,
                        fields: parse_pairs(&fields, "field")?,
                    }),
                    capabilities,
                    ttl_ms: parse_ttl(&ttl)?,
                    max_depth,
                    require_online: online,
                })
                .await?;
            let t = r.task.unwrap_or_default();
            if !r.approval_request_hash.is_empty() {
                if wait {
                    return crate::policy::wait(&mut client, conn, t.task_id, out.as_ref()).await;
                }
                let mut j = task_json(&t);
                j["approval_request_hash"] = json!(r.approval_request_hash);
                j["policy_ids"] = json!(r.decision.map(|d| d.policy_ids).unwrap_or_default());
                print(conn.json, &j, || {
                    format!(
                        "task {} waits for approval (request hash {}).
An approver runs: mandate approve {} --hash {}
Wait with: mandate approvals wait {}",
                        t.task_id,
                        r.approval_request_hash,
                        t.task_id,
                        r.approval_request_hash,
                        t.task_id
                    )
                });
                return Ok(Outcome::Ok);
            }
            let summary = format!(
                "task {} started, deadline {}",
                t.task_id,
                time(t.deadline_ms)
            );
            print_with_chain(conn, task_json(&t), summary, &r.chain_text, out.as_deref())?;
        }
        TaskCommand::Show { id } => {
            let t = client
                .get_task(pb::GetTaskRequest { task_id: id })
                .await?
                .task
                .unwrap_or_default();
            let j = task_json(&t);
            print(conn.json, &j, || {
                format!(
                    "task {}  {}  requested by {}  deadline {}",
                    t.task_id,
                    j["state"],
                    t.requester_agent_id,
                    time(t.deadline_ms)
                )
            });
        }
        TaskCommand::List { requester } => {
            let r = client
                .list_tasks(pb::ListTasksRequest {
                    page_size: 1000,
                    requester_agent_id: requester,
                    ..Default::default()
                })
                .await?;
            if conn.json {
                out!("{}", Json::Array(r.tasks.iter().map(task_json).collect()));
            } else {
                for t in &r.tasks {
                    out!(
                        "{}  {:<10} {}",
                        t.task_id,
                        task_json(t)["state"].as_str().unwrap_or(""),
                        t.requester_agent_id
                    );
                }
            }
        }
        TaskCommand::Complete { id, summary } => {
            let r = client
                .complete_task(pb::CompleteTaskRequest {
                    task_id: id,
                    summary,
                })
                .await?;
            print_ended(
                conn,
                r.task.unwrap_or_default(),
                &r.revoked_link_ids,
                "completed",
            );
        }
        TaskCommand::Fail { id, reason } => {
            let r = client
                .fail_task(pb::FailTaskRequest {
                    task_id: id,
                    reason,
                })
                .await?;
            print_ended(
                conn,
                r.task.unwrap_or_default(),
                &r.revoked_link_ids,
                "failed",
            );
        }
    }
    Ok(Outcome::Ok)
}

/// Prints a task that just ended and the links its end revoked.
fn print_ended(conn: &Connection, t: pb::Task, revoked: &[String], how: &str) {
    let mut j = task_json(&t);
    j["revoked_link_ids"] = json!(revoked);
    print(conn.json, &j, || {
        format!(
            "task {} {how}; revoked {} link(s)",
            t.task_id,
            revoked.len()
        )
    });
}

pub(crate) async fn delegate(a: DelegateArgs, conn: &Connection) -> anyhow::Result<Outcome> {
    let mut client = conn.client().await?;
    let chain = read_chain(&a.chain)?;
    let holder = client
        .get_agent(pb::GetAgentRequest {
            agent_id: a.to.clone(),
        })
        .await?
        .agent
        .unwrap_or_default();
    let key: [u8; 32] = holder
        .public_key
        .as_slice()
        .try_into()
        .context("the holder's registered key is not 32 bytes")?;
    let now = mandate_core::Clock::now_ms(&mandate_core::SystemClock);
    let leaf = chain.leaf().body();
    let expires = now
        .saturating_add(parse_ttl(&a.ttl)?)
        .min(leaf.expires_at_ms);
    let caps = a
        .caps
        .iter()
        .map(|c| parse_cap(c))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let spec = LinkSpec::new(
        PublicKey::from_bytes(&key)?,
        AgentId::new(a.to.clone())?,
        caps,
        now.max(leaf.not_before_ms),
        expires,
    )?
    .max_depth(a.max_depth)
    .require_seal(leaf.require_seal)
    .require_online(leaf.require_online);
    let sealed = client.delegate(&chain, spec).await?;
    let j = json!({ "link_id": sealed.leaf().id().to_string(), "holder": a.to });
    let summary = format!("delegated link {} to {}", sealed.leaf().id(), a.to);
    print_with_chain(conn, j, summary, &sealed.to_text(), a.out.as_deref())?;
    Ok(Outcome::Ok)
}

pub(crate) async fn renew(task: String, ttl: String, conn: &Connection) -> anyhow::Result<Outcome> {
    let mut client = conn.client().await?;
    let r = client
        .renew_grant(pb::RenewGrantRequest {
            signals: Default::default(),
            task_id: task,
            ttl_ms: parse_ttl(&ttl)?,
        })
        .await?;
    print(
        conn.json,
        &json!({ "link_id": r.link_id, "chain": r.chain_text }),
        || format!("new root link {}\n{}", r.link_id, r.chain_text),
    );
    Ok(Outcome::Ok)
}

pub(crate) async fn revoke(
    link: String,
    reason: String,
    conn: &Connection,
) -> anyhow::Result<Outcome> {
    let mut client = conn.client().await?;
    let r = client
        .revoke_link(pb::RevokeLinkRequest {
            link_id: link.clone(),
            reason,
        })
        .await?;
    print(
        conn.json,
        &json!({ "revoked_link_ids": r.revoked_link_ids, "revocation_epoch": r.revocation_epoch }),
        || {
            format!(
                "revoked {} link(s) (epoch {})",
                r.revoked_link_ids.len(),
                r.revocation_epoch
            )
        },
    );
    Ok(Outcome::Ok)
}

/// The checks a tool would make of a proof that `key` signs for `call` under `chain` and
/// that need no trust bundle, in the tool's order: time (step 4), the call within every
/// link (step 6), the signer holding the leaf (step 7).
fn would_accept(
    key: &SigningKey,
    chain: &Chain,
    call: &Call,
    now: u64,
) -> Result<(), mandate_core::Denial> {
    chain.check_time(now, VerifierConfig::default().clock_skew_ms)?;
    chain.check_permits(call)?;
    if key.public_key() != chain.leaf().body().holder {
        return Err(mandate_core::Denial::at(
            mandate_core::Reason::BadSignature,
            chain.len() - 1,
            "your key is not the key the chain's leaf was issued to",
        ));
    }
    Ok(())
}

pub(crate) fn prove(a: &ProveArgs, conn: &Connection) -> anyhow::Result<Outcome> {
    let key = keyfile::load_signing_key(&conn.key)?;
    let chain = read_chain(&a.chain)?;
    let mut call = Call::new(a.action.clone(), a.resource.clone());
    call.args = parse_args(&a.args)?;
    let now = mandate_core::Clock::now_ms(&mandate_core::SystemClock);
    if !a.force
        && let Err(d) = would_accept(&key, &chain, &call, now)
    {
        print(
            conn.json,
            &json!({ "refused": true, "reason": d.reason().code(), "link": d.link_index(), "detail": d.detail() }),
            || {
                format!(
                    "refused: a tool would reject this proof with {d}\n\
                     (--force signs it anyway, to test how a tool refuses)"
                )
            },
        );
        return Ok(Outcome::Denied);
    }
    let proof = Invocation::sign(&key, &chain, &a.audience, call, now)?;
    print(conn.json, &json!({ "invocation": proof.to_text() }), || {
        proof.to_text()
    });
    Ok(Outcome::Ok)
}

pub(crate) async fn authorize(a: AuthorizeArgs, conn: &Connection) -> anyhow::Result<Outcome> {
    let mut client = conn.client().await?;
    let chain = read_chain(&a.chain)?;
    let proof = Invocation::from_text(&text_or_file(&a.invocation)?, &Limits::default())?;
    let mut call = Call::new(a.action.clone(), a.resource.clone());
    call.args = parse_args(&a.args)?;
    let args = mandate_sdk::call_args_to_pb(&call);
    let r = client
        .authorize(pb::AuthorizeRequest {
            refuse_break_glass: a.refuse_break_glass,
            chain: chain.encode(),
            invocation: proof.encode(),
            action: a.action,
            resource: a.resource,
            args,
            context: parse_pairs(&a.context, "context")?,
        })
        .await?;
    print(
        conn.json,
        &json!({ "allowed": r.allowed, "reason": r.reason, "detail": r.detail, "link_index": r.link_index, "holder": r.holder_agent_id, "task_id": r.task_id }),
        || {
            if r.allowed {
                format!("allowed: {} under task {}", r.holder_agent_id, r.task_id)
            } else {
                format!("denied: {} ({})", r.reason, r.detail)
            }
        },
    );
    Ok(if r.allowed {
        Outcome::Ok
    } else {
        Outcome::Denied
    })
}

pub(crate) async fn inspect(a: InspectArgs, conn: &Connection) -> anyhow::Result<Outcome> {
    let text = text_or_file(&a.token)?;
    let limits = Limits::default();
    if text.starts_with("mandate-inv1.") {
        let inv = Invocation::from_text(&text, &limits)?;
        let b = inv.body();
        let j = json!({
            "kind": "invocation",
            "chain_digest": b.chain_digest.to_string(),
            "audience": b.audience,
            "action": b.call.action,
            "resource": b.call.resource,
            "args": b.call.args.iter().map(|(k, v)| (k.clone(), json!(format!("{v:?}")))).collect::<BTreeMap<_, _>>(),
            "issued_at_ms": b.issued_at_ms,
        });
        print(conn.json, &j, || {
            format!(
                "invocation proof for `{}` on `{}` at tool {}\n  issued {}  chain {}",
                b.call.action,
                b.call.resource,
                b.audience,
                time(b.issued_at_ms),
                b.chain_digest
            )
        });
        return Ok(Outcome::Ok);
    }
    let chain = Chain::from_text(&text, &limits)?;
    let mut trust = TrustBundle::new();
    for k in &a.trust {
        trust.add(PublicKey::from_text(k)?, 0, u64::MAX)?;
    }
    if a.trust.is_empty()
        && let Ok(mut client) = conn.client().await
        && let Ok(bundle) = client.get_trust_bundle(pb::GetTrustBundleRequest {}).await
    {
        for k in bundle.keys {
            if let Ok(bytes) = <[u8; 32]>::try_from(k.public_key.as_slice()) {
                trust.add(
                    PublicKey::from_bytes(&bytes)?,
                    k.not_before_ms,
                    k.not_after_ms,
                )?;
            }
        }
    }
    let verdict = if trust.keys().is_empty() {
        json!({ "checked": false, "why": "no trust bundle: pass --trust or reach the coordinator" })
    } else {
        let verify = |online: bool| {
            Verifier::new(
                trust.clone(),
                VerifierConfig {
                    online,
                    ..VerifierConfig::default()
                },
                std::sync::Arc::new(mandate_core::SystemClock),
            )
            .verify_chain(&chain, &NoRevocations)
            .map(|_| ())
        };
        let rejected = |d: &mandate_core::Denial| json!({ "checked": true, "valid": false, "reason": d.reason().code(), "link": d.link_index(), "detail": d.detail() });
        match verify(false) {
            Ok(()) => {
                json!({ "checked": true, "valid": true, "note": "offline checks only; revocation is not known here" })
            }
            // An offline verifier refuses it; whether the rest holds is worth knowing too.
            Err(d) if d.reason() == mandate_core::Reason::OnlineRequired => match verify(true) {
                Ok(()) => {
                    let mut j = rejected(&d);
                    j["online_only"] = json!(true);
                    j
                }
                Err(other) => rejected(&other),
            },
            Err(d) => rejected(&d),
        }
    };
    let hops: Vec<Json> = chain
        .links()
        .iter()
        .map(|l| {
            let b = l.body();
            json!({
                "link_id": l.id().to_string(),
                "depth": b.depth(),
                "kind": b.kind.as_str(),
                "holder": b.holder_agent.as_str(),
                "holder_key": b.holder.to_string(),
                "scope": scope(&b.capabilities.iter().map(Capability::to_pb).collect::<Vec<_>>()),
                "not_before_ms": b.not_before_ms,
                "expires_at_ms": b.expires_at_ms,
                "max_depth": b.max_depth,
                "sealed": l.seal().is_some(),
                "require_seal": b.require_seal,
                "require_online": b.require_online,
            })
        })
        .collect();
    let j = json!({ "kind": "chain", "task_id": chain.task().to_string(), "issuer": chain.issuer().to_string(), "links": hops, "verification": verdict });
    print(conn.json, &j, || {
        let mut out = format!(
            "chain for task {} ({} link(s)), root signed by {}\n",
            chain.task(),
            chain.len(),
            chain.issuer()
        );
        for h in &hops {
            out.push_str(&format!(
                "  #{} {} {} → {}\n      {}  {} .. {}  more hops: {}{}\n",
                h["depth"],
                h["kind"].as_str().unwrap_or(""),
                h["link_id"].as_str().unwrap_or(""),
                h["holder"].as_str().unwrap_or(""),
                h["scope"].as_str().unwrap_or(""),
                time(h["not_before_ms"].as_u64().unwrap_or(0)),
                time(h["expires_at_ms"].as_u64().unwrap_or(0)),
                h["max_depth"],
                if h["sealed"] == true { "  sealed" } else { "" }
            ));
        }
        match (verdict["checked"].as_bool(), verdict["valid"].as_bool()) {
            (Some(true), Some(true)) => out.push_str("verifies offline (revocation not checked)"),
            _ if verdict["online_only"] == true => out.push_str(&format!(
                "needs online authorisation: link {} requires it, so offline verifiers refuse \
                 the chain (ONLINE_REQUIRED); every other check passes, and a tool must ask \
                 the coordinator (Authorize)",
                verdict["link"]
            )),
            (Some(true), _) => out.push_str(&format!(
                "would be REJECTED: {} at link {}: {}",
                verdict["reason"], verdict["link"], verdict["detail"]
            )),
            _ => out.push_str("not verified: no trust bundle"),
        }
        out
    });
    Ok(if verdict["valid"] == false {
        Outcome::Denied
    } else {
        Outcome::Ok
    })
}
