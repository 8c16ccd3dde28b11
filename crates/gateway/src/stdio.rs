//! `mandate gateway stdio`: a local MCP server run as a child, gated the same way as an MCP
//! upstream over HTTP. The agent's MCP client starts the gateway instead of the server and
//! speaks newline-delimited JSON-RPC to it; each message is planned by [`crate::mcp::plan`]
//! (chain and proof in `params._meta`, since stdio has no headers). Refusals are answered
//! by the gateway and never reach the child; `tools/list` answers are filtered to the chain
//! that asked. The child's stderr is the gateway's; nothing but MCP messages is written to
//! stdout.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use mandate_core::Chain;
use serde_json::Value as Json;
use tokio::io::{
    AsyncBufRead, AsyncBufReadExt as _, AsyncRead, AsyncWrite, AsyncWriteExt as _, BufReader,
};
use tokio::process::Command;
use tokio::sync::mpsc;

use crate::mcp::{self, Plan};
use crate::{Config, StartError};

/// Most tool lists waiting for the server's answer at once.
const MAX_PENDING_LISTS: usize = 1024;

/// Largest message the gateway reads from either side (bytes, without the newline).
const MAX_LINE_BYTES: usize = 16 << 20;

/// Runs `command` as the MCP server named `name` (tools are `mcp/<name>/<tool>`) between
/// this process's stdin and stdout until either side ends; the tools matching `online`
/// (names, or prefixes ending in `*`) are decided online. Returns the child's exit code.
pub async fn run_stdio(
    config: Config,
    name: &str,
    online: &[String],
    command: &[String],
) -> Result<i32, StartError> {
    let verifier = crate::verifier(&config.gateway).await?;
    let Some((program, args)) = command.split_first() else {
        return Err(StartError::Spawn {
            command: String::new(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "no server command"),
        });
    };
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| StartError::Spawn {
            command: program.clone(),
            source,
        })?;
    let (Some(to_child), Some(from_child)) = (child.stdin.take(), child.stdout.take()) else {
        return Err(StartError::Spawn {
            command: program.clone(),
            source: std::io::Error::other("the child's pipes are missing"),
        });
    };
    tracing::info!(server = %name, command = %program, "mandate gateway stdio started");
    let reports = crate::Reports::start(&verifier, &config.gateway)?;
    let gate = Gate {
        decider: crate::Decider {
            verifier,
            spool: Arc::clone(&reports.spool),
            limits: crate::limits::Limits::new(
                config.gateway.max_requests_per_minute,
                config.gateway.max_calls_per_holder_per_minute,
            ),
        },
        name: name.to_owned(),
        online: online.to_vec(),
    };
    relay(
        gate,
        tokio::io::stdin(),
        tokio::io::stdout(),
        to_child,
        from_child,
    )
    .await;
    // The agent hung up (the server's stdin is closed, which asks it to exit) or the
    // server ended.
    let status = child.wait().await;
    reports.finish().await;
    Ok(status.ok().and_then(|s| s.code()).unwrap_or(1))
}

/// What decides the calls of one stdio server.
struct Gate {
    decider: crate::Decider,
    name: String,
    online: Vec<String>,
}

/// Relays until the agent's input or the server's output ends.
async fn relay(
    gate: Gate,
    agent_in: impl AsyncRead + Unpin + Send + 'static,
    mut agent_out: impl AsyncWrite + Unpin + Send + 'static,
    mut child_in: impl AsyncWrite + Unpin + Send + 'static,
    child_out: impl AsyncRead + Unpin + Send + 'static,
) {
    let Gate {
        decider,
        name,
        online,
    } = gate;
    // Lists in flight: request id (canonical JSON, `id_key`) -> the chain that asked.
    let lists: Arc<Mutex<HashMap<String, Chain>>> = Arc::default();
    let (to_agent, mut outbox) = mpsc::channel::<Vec<u8>>(64);
    let writer = tokio::spawn(async move {
        while let Some(mut line) = outbox.recv().await {
            line.push(b'\n');
            if agent_out.write_all(&line).await.is_err() || agent_out.flush().await.is_err() {
                return;
            }
        }
    });
    let from_server = {
        let lists = Arc::clone(&lists);
        let to_agent = to_agent.clone();
        let name = name.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(child_out);
            while let Some(line) = read_line(&mut lines).await {
                let out = match serde_json::from_slice::<Json>(&line) {
                    Ok(v) if v.get("method").is_none() => {
                        let chain = id_key(&v).and_then(|id| lists.lock().ok()?.remove(&id));
                        match chain {
                            Some(chain) => {
                                mcp::filter_tools(&line, &chain, &name).unwrap_or_default()
                            }
                            // A tool list nobody asked for with a chain: no tools (fail closed).
                            None if v.pointer("/result/tools").is_some() => {
                                tracing::warn!("an unrequested tool list from the server: emptied");
                                let mut v = v;
                                if let Some(t) = v.pointer_mut("/result/tools") {
                                    *t = Json::Array(Vec::new());
                                }
                                v.to_string().into_bytes()
                            }
                            None => line,
                        }
                    }
                    _ => line,
                };
                if to_agent.send(out).await.is_err() {
                    return;
                }
            }
        })
    };
    let agent = async {
        let mut lines = BufReader::new(agent_in);
        while let Some(line) = read_line(&mut lines).await {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            // A request may not reuse the id of a tool list still waiting for its answer (the
            // answer is matched by id to the chain that filters it).
            let pending = serde_json::from_slice::<Json>(&line)
                .ok()
                .filter(|v| v.get("method").is_some())
                .and_then(|v| Some((id_key(&v)?, v.get("id").cloned()?)))
                .filter(|(key, _)| lists.lock().is_ok_and(|l| l.contains_key(key)));
            if let Some((_, id)) = pending {
                let answer = mcp::rpc_error(
                    &id,
                    -32600,
                    "INVALID_REQUEST",
                    "this id is in use by a tools/list still waiting for its answer",
                );
                let _ = to_agent.send(answer.to_string().into_bytes()).await;
                continue;
            }
            if !decider.limits.request() {
                let id = crate::request_id(&line);
                let answer = mcp::rpc_error(
                    &id,
                    mcp::REFUSED,
                    "RATE_LIMITED",
                    "over the gateway's request budget",
                );
                let _ = to_agent.send(answer.to_string().into_bytes()).await;
                continue;
            }
            let forward = match mcp::plan(&name, &line, None, None, None, None) {
                Plan::Answer(v) => {
                    let _ = to_agent.send(v.to_string().into_bytes()).await;
                    None
                }
                Plan::Forward(b) => Some(b),
                Plan::ForwardAndFilter(b, chain) => match decider.verifier.verify_chain(&chain) {
                    Ok(_) if lists.lock().is_ok_and(|l| l.len() >= MAX_PENDING_LISTS) => {
                        let answer = mcp::rpc_error(
                            &crate::request_id(&b),
                            mcp::REFUSED,
                            "RATE_LIMITED",
                            "too many tool lists waiting for the server",
                        );
                        let _ = to_agent.send(answer.to_string().into_bytes()).await;
                        None
                    }
                    Ok(_) => {
                        if let Ok(mut l) = lists.lock() {
                            l.insert(mcp::canonical_json(&crate::request_id(&b)), chain);
                        }
                        Some(b)
                    }
                    Err(d) => {
                        let answer = mcp::rpc_error(
                            &crate::request_id(&b),
                            mcp::REFUSED,
                            &d.reason,
                            &d.detail,
                        );
                        let _ = to_agent.send(answer.to_string().into_bytes()).await;
                        None
                    }
                },
                Plan::Check {
                    body,
                    chain,
                    proof,
                    call,
                } => {
                    let tool = call.resource.rsplit_once('/').map_or("", |(_, t)| t);
                    let decision = decider
                        .decide(
                            crate::config::tool_matches(&online, tool),
                            &name,
                            &call,
                            &chain,
                            &proof,
                        )
                        .await;
                    if decision.allowed {
                        Some(body)
                    } else {
                        let answer = mcp::rpc_error(
                            &crate::request_id(&body),
                            mcp::REFUSED,
                            &decision.reason,
                            &decision.detail,
                        );
                        let _ = to_agent.send(answer.to_string().into_bytes()).await;
                        None
                    }
                }
            };
            if let Some(mut b) = forward {
                b.push(b'\n');
                if child_in.write_all(&b).await.is_err() || child_in.flush().await.is_err() {
                    break;
                }
            }
        }
        // The agent is gone: closing the child's stdin asks it to exit (the MCP stdio rule).
        drop(child_in);
    };
    let mut from_server = from_server;
    tokio::select! {
        () = agent => { let _ = (&mut from_server).await; }
        _ = &mut from_server => {}
    }
    drop(to_agent);
    let _ = writer.await;
}

/// The key a message's id is matched by: its canonical JSON, so `1e22` and `1e+22`, or
/// `"<"` and `"\u003c"`, are the same id.
fn id_key(msg: &Json) -> Option<String> {
    msg.get("id").map(mcp::canonical_json)
}

/// One line without its newline; `None` at the end of input. A line over
/// [`MAX_LINE_BYTES`] ends the relay (fail closed: the rest cannot be framed).
async fn read_line(r: &mut (impl AsyncBufRead + Unpin)) -> Option<Vec<u8>> {
    let mut line = Vec::new();
    loop {
        let buf = r.fill_buf().await.ok()?;
        if buf.is_empty() {
            return (!line.is_empty()).then_some(line);
        }
        if let Some(i) = buf.iter().position(|b| *b == b'\n') {
            line.extend_from_slice(&buf[..i]);
            r.consume(i + 1);
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            return Some(line);
        }
        let n = buf.len();
        line.extend_from_slice(buf);
        r.consume(n);
        if line.len() > MAX_LINE_BYTES {
            tracing::warn!("a message over {MAX_LINE_BYTES} bytes: closing");
            return None;
        }
    }
}
