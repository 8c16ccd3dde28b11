//! MCP upstreams over streamable HTTP (revision 2025-06-18, and the stateless `Mcp-Method`
//! / `Mcp-Name` headers of 2026-07-28): `tools/call` needs a chain and a proof for `call` on
//! `mcp/<upstream>/<tool>` with the tool's arguments; `tools/list` answers only the tools
//! the chain permits; session set-up passes through; every other method is refused.

use mandate_core::{Call, Chain, Invocation, Limits, Value};
use serde_json::{Value as Json, json};
use sha2::{Digest as _, Sha256};

/// The `_meta` keys that may carry the chain and the proof (for clients that cannot set
/// headers); removed before forwarding.
pub const META_CHAIN: &str = "mandate.dev/chain";
/// See [`META_CHAIN`].
pub const META_INVOCATION: &str = "mandate.dev/invocation";

/// The argument of an MCP call that holds the digest of its canonical arguments.
pub const ARGUMENTS_DIGEST: &str = "mcp.arguments_sha256";

/// JSON-RPC error code of a Mandate refusal.
pub const REFUSED: i64 = -32001;

/// The canonical JSON of a value (RFC 8785, JCS): no whitespace, object keys sorted by
/// their UTF-16 code units, strings escaped as JSON requires and no more, numbers as
/// ECMAScript prints them.
pub fn canonical_json(v: &Json) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out);
    out
}

fn write_canonical(v: &Json, out: &mut String) {
    match v {
        Json::Null => out.push_str("null"),
        Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Json::Number(n) => {
            if n.is_i64() || n.is_u64() {
                out.push_str(&n.to_string());
            } else {
                out.push_str(&es_number(n.as_f64().unwrap_or(0.0)));
            }
        }
        Json::String(s) => out.push_str(&Json::String(s.clone()).to_string()),
        Json::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Json::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_by(|a, b| a.encode_utf16().cmp(b.encode_utf16()));
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Json::String((*k).clone()).to_string());
                out.push(':');
                write_canonical(&map[*k], out);
            }
            out.push('}');
        }
    }
}

/// A finite double as ECMAScript's `Number.prototype.toString` prints it.
fn es_number(f: f64) -> String {
    if f == 0.0 {
        return "0".into();
    }
    let sign = if f < 0.0 { "-" } else { "" };
    // Rust prints the shortest digits that round-trip.
    let sci = format!("{:e}", f.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let k = i64::try_from(digits.len()).unwrap_or(0);
    let n = exp.parse::<i64>().unwrap_or(0) + 1;
    let zeros = |c: i64| "0".repeat(usize::try_from(c).unwrap_or(0));
    let body = if k <= n && n <= 21 {
        format!("{digits}{}", zeros(n - k))
    } else if 0 < n && n <= 21 {
        let (a, b) = digits.split_at(usize::try_from(n).unwrap_or(0));
        format!("{a}.{b}")
    } else if -6 < n && n <= 0 {
        format!("0.{}{digits}", zeros(-n))
    } else {
        let e = n - 1;
        let e = if e >= 0 {
            format!("+{e}")
        } else {
            e.to_string()
        };
        match digits.split_at(1) {
            (d, "") => format!("{d}e{e}"),
            (d, rest) => format!("{d}.{rest}e{e}"),
        }
    };
    format!("{sign}{body}")
}

/// The call a `tools/call` of `tool` at `upstream` stands for: `call` on
/// `mcp/<upstream>/<tool>`, with every top-level argument that is text or an integer of 64
/// bits as an argument, and [`ARGUMENTS_DIGEST`]: lowercase hex SHA-256 of the canonical
/// JSON of the whole `arguments` object (`{}` when absent), which binds the rest.
pub fn mcp_call(upstream: &str, tool: &str, arguments: &serde_json::Map<String, Json>) -> Call {
    let mut call = Call::new("call", format!("mcp/{upstream}/{tool}"));
    for (k, v) in arguments {
        match v {
            Json::String(s) => {
                call.args.insert(k.clone(), Value::Text(s.clone()));
            }
            Json::Number(n) if n.is_i64() => {
                call.args
                    .insert(k.clone(), Value::Int(n.as_i64().unwrap_or_default()));
            }
            _ => {}
        }
    }
    let canonical = canonical_json(&Json::Object(arguments.clone()));
    let digest: String = Sha256::digest(canonical.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    call.args
        .insert(ARGUMENTS_DIGEST.into(), Value::Text(digest));
    call
}

/// A JSON-RPC error answer.
pub fn rpc_error(id: &Json, code: i64, reason: &str, detail: &str) -> Json {
    json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": { "code": code, "message": format!("{reason}: {detail}"), "data": { "reason": reason } },
    })
}

/// What the gateway makes of one JSON-RPC message sent to an MCP upstream.
pub enum Plan {
    /// Forward this body: always the message as the gateway parsed it, written out again,
    /// so the upstream cannot read a different message from the same bytes (duplicate
    /// keys, say).
    Forward(Vec<u8>),
    /// Forward, then keep only the tools the chain permits in the answer.
    ForwardAndFilter(Vec<u8>, Chain),
    /// Decide `call` with chain and proof, then forward.
    Check {
        /// The body to forward (without Mandate's `_meta` keys).
        body: Vec<u8>,
        /// The encoded chain.
        chain: Vec<u8>,
        /// The encoded proof.
        proof: Vec<u8>,
        /// The call to decide.
        call: Call,
    },
    /// Answer at once with this JSON-RPC message (HTTP 200) and never forward.
    Answer(Json),
}

/// Takes Mandate's tokens out of `_meta`, or the headers' when given (headers win).
fn tokens(
    params: &mut serde_json::Map<String, Json>,
    headers: (Option<&str>, Option<&str>),
) -> (Option<String>, Option<String>) {
    let mut from_meta = (None, None);
    if let Some(Json::Object(meta)) = params.get_mut("_meta") {
        from_meta = (
            meta.remove(META_CHAIN)
                .and_then(|v| v.as_str().map(str::to_owned)),
            meta.remove(META_INVOCATION)
                .and_then(|v| v.as_str().map(str::to_owned)),
        );
        if meta.is_empty() {
            params.remove("_meta");
        }
    }
    (
        headers.0.map(str::to_owned).or(from_meta.0),
        headers.1.map(str::to_owned).or(from_meta.1),
    )
}

/// The message's params (a copy) without Mandate's `_meta` keys, and the tokens found.
fn take_tokens(
    msg: &serde_json::Map<String, Json>,
    headers: (Option<&str>, Option<&str>),
) -> (
    serde_json::Map<String, Json>,
    (Option<String>, Option<String>),
) {
    let mut params = msg
        .get("params")
        .and_then(Json::as_object)
        .cloned()
        .unwrap_or_default();
    let found = tokens(&mut params, headers);
    (params, found)
}

/// Plans one POSTed JSON-RPC message. `headers`: the chain and proof headers, and the
/// stateless revision's `Mcp-Method` and `Mcp-Name` when present.
pub fn plan(
    upstream: &str,
    body: &[u8],
    chain_header: Option<&str>,
    proof_header: Option<&str>,
    mcp_method: Option<&str>,
    mcp_name: Option<&str>,
) -> Plan {
    let null = Json::Null;
    let Ok(mut msg) = serde_json::from_slice::<Json>(body) else {
        return Plan::Answer(rpc_error(
            &null,
            -32700,
            "PARSE_ERROR",
            "the body is not JSON",
        ));
    };
    let Some(obj) = msg.as_object_mut() else {
        return Plan::Answer(rpc_error(
            &null,
            -32600,
            "INVALID_REQUEST",
            "one JSON-RPC message per request (no batches)",
        ));
    };
    let id = obj.get("id").cloned().unwrap_or(Json::Null);
    let method = match obj.get("method") {
        Some(Json::String(m)) if !m.is_empty() => m.clone(),
        None if obj.contains_key("result") || obj.contains_key("error") => {
            // A response from the client (to a server request): nothing to govern.
            return Plan::Forward(msg.to_string().into_bytes());
        }
        _ => {
            return Plan::Answer(rpc_error(
                &id,
                -32600,
                "INVALID_REQUEST",
                "a request needs a method (text)",
            ));
        }
    };
    if mcp_method.is_some_and(|m| m != method) {
        return Plan::Answer(rpc_error(
            &id,
            -32600,
            "HEADER_MISMATCH",
            "Mcp-Method does not match the body's method",
        ));
    }
    let limits = Limits::default();
    let decode = |chain: Option<String>, proof: Option<String>, need_proof: bool| {
        let (Some(chain), true) = (chain, !need_proof || proof.is_some()) else {
            return Err(("MANDATE_REQUIRED".to_owned(), "send the chain and a proof for this call (headers x-mandate-chain and x-mandate-invocation, or params._meta)".to_owned()));
        };
        let chain = Chain::from_text(&chain, &limits)
            .map_err(|d| (d.reason().code().to_owned(), d.detail().to_owned()))?;
        let proof = match proof {
            Some(p) if need_proof => Some(
                Invocation::from_text(&p, &limits)
                    .map_err(|d| (d.reason().code().to_owned(), d.detail().to_owned()))?,
            ),
            _ => None,
        };
        Ok((chain, proof))
    };
    match method.as_str() {
        "initialize"
        | "ping"
        | "notifications/initialized"
        | "notifications/cancelled"
        | "notifications/progress" => {
            // Mandate's tokens never reach the server, whatever message carries them.
            let (params, _) = take_tokens(obj, (None, None));
            if obj.contains_key("params") {
                obj.insert("params".into(), Json::Object(params));
            }
            Plan::Forward(msg.to_string().into_bytes())
        }
        "tools/list" => {
            let (params, found) = take_tokens(obj, (chain_header, proof_header));
            match decode(found.0, None, false) {
                Ok((chain, _)) => {
                    if params.is_empty() {
                        obj.remove("params");
                    } else {
                        obj.insert("params".into(), Json::Object(params));
                    }
                    Plan::ForwardAndFilter(msg.to_string().into_bytes(), chain)
                }
                Err((reason, detail)) => Plan::Answer(rpc_error(&id, REFUSED, &reason, &detail)),
            }
        }
        "tools/call" => {
            let (params, found) = take_tokens(obj, (chain_header, proof_header));
            let tool = params
                .get("name")
                .and_then(Json::as_str)
                .unwrap_or_default()
                .to_owned();
            if tool.is_empty() {
                return Plan::Answer(rpc_error(
                    &id,
                    -32602,
                    "INVALID_ARGUMENT",
                    "tools/call needs params.name",
                ));
            }
            if mcp_name.is_some_and(|n| n != tool) {
                return Plan::Answer(rpc_error(
                    &id,
                    -32600,
                    "HEADER_MISMATCH",
                    "Mcp-Name does not match params.name",
                ));
            }
            let arguments = match params.get("arguments") {
                None | Some(Json::Null) => serde_json::Map::new(),
                Some(Json::Object(a)) => a.clone(),
                Some(_) => {
                    return Plan::Answer(rpc_error(
                        &id,
                        -32602,
                        "INVALID_ARGUMENT",
                        "params.arguments is an object",
                    ));
                }
            };
            match decode(found.0, found.1, true) {
                Ok((chain, Some(proof))) => {
                    obj.insert("params".into(), Json::Object(params));
                    Plan::Check {
                        body: msg.to_string().into_bytes(),
                        chain: chain.encode(),
                        proof: proof.encode(),
                        call: mcp_call(upstream, &tool, &arguments),
                    }
                }
                Ok((_, None)) => Plan::Answer(rpc_error(
                    &id,
                    REFUSED,
                    "MANDATE_REQUIRED",
                    "send a proof for this call",
                )),
                Err((reason, detail)) => Plan::Answer(rpc_error(&id, REFUSED, &reason, &detail)),
            }
        }
        other => Plan::Answer(rpc_error(
            &id,
            REFUSED,
            "METHOD_NOT_GOVERNED",
            &format!(
                "the gateway does not pass `{other}` (only initialize, ping, notifications, tools/list and tools/call)"
            ),
        )),
    }
}

/// Whether the chain could permit some call of `tool` (every link allows `call` on its
/// resource; argument constraints are for the call itself).
pub fn lists(chain: &Chain, upstream: &str, tool: &str) -> bool {
    let resource = format!("mcp/{upstream}/{tool}");
    chain.links().iter().all(|l| {
        l.body()
            .capabilities
            .iter()
            .any(|c| c.resource.matches(&resource) && c.actions.allows("call"))
    })
}

/// Keeps, in a `tools/list` answer (a JSON body, or the `data:` lines of an event stream),
/// only the tools the chain permits. `None` (fail closed) when a `data:` line is not a
/// JSON message of its own.
pub fn filter_tools(body: &[u8], chain: &Chain, upstream: &str) -> Option<Vec<u8>> {
    let filter = |mut v: Json| -> Json {
        if let Some(tools) = v.pointer_mut("/result/tools").and_then(Json::as_array_mut) {
            tools.retain(|t| {
                t.get("name")
                    .and_then(Json::as_str)
                    .is_some_and(|n| lists(chain, upstream, n))
            });
        }
        v
    };
    if let Ok(v) = serde_json::from_slice::<Json>(body) {
        return Some(filter(v).to_string().into_bytes());
    }
    // An event stream: rewrite each JSON `data:` line.
    let text = String::from_utf8_lossy(body);
    let mut out = String::new();
    for line in text.split_inclusive('\n') {
        let (content, end) = line
            .strip_suffix("\r\n")
            .map(|c| (c, "\r\n"))
            .or_else(|| line.strip_suffix('\n').map(|c| (c, "\n")))
            .unwrap_or((line, ""));
        match content.strip_prefix("data:").map(str::trim_start) {
            Some(data) => {
                let v = serde_json::from_str::<Json>(data).ok()?;
                out.push_str("data: ");
                out.push_str(&filter(v).to_string());
                out.push_str(end);
            }
            None => out.push_str(line),
        }
    }
    Some(out.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_follows_rfc_8785() {
        let v: Json = serde_json::from_str(
            r#"{"b":[1,2.5,"x\n",true,null],"a":{"€":1,"z":0.000001,"\u0001":1e21},"c":-0.0,"d":1E-7,"e":100,"f":123456789012345680000}"#,
        )
        .unwrap();
        assert_eq!(
            canonical_json(&v),
            r#"{"a":{"\u0001":1e+21,"z":0.000001,"€":1},"b":[1,2.5,"x\n",true,null],"c":0,"d":1e-7,"e":100,"f":123456789012345680000}"#
        );
        // Keys by UTF-16 code units: U+E000 sorts after U+1F600's surrogates.
        let v: Json = serde_json::from_str(r#"{"\ue000":1,"😀":2}"#).unwrap();
        // U+1F600 is a surrogate pair starting 0xD83D, which sorts before 0xE000.
        assert_eq!(canonical_json(&v), "{\"\u{1f600}\":2,\"\u{e000}\":1}");
        // The value sdk/python/tests/test_gateway.py pins for the Python SDK.
        let v: Json = serde_json::from_str(
            r#"{"\ue000":1,"😀":2,"b":[1,2.5,null,true,1e21,1.5e-7,100.0],"a":"x\n\"\u007f"}"#,
        )
        .unwrap();
        assert_eq!(
            canonical_json(&v),
            "{\"a\":\"x\\n\\\"\u{7f}\",\"b\":[1,2.5,null,true,1e+21,1.5e-7,100],\"\u{1f600}\":2,\"\u{e000}\":1}"
        );
    }

    #[test]
    fn a_call_binds_scalars_as_arguments_and_everything_through_the_digest() {
        let args: serde_json::Map<String, Json> = serde_json::from_str(
            r#"{"path":"reports/q3.pdf","size":10,"opts":{"deep":true},"ratio":0.5}"#,
        )
        .unwrap();
        let call = mcp_call("files", "read_file", &args);
        assert_eq!(
            (call.action.as_str(), call.resource.as_str()),
            ("call", "mcp/files/read_file")
        );
        assert_eq!(call.args["path"], Value::Text("reports/q3.pdf".into()));
        assert_eq!(call.args["size"], Value::Int(10));
        assert!(!call.args.contains_key("opts") && !call.args.contains_key("ratio"));
        let mut other = args.clone();
        other.insert("opts".into(), json!({"deep": false}));
        assert_ne!(
            call.args[ARGUMENTS_DIGEST],
            mcp_call("files", "read_file", &other).args[ARGUMENTS_DIGEST]
        );
    }

    /// A root granting `call` on `mcp/f/a` only.
    fn test_chain() -> Chain {
        let coordinator = mandate_core::SigningKey::generate().unwrap();
        let holder = mandate_core::SigningKey::generate().unwrap();
        let spec = mandate_core::LinkSpec::new(
            holder.public_key(),
            mandate_core::AgentId::new("spiffe://t/h").unwrap(),
            vec![mandate_core::Capability::new("mcp/f/a", ["call"]).unwrap()],
            0,
            u64::MAX / 2,
        )
        .unwrap();
        Chain::issue_root(
            &coordinator,
            mandate_core::TaskId::random().unwrap(),
            mandate_core::LinkKind::Grant,
            spec,
        )
        .unwrap()
    }

    #[test]
    fn a_tool_list_that_cannot_be_read_whole_is_not_passed_on() {
        let split = b"event: message\ndata: {\"jsonrpc\":\"2.0\",\ndata: \"id\":1}\n\n";
        let root = test_chain();
        assert!(filter_tools(split, &root, "f").is_none());
        let whole = b"event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[{\"name\":\"a\"},{\"name\":\"b\"}]}}\n\n";
        let out = String::from_utf8(filter_tools(whole, &root, "f").unwrap()).unwrap();
        assert!(out.contains(r#""tools":[{"name":"a"}]"#), "{out}");
        assert!(out.starts_with("event: message\ndata: "), "{out}");
    }

    #[test]
    fn messages_are_planned_fail_closed() {
        let answer = |p: Plan| match p {
            Plan::Answer(v) => v["error"]["data"]["reason"].as_str().unwrap().to_owned(),
            _ => "forwarded".into(),
        };
        assert_eq!(
            answer(plan("f", b"{", None, None, None, None)),
            "PARSE_ERROR"
        );
        assert_eq!(
            answer(plan("f", b"[]", None, None, None, None)),
            "INVALID_REQUEST"
        );
        let init = br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}"#;
        assert_eq!(answer(plan("f", init, None, None, None, None)), "forwarded");
        let read = br#"{"jsonrpc":"2.0","id":2,"method":"resources/read","params":{"uri":"file:///etc/passwd"}}"#;
        assert_eq!(
            answer(plan("f", read, None, None, None, None)),
            "METHOD_NOT_GOVERNED"
        );
        let call = br#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"read_file","arguments":{}}}"#;
        assert_eq!(
            answer(plan("f", call, None, None, None, None)),
            "MANDATE_REQUIRED"
        );
        assert_eq!(
            answer(plan(
                "f",
                call,
                None,
                None,
                Some("tools/call"),
                Some("write_file")
            )),
            "HEADER_MISMATCH"
        );
        assert_eq!(
            answer(plan("f", call, None, None, Some("tools/list"), None)),
            "HEADER_MISMATCH"
        );
        assert_eq!(
            answer(plan(
                "f",
                call,
                Some("mandate1.AAAA"),
                Some("mandate-inv1.AAAA"),
                None,
                None
            )),
            "MALFORMED"
        );
        for odd in [
            br#"{"jsonrpc":"2.0","id":4,"method":["tools/call"]}"#.as_slice(),
            br#"{"jsonrpc":"2.0","id":5,"method":""}"#,
            br#"{"jsonrpc":"2.0","id":6}"#,
        ] {
            assert_eq!(
                answer(plan("f", odd, None, None, None, None)),
                "INVALID_REQUEST"
            );
        }
        // Duplicate keys: what is forwarded is what the gateway read (the last `method`),
        // never the original bytes a different parser might read otherwise.
        let dup = br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","method":"ping"}"#;
        match plan("f", dup, None, None, None, None) {
            Plan::Forward(b) => assert_eq!(
                serde_json::from_slice::<Json>(&b).unwrap(),
                json!({"jsonrpc": "2.0", "id": 7, "method": "ping"})
            ),
            _ => panic!("a ping is forwarded"),
        }
        // Mandate's `_meta` keys are taken out of every forwarded message.
        let init = br#"{"jsonrpc":"2.0","id":9,"method":"initialize","params":{"_meta":{"mandate.dev/chain":"mandate1.x","other":1}}}"#;
        match plan("f", init, None, None, None, None) {
            Plan::Forward(b) => assert_eq!(
                serde_json::from_slice::<Json>(&b).unwrap()["params"],
                json!({"_meta": {"other": 1}})
            ),
            _ => panic!("initialize is forwarded"),
        }
        let response = br#"{"jsonrpc":"2.0","id":8,"result":{}}"#;
        assert_eq!(
            answer(plan("f", response, None, None, None, None)),
            "forwarded"
        );
    }
}
