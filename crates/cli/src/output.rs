//! Writing results: human text or `--json`, chains to files, and the JSON shapes of
//! agents and tasks.

use std::path::Path;

use anyhow::Context as _;
use mandate_core::PublicKey;
use mandate_proto::v1 as pb;
use serde_json::{Value as Json, json};

use crate::client::Connection;

pub(crate) fn print(json_out: bool, j: &Json, text: impl FnOnce() -> String) {
    if json_out {
        out!("{j}");
    } else {
        out!("{}", text());
    }
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

pub(crate) fn write_new(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, format!("{text}\n"))
        .with_context(|| format!("cannot write `{}`", path.display()))
}

pub(crate) fn agent_json(a: &pb::Agent) -> Json {
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
