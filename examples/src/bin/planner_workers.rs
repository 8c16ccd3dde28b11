//! A planner starts a task, registers two workers and delegates narrower scopes; the
//! workers call a real tonic tool (a file store) protected by `MandateLayer`; one worker
//! tries to exceed its scope and is denied; the planner revokes that worker (it is cut
//! off, the other continues), then completes the task (everything is cut off). The
//! delegation tree is printed at each step.
//!
//! With no arguments it starts its own coordinator on an ephemeral port and data
//! directory. `--server ADDR --admin-key FILE` runs against one already running.
//! Exits non-zero if any expected allow or deny does not happen.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use mandate_core::{
    AgentId, Call, Capability, Chain, Invocation, Limits, LinkSpec, SigningKey, keyfile,
};
use mandate_examples::files::file_store_client::FileStoreClient;
use mandate_examples::files::{ReadRequest, WriteRequest};
use mandate_examples::{FileStoreTool, serve_tool};
use mandate_proto::token as tpb;
use mandate_proto::v1 as pb;
use mandate_sdk::{Client, Signer, ToolConfig, ToolVerifier, attach};
use tonic::transport::Channel;

const TOOL: &str = "spiffe://mandate.local/tools/files";
const PLANNER: &str = "spiffe://mandate.local/agents/planner";
const READER: &str = "spiffe://mandate.local/agents/reader";
const WRITER: &str = "spiffe://mandate.local/agents/writer";

struct Checks {
    failures: Vec<String>,
}

impl Checks {
    fn allowed<T>(&mut self, what: &str, r: &Result<T, tonic::Status>) {
        match r {
            Ok(_) => println!("  ✔ allowed: {what}"),
            Err(s) => {
                println!("  ✘ {what}: expected allowed, got {}", s.message());
                self.failures.push(what.to_owned());
            }
        }
    }

    fn denied<T>(&mut self, what: &str, reason: &str, r: &Result<T, tonic::Status>) {
        match r {
            Err(s)
                if s.code() == tonic::Code::PermissionDenied && s.message().starts_with(reason) =>
            {
                println!("  ✔ denied ({reason}): {what}");
            }
            Err(s) => {
                println!(
                    "  ✘ {what}: expected {reason}, got {:?} {}",
                    s.code(),
                    s.message()
                );
                self.failures.push(what.to_owned());
            }
            Ok(_) => {
                println!("  ✘ {what}: expected {reason}, but it was allowed");
                self.failures.push(what.to_owned());
            }
        }
    }
}

/// One agent calling the tool with its chain.
struct Worker {
    key: SigningKey,
    chain: Chain,
    tool: FileStoreClient<Channel>,
}

impl Worker {
    fn proof<T>(
        &self,
        msg: T,
        action: &str,
        path: &str,
    ) -> Result<tonic::Request<T>, tonic::Status> {
        let call = Call::new(action, format!("files/{path}"));
        let now = mandate_core::Clock::now_ms(&mandate_core::SystemClock);
        let proof = Invocation::sign(&self.key, &self.chain, TOOL, call, now)
            .map_err(|e| tonic::Status::internal(e.to_string()))?;
        let mut req = tonic::Request::new(msg);
        attach(&mut req, &self.chain, &proof)
            .map_err(|e| tonic::Status::internal(e.to_string()))?;
        Ok(req)
    }

    async fn read(&mut self, path: &str) -> Result<Vec<u8>, tonic::Status> {
        let req = self.proof(ReadRequest { path: path.into() }, "read", path)?;
        Ok(self.tool.read(req).await?.into_inner().content)
    }

    async fn write(&mut self, path: &str, content: &str) -> Result<u64, tonic::Status> {
        let req = self.proof(
            WriteRequest {
                path: path.into(),
                content: content.as_bytes().to_vec(),
            },
            "write",
            path,
        )?;
        Ok(self.tool.write(req).await?.into_inner().size)
    }
}

async fn print_tree(planner: &mut Client, task: &str, title: &str) -> anyhow::Result<()> {
    let tree = planner
        .get_delegation_tree(pb::GetDelegationTreeRequest {
            task_id: task.into(),
        })
        .await?;
    println!("\n{title}: delegation tree of task {task}");
    for l in &tree.links {
        let state = match pb::LinkState::try_from(l.state) {
            Ok(pb::LinkState::Live) => "live",
            Ok(pb::LinkState::Revoked) => "REVOKED",
            Ok(pb::LinkState::Expired) => "expired",
            _ => "?",
        };
        let scope: Vec<String> = l
            .capabilities
            .iter()
            .map(|c| format!("{} {}", c.resource, c.actions.join(",")))
            .collect();
        println!(
            "  {}{} {} [{}] {}",
            "   ".repeat(l.depth as usize),
            if l.depth == 0 { "●" } else { "└─" },
            l.holder_agent_id,
            scope.join("; "),
            state
        );
    }
    Ok(())
}

fn spec(
    key: &SigningKey,
    id: &str,
    resource: &str,
    actions: &[&str],
    now: u64,
) -> anyhow::Result<LinkSpec> {
    Ok(LinkSpec::new(
        key.public_key(),
        id.parse()?,
        vec![Capability::new(resource, actions.iter().copied())?],
        now,
        now + 120_000,
    )?
    .require_seal(true))
}

/// Waits (bounded) until the tool's verifier has applied revocation `epoch`.
async fn until_applied(verifier: &ToolVerifier, epoch: u64) -> anyhow::Result<()> {
    for _ in 0..400 {
        if verifier.epoch() >= epoch {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    anyhow::bail!("the tool never saw revocation epoch {epoch}")
}

async fn run(
    server: Option<String>,
    admin_key: Option<std::path::PathBuf>,
) -> anyhow::Result<Vec<String>> {
    // A coordinator: the given one, or our own on an ephemeral port.
    let mut own = None;
    let (endpoint, admin_key_path, admin_id) = match (server, admin_key) {
        (Some(s), Some(k)) => (
            if s.contains("://") {
                s
            } else {
                format!("http://{s}")
            },
            k,
            "spiffe://mandate.local/admin".to_owned(),
        ),
        (None, None) => {
            let dir = tempfile::tempdir()?;
            let config =
                mandate_server::Config::new(([127, 0, 0, 1], 0).into(), dir.path().join("data"));
            let server = mandate_server::start(config).await?;
            let out = (
                format!("http://{}", server.local_addr),
                server.admin_key_path.clone(),
                server.admin_id.clone(),
            );
            println!("started a coordinator on {}", server.local_addr);
            own = Some((server, dir));
            out
        }
        _ => anyhow::bail!("give both --server and --admin-key, or neither"),
    };
    let admin_key = keyfile::load_signing_key(&admin_key_path).context("loading the admin key")?;
    let mut admin = Client::connect(
        endpoint.clone(),
        Signer::new(AgentId::new(admin_id)?, admin_key),
    )
    .await?;
    let suffix = format!(
        "{:x}",
        mandate_core::Clock::now_ms(&mandate_core::SystemClock)
    );
    let (planner_id, reader_id, writer_id, tool_id) = (
        format!("{PLANNER}-{suffix}"),
        format!("{READER}-{suffix}"),
        format!("{WRITER}-{suffix}"),
        TOOL.to_owned(),
    );

    // Identities: the admin registers the planner and the tool; the planner its workers.
    let register =
        |id: String, key: &SigningKey, role: &str, parent: &str| pb::RegisterAgentRequest {
            agent_id: id,
            public_key: key.public_key().as_bytes().to_vec(),
            role: role.into(),
            owner: "examples".into(),
            parent_agent_id: parent.into(),
            ..Default::default()
        };
    let planner_key = SigningKey::generate()?;
    let tool_key = SigningKey::generate()?;
    admin
        .register_agent(register(planner_id.clone(), &planner_key, "planner", ""))
        .await?;
    if let Err(e) = admin
        .register_agent(register(tool_id.clone(), &tool_key, "tool", ""))
        .await
        && e.code() != Some(tonic::Code::AlreadyExists)
    {
        return Err(e.into());
    }
    let mut planner = admin.as_agent(Signer::new(planner_id.parse()?, planner_key.clone()));

    // The tool: a file store behind MandateLayer, following the revocation feed.
    let tool_client = admin.as_agent(Signer::new(tool_id.parse()?, tool_key));
    let verifier = ToolVerifier::connect(tool_client, ToolConfig::new(TOOL)).await?;
    let (stop_tool, stopped) = tokio::sync::oneshot::channel::<()>();
    let (tool_addr, tool_task) = serve_tool(
        ([127, 0, 0, 1], 0).into(),
        verifier.clone(),
        FileStoreTool::default(),
        async {
            let _ = stopped.await;
        },
    )
    .await?;
    let tool_channel = Channel::from_shared(format!("http://{tool_addr}"))?
        .connect()
        .await?;
    println!("file store tool listening on {tool_addr}");

    // The planner's task.
    let started = planner
        .start_task(pb::StartTaskRequest {
            signals: Default::default(),
            intent: Some(pb::Intent {
                text: "prepare the quarterly report".into(),
                ..Default::default()
            }),
            capabilities: vec![tpb::Capability {
                resource: "files/*".into(),
                actions: vec!["read".into(), "write".into()],
                constraints: vec![],
            }],
            ttl_ms: 5 * 60_000,
            max_depth: 1,
            require_online: false,
            max_uses: 0,
        })
        .await?;
    let task = started
        .task
        .as_ref()
        .map(|t| t.task_id.clone())
        .unwrap_or_default();
    let root = Chain::decode(&started.chain, &Limits::default())?;
    let mut checks = Checks {
        failures: Vec::new(),
    };
    let mut planner_tool = Worker {
        key: planner_key.clone(),
        chain: root.clone(),
        tool: FileStoreClient::new(tool_channel.clone()),
    };
    checks.allowed(
        "planner writes files/reports/q3.txt",
        &planner_tool.write("reports/q3.txt", "Q3: up 12%").await,
    );

    // Two workers, each with a narrower scope.
    let reader_key = SigningKey::generate()?;
    let writer_key = SigningKey::generate()?;
    planner
        .register_agent(register(
            reader_id.clone(),
            &reader_key,
            "worker",
            &planner_id,
        ))
        .await?;
    planner
        .register_agent(register(
            writer_id.clone(),
            &writer_key,
            "worker",
            &planner_id,
        ))
        .await?;
    let now = mandate_core::Clock::now_ms(&mandate_core::SystemClock);
    let reader_chain = planner
        .delegate(
            &root,
            spec(&reader_key, &reader_id, "files/reports/*", &["read"], now)?,
        )
        .await?;
    let writer_chain = planner
        .delegate(
            &root,
            spec(
                &writer_key,
                &writer_id,
                "files/drafts/*",
                &["read", "write"],
                now,
            )?,
        )
        .await?;
    print_tree(&mut planner, &task, "after delegating").await?;
    let mut reader = Worker {
        key: reader_key,
        chain: reader_chain.clone(),
        tool: FileStoreClient::new(tool_channel.clone()),
    };
    let mut writer = Worker {
        key: writer_key,
        chain: writer_chain,
        tool: FileStoreClient::new(tool_channel.clone()),
    };

    println!("\nworkers at work:");
    checks.allowed(
        "reader reads files/reports/q3.txt",
        &reader.read("reports/q3.txt").await,
    );
    checks.allowed(
        "writer writes files/drafts/summary.txt",
        &writer.write("drafts/summary.txt", "draft").await,
    );
    checks.denied(
        "reader writes files/reports/q3.txt",
        "NOT_PERMITTED",
        &reader.write("reports/q3.txt", "tampered").await,
    );
    checks.denied(
        "reader reads files/drafts/summary.txt",
        "NOT_PERMITTED",
        &reader.read("drafts/summary.txt").await,
    );

    // The planner revokes the reader: it is cut off at once, the writer continues.
    let revoked = planner
        .revoke_link(pb::RevokeLinkRequest {
            link_id: reader_chain.leaf().id().to_string(),
            reason: "reader finished early".into(),
        })
        .await?;
    until_applied(&verifier, revoked.revocation_epoch).await?;
    print_tree(&mut planner, &task, "after revoking the reader").await?;
    println!();
    checks.denied(
        "revoked reader reads files/reports/q3.txt",
        "REVOKED",
        &reader.read("reports/q3.txt").await,
    );
    checks.allowed(
        "writer reads files/drafts/summary.txt",
        &writer.read("drafts/summary.txt").await,
    );

    // Completing the task cuts everyone off.
    let done = planner
        .complete_task(pb::CompleteTaskRequest {
            task_id: task.clone(),
            summary: "report prepared".into(),
        })
        .await?;
    until_applied(&verifier, done.revocation_epoch).await?;
    print_tree(&mut planner, &task, "after completing the task").await?;
    println!();
    checks.denied(
        "writer writes after completion",
        "REVOKED",
        &writer.write("drafts/late.txt", "late").await,
    );
    checks.denied(
        "planner reads after completion",
        "REVOKED",
        &planner_tool.read("reports/q3.txt").await,
    );

    let _ = stop_tool.send(());
    let _ = tool_task.await;
    if let Some((server, _dir)) = own {
        server.shutdown().await?;
    }
    Ok(checks.failures)
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (mut server, mut key) = (None, None);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--server" => server = args.next(),
            "--admin-key" => key = args.next().map(Into::into),
            other => {
                eprintln!(
                    "unknown argument `{other}`; usage: planner_workers [--server ADDR --admin-key FILE]"
                );
                return ExitCode::from(2);
            }
        }
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(server, key)) {
        Ok(failures) if failures.is_empty() => {
            println!("\nall expected allows and denies happened");
            ExitCode::SUCCESS
        }
        Ok(failures) => {
            println!("\n{} expectation(s) failed: {failures:?}", failures.len());
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
