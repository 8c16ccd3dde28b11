//! `mandate console`: the operator console, a small web server on this machine that
//! signs every call to the coordinator as the operator (`--key`, `--agent`), so the key
//! never leaves the operator's machine and the coordinator serves no web pages.
//!
//! A session is the process: it prints a URL with a one-time secret, which sets a
//! `SameSite=Strict`, `HttpOnly` cookie; every request needs that cookie, every form a
//! second token (CSRF), and the `Host` must be this listener's (DNS rebinding). Auditors
//! (or `--read-only`) get no actions: no forms are drawn and every POST is refused.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use mandate_proto::v1 as pb;
use mandate_sdk::Client;
use tokio_stream::StreamExt as _;

use crate::Outcome;
use crate::client::Connection;

mod graph;
mod pages;

use pages::{Frame as Page, esc, urlencode};

type Body = BoxBody<Bytes, Infallible>;

/// `mandate console`.
#[derive(clap::Args, Debug)]
pub(crate) struct ConsoleArgs {
    /// Where to listen: a loopback address (port 0: any free one), or `auto`: on Linux a
    /// random address in 127.0.0.0/8 (browsers keep cookies per host, not per port, so no
    /// other local server is sent this session's), elsewhere 127.0.0.1.
    #[arg(long, default_value = "auto", value_parser = loopback)]
    listen: SocketAddr,
    /// No actions, whatever the operator's role (auditors always get this).
    #[arg(long)]
    read_only: bool,
}

struct Console {
    client: Client,
    operator: String,
    server: String,
    read_only: bool,
    /// The secret in the printed address: it works once, and sets the cookie.
    url_secret: std::sync::Mutex<Option<String>>,
    /// The cookie's value, never in a URL.
    session: String,
    csrf: String,
    /// `host:port` a browser must name in `Host`.
    hosts: Vec<String>,
}

/// A loopback address: the console is plain HTTP with a session cookie, acting with the
/// operator's key, so it listens on this machine only (an SSH tunnel reaches it).
fn loopback(s: &str) -> Result<SocketAddr, String> {
    if s == "auto" {
        let mut b = [0u8; 3];
        getrandom::fill(&mut b).map_err(|e| format!("no randomness: {e}"))?;
        let ip = if cfg!(target_os = "linux") {
            std::net::Ipv4Addr::new(127, b[0], b[1], b[2].max(2))
        } else {
            std::net::Ipv4Addr::LOCALHOST
        };
        return Ok(SocketAddr::from((ip, 0)));
    }
    let addr: SocketAddr = s.parse().map_err(|e| format!("{e}"))?;
    if addr.ip().is_loopback() {
        Ok(addr)
    } else {
        Err("the console listens on this machine only (127.0.0.1 or ::1): it acts with your key over plain HTTP; reach it from elsewhere through an SSH tunnel".into())
    }
}

fn token() -> anyhow::Result<String> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// Compares two secrets in time independent of where they differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

pub(crate) async fn console(args: ConsoleArgs, conn: &Connection) -> anyhow::Result<Outcome> {
    let mut client = conn.client().await?;
    let me = client
        .get_agent(pb::GetAgentRequest {
            agent_id: conn.agent.clone(),
        })
        .await
        .context("the console signs as --agent, which must be registered")?
        .agent
        .unwrap_or_default();
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    let hosts = vec![addr.to_string(), format!("localhost:{}", addr.port())];
    let console = Arc::new(Console {
        client,
        operator: me.agent_id.clone(),
        server: conn.server.clone(),
        read_only: args.read_only || me.role == "auditor",
        url_secret: std::sync::Mutex::new(Some(token()?)),
        session: token()?,
        csrf: token()?,
        hosts,
    });
    let url_secret = console
        .url_secret
        .lock()
        .map_err(|_| anyhow::anyhow!("console state poisoned"))?
        .clone()
        .unwrap_or_default();
    out!(
        "mandate console for {} ({}{}) on http://{addr}/?session={}",
        me.agent_id,
        me.role,
        if console.read_only { ", read-only" } else { "" },
        url_secret
    );
    out!(
        "open that address in a browser on this machine (it works once); the session ends with this process"
    );
    let stop = crate::shutdown_signal();
    tokio::pin!(stop);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => accepted?,
            () = &mut stop => return Ok(Outcome::Ok),
        };
        let console = Arc::clone(&console);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let console = Arc::clone(&console);
                async move { Ok::<_, Infallible>(handle(&console, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn full(body: impl Into<Bytes>) -> Body {
    Full::new(body.into()).boxed()
}

fn respond(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    for (k, v) in [
        (header::CONTENT_TYPE, content_type),
        (header::CACHE_CONTROL, "no-store"),
        (header::X_FRAME_OPTIONS, "DENY"),
        // `no-referrer` would make browsers send `Origin: null` with forms.
        (header::REFERRER_POLICY, "same-origin"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    ] {
        if let Ok(v) = http::HeaderValue::from_str(v) {
            h.insert(k, v);
        }
    }
    r
}

fn redirect(to: &str, cookie: Option<String>) -> Response<Body> {
    let mut r = respond(StatusCode::SEE_OTHER, "text/plain", "");
    if let Ok(v) = http::HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    if let Some(c) = cookie.and_then(|c| http::HeaderValue::from_str(&c).ok()) {
        r.headers_mut().insert(header::SET_COOKIE, c);
    }
    r
}

fn refuse(status: StatusCode, why: &str) -> Response<Body> {
    respond(status, "text/plain; charset=utf-8", format!("{why}\n"))
}

/// `a=b&c=d`, percent-decoded.
fn form(query: &str) -> HashMap<String, String> {
    let decode = |s: &str| {
        let s = s.replace('+', " ");
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            let hex = |c: u8| char::from(c).to_digit(16);
            match (
                b[i],
                b.get(i + 1).copied().and_then(hex),
                b.get(i + 2).copied().and_then(hex),
            ) {
                (b'%', Some(h), Some(l)) => {
                    out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
                    i += 3;
                }
                (c, _, _) => {
                    out.push(c);
                    i += 1;
                }
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn cookie(req: &Request<Incoming>) -> Option<String> {
    req.headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().strip_prefix("mandate_console="))
        .map(str::to_owned)
        .next()
}

async fn handle(c: &Console, req: Request<Incoming>) -> Response<Body> {
    // A page served under another name (DNS rebinding) is refused.
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if !c.hosts.iter().any(|h| h == host) {
        return refuse(StatusCode::MISDIRECTED_REQUEST, "unknown host");
    }
    let path = req.uri().path().to_owned();
    let query = form(req.uri().query().unwrap_or(""));
    if req.method() == Method::GET && path == "/" {
        // The address's secret opens the session once (it stays in history and scrollback);
        // the cookie carries another one.
        let opened = query.get("session").is_some_and(|s| {
            let Ok(mut secret) = c.url_secret.lock() else {
                return false;
            };
            let ok = secret.as_deref().is_some_and(|u| same(s, u));
            if ok {
                *secret = None;
            }
            ok
        });
        return if opened {
            redirect(
                "/tasks",
                Some(format!(
                    "mandate_console={}; HttpOnly; SameSite=Strict; Path=/",
                    c.session
                )),
            )
        } else {
            refuse(
                StatusCode::FORBIDDEN,
                "this address was already opened, or is not the one `mandate console` printed: start `mandate console` again for a new session",
            )
        };
    }
    if !cookie(&req).is_some_and(|s| same(&s, &c.session)) {
        return refuse(
            StatusCode::FORBIDDEN,
            "no session: open the address `mandate console` printed",
        );
    }
    match (req.method().clone(), path.as_str()) {
        (Method::GET, "/console.css") => respond(StatusCode::OK, "text/css", pages::CSS),
        (Method::GET, "/console.js") => respond(StatusCode::OK, "text/javascript", pages::JS),
        (Method::GET, "/audit/stream") => audit_stream(c, &query).await,
        (Method::GET, _) => match get(c, &path, &query).await {
            Ok((title, body)) => html(c, &title, query.get("done").map(String::as_str), &body),
            Err(e) => html(
                c,
                "Error",
                None,
                &format!("<p class=\"error\">{}</p>", esc(&format!("{e:#}"))),
            ),
        },
        (Method::POST, _) => post(c, req, &path, &query).await,
        _ => refuse(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
    }
}

fn html(c: &Console, title: &str, notice: Option<&str>, body: &str) -> Response<Body> {
    let frame = Page {
        operator: &c.operator,
        read_only: c.read_only,
        csrf: &c.csrf,
        server: &c.server,
    };
    respond(
        StatusCode::OK,
        "text/html; charset=utf-8",
        pages::page(&frame, title, notice, body),
    )
}

fn filter_of(q: &HashMap<String, String>) -> pb::AuditFilter {
    let get = |k: &str| q.get(k).cloned().unwrap_or_default();
    pb::AuditFilter {
        action_prefix: get("action"),
        agent_id: get("agent"),
        task_id: get("task"),
        min_severity: match get("severity").as_str() {
            "high" => pb::AuditSeverity::High as i32,
            "notice" => pb::AuditSeverity::Notice as i32,
            _ => 0,
        },
        ..Default::default()
    }
}

async fn get(
    c: &Console,
    path: &str,
    q: &HashMap<String, String>,
) -> anyhow::Result<(String, String)> {
    let mut client = c.client.clone();
    let frame = Page {
        operator: &c.operator,
        read_only: c.read_only,
        csrf: &c.csrf,
        server: &c.server,
    };
    Ok(match path {
        "/tasks" => {
            // Live tasks (every page, up to 1,000), newest first.
            let mut tasks = Vec::new();
            let mut page_token = String::new();
            for _ in 0..5 {
                let r = client
                    .list_tasks(pb::ListTasksRequest {
                        page_size: 200,
                        page_token,
                        state: pb::TaskState::Active as i32,
                        ..Default::default()
                    })
                    .await?;
                tasks.extend(r.tasks);
                if r.next_page_token.is_empty() {
                    break;
                }
                page_token = r.next_page_token;
            }
            tasks.sort_by_key(|t| std::cmp::Reverse(t.create_time_ms));
            ("Live tasks".into(), pages::tasks(&tasks))
        }
        "/agents" => {
            let r = client
                .list_agents(pb::ListAgentsRequest {
                    page_size: 500,
                    ..Default::default()
                })
                .await?;
            ("Agents".into(), pages::agents(&r.agents))
        }
        "/approvals" => {
            let r = client
                .list_approvals(pb::ListApprovalsRequest {
                    state: pb::ApprovalState::Pending as i32,
                    page_size: 200,
                    ..Default::default()
                })
                .await?;
            ("Approvals".into(), pages::approvals(&frame, &r.approvals))
        }
        "/audit" => {
            let filter = filter_of(q);
            let head = client
                .query_audit_log(pb::QueryAuditLogRequest {
                    filter: Some(pb::AuditFilter::default()),
                    page_size: 1,
                    ..Default::default()
                })
                .await?
                .head_seq;
            // The newest 100 matching records: from a little before the head.
            let since = head.saturating_sub(2_000);
            let mut records = Vec::new();
            // Page tokens are sequence numbers: start there.
            let mut token = if since > 0 {
                since.to_string()
            } else {
                String::new()
            };
            // At most a few pages, however fast records arrive.
            for _ in 0..5 {
                let page = client
                    .query_audit_log(pb::QueryAuditLogRequest {
                        filter: Some(filter.clone()),
                        page_size: 1000,
                        page_token: token,
                    })
                    .await?;
                records.extend(page.records);
                if page.next_page_token.is_empty() {
                    break;
                }
                token = page.next_page_token;
            }
            let skip = records.len().saturating_sub(100);
            let query = ["action", "agent", "task", "severity"]
                .iter()
                .filter_map(|k| q.get(*k).map(|v| format!("{k}={}", urlencode(v))))
                .collect::<Vec<_>>()
                .join("&");
            (
                "Audit log".into(),
                pages::audit(&filter, &query, &records[skip..]),
            )
        }
        "/access" => {
            let window = q.get("window").cloned().unwrap_or_else(|| "24h".into());
            let window_ms = crate::input::parse_ttl(&window)?;
            let who = match (q.get("action"), q.get("resource")) {
                (Some(a), Some(r)) if !a.is_empty() && !r.is_empty() => Some((
                    a.as_str(),
                    r.as_str(),
                    client
                        .who_can(pb::WhoCanRequest {
                            action: a.clone(),
                            resource: r.clone(),
                            ..Default::default()
                        })
                        .await?,
                )),
                _ => None,
            };
            let report = client
                .exposure_report(pb::ExposureReportRequest {
                    window_ms,
                    ..Default::default()
                })
                .await?;
            (
                "Access review".into(),
                pages::access(who.as_ref().map(|(a, r, w)| (*a, *r, w)), &report, &window),
            )
        }
        _ => match path.strip_prefix("/tasks/") {
            Some(id) if !id.contains('/') => {
                let t = client
                    .get_delegation_tree(pb::GetDelegationTreeRequest {
                        task_id: id.to_owned(),
                    })
                    .await?;
                (
                    format!("Task {}", id.get(..12).unwrap_or(id)),
                    pages::tree(&frame, &t),
                )
            }
            _ => anyhow::bail!("no such page: {path}"),
        },
    })
}

/// An action: checked (read-only, origin, token), sent signed as the operator, then back
/// to the page it came from with what happened.
async fn post(
    c: &Console,
    req: Request<Incoming>,
    path: &str,
    q: &HashMap<String, String>,
) -> Response<Body> {
    if c.read_only {
        return refuse(StatusCode::FORBIDDEN, "this console is read-only");
    }
    // A browser names the page a form came from; another site's is refused.
    if let Some(origin) = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        && !c.hosts.iter().any(|h| origin == format!("http://{h}"))
    {
        return refuse(StatusCode::FORBIDDEN, "cross-origin request refused");
    }
    let Ok(body) = Limited::new(req.into_body(), 16 * 1024).collect().await else {
        return refuse(StatusCode::PAYLOAD_TOO_LARGE, "form too large");
    };
    let fields = form(&String::from_utf8_lossy(&body.to_bytes()));
    if !fields.get("csrf").is_some_and(|t| same(t, &c.csrf)) {
        return refuse(StatusCode::FORBIDDEN, "missing or wrong form token");
    }
    let field = |k: &str| fields.get(k).cloned().unwrap_or_default();
    let mut client = c.client.clone();
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    // Task and link ids are hex: anything else is not one of ours.
    if parts
        .get(1)
        .is_some_and(|id| id.is_empty() || !id.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return refuse(StatusCode::BAD_REQUEST, "not a task or link id");
    }
    let done: anyhow::Result<(String, String)> = async {
        Ok(match parts.as_slice() {
            ["approvals", task, verdict @ ("approve" | "deny")] => {
                if *verdict == "approve" {
                    client
                        .approve(pb::ApproveRequest {
                            task_id: (*task).to_owned(),
                            request_hash: field("request_hash"),
                            comment: field("comment"),
                        })
                        .await?;
                } else {
                    client
                        .deny(pb::DenyRequest {
                            task_id: (*task).to_owned(),
                            request_hash: field("request_hash"),
                            comment: field("comment"),
                        })
                        .await?;
                }
                ("/approvals".into(), format!("{verdict}d task {task}"))
            }
            ["links", link, "revoke"] => {
                client
                    .revoke_link(pb::RevokeLinkRequest {
                        link_id: (*link).to_owned(),
                        reason: field("reason"),
                    })
                    .await?;
                let back = q.get("task").map_or_else(
                    || "/tasks".to_owned(),
                    |t| format!("/tasks/{}", urlencode(t)),
                );
                (back, format!("revoked link {link} and everything below it"))
            }
            ["tasks", task, "complete"] => {
                client
                    .complete_task(pb::CompleteTaskRequest {
                        task_id: (*task).to_owned(),
                        summary: "completed from the console".into(),
                    })
                    .await?;
                (format!("/tasks/{task}"), format!("completed task {task}"))
            }
            ["tasks", task, "fail"] => {
                client
                    .fail_task(pb::FailTaskRequest {
                        task_id: (*task).to_owned(),
                        reason: field("reason"),
                    })
                    .await?;
                (format!("/tasks/{task}"), format!("failed task {task}"))
            }
            _ => anyhow::bail!("no such action: {path}"),
        })
    }
    .await;
    match done {
        Ok((back, what)) => {
            let sep = if back.contains('?') { '&' } else { '?' };
            redirect(&format!("{back}{sep}done={}", urlencode(&what)), None)
        }
        Err(e) => html(
            c,
            "Refused",
            None,
            &format!("<p class=\"error\">{}</p>", esc(&format!("{e:#}"))),
        ),
    }
}

/// Server-sent events: each new audit record matching the filters, as a table row.
async fn audit_stream(c: &Console, q: &HashMap<String, String>) -> Response<Body> {
    let after = q.get("after").and_then(|a| a.parse().ok()).unwrap_or(0);
    let mut client = c.client.clone();
    let stream = match client
        .watch_audit_log(pb::WatchAuditLogRequest {
            filter: Some(filter_of(q)),
            after_seq: after,
        })
        .await
    {
        Ok(s) => s,
        Err(e) => return refuse(StatusCode::BAD_GATEWAY, &e.to_string()),
    };
    let events = stream
        .take_while(Result::is_ok)
        .filter_map(Result::ok)
        .filter_map(|m| m.record)
        .map(|r| {
            Ok::<_, Infallible>(Frame::data(Bytes::from(format!(
                "data: {}\n\n",
                pages::audit_row(&r)
            ))))
        });
    let mut r = respond(StatusCode::OK, "text/event-stream", "");
    *r.body_mut() = StreamBody::new(events).boxed();
    r
}
