//! `mandate serve` as a user runs it: a fresh directory, no flags but the listen address
//! (from the environment, to stay off the default port), health answers, SIGTERM stops it
//! cleanly, and the data directory holds the keys with the right modes. With a policy
//! directory, SIGHUP reloads it.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

#[path = "serve/retention.rs"]
mod retention;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_starts_in_a_fresh_directory_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/policies");
    for f in ["base.cedar", "production.cedar", "guardrails.cedar"] {
        std::fs::copy(examples.join("team").join(f), policies.join(f)).unwrap();
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_mandate"))
        .args(["serve", "--policy-dir", "policies"])
        .current_dir(dir.path())
        .env("MANDATE_LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let addr = first.rsplit(' ').next().unwrap().to_owned();
    assert!(
        first.starts_with("mandate coordinator listening on 127.0.0.1:"),
        "{first}"
    );
    let rest: Vec<String> = lines.by_ref().take(5).map(Result::unwrap).collect();
    assert!(
        rest.iter()
            .any(|l| l.contains("admin key:") && l.contains("mandate-data/admin.key")),
        "{rest:?}"
    );

    let mut healthy = false;
    for _ in 0..200 {
        let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).unwrap();
        if let Ok(channel) = endpoint.connect().await
            && tonic_health::pb::health_client::HealthClient::new(channel)
                .check(tonic_health::pb::HealthCheckRequest::default())
                .await
                .is_ok()
        {
            healthy = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(healthy, "the server never answered health checks");

    let data = dir.path().join("mandate-data");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        for f in ["admin.key", "coordinator.key"] {
            let mode = std::fs::metadata(data.join(f))
                .unwrap()
                .permissions()
                .mode()
                & 0o777;
            assert_eq!(mode, 0o600, "{f}");
        }
    }
    // SIGHUP reloads the policy directory (as the admin, whose key the CLI finds in
    // ./mandate-data by default).
    let policy_hash = || {
        let out = Command::new(env!("CARGO_BIN_EXE_mandate"))
            .args(["--server", &addr, "--json", "policy", "show"])
            .current_dir(dir.path())
            .stderr(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success());
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["policy_hash"].as_str().unwrap().to_owned()
    };
    let before = policy_hash();
    std::fs::copy(
        examples.join("tighten/no-delegated-writes.cedar"),
        policies.join("no-delegated-writes.cedar"),
    )
    .unwrap();
    let hup = Command::new("kill")
        .arg("-HUP")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(hup.success());
    let mut reloaded = false;
    for _ in 0..200 {
        if policy_hash() != before {
            reloaded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(reloaded, "SIGHUP did not reload the policy directory");
    // A second coordinator on the same data directory is refused, whatever its store.
    let second = Command::new(env!("CARGO_BIN_EXE_mandate"))
        .args(["serve", "--policy-dir", "policies"])
        .current_dir(dir.path())
        .env("MANDATE_LISTEN", "127.0.0.1:0")
        .output()
        .unwrap();
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(
        err.contains("is in use: another coordinator runs on it"),
        "{err}"
    );

    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    // Wait off the runtime so the client's connection task can still run and close.
    let exit = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(exit.success(), "serve exited with {exit}");
}

#[test]
fn an_unusable_listen_address_exits_with_64() {
    let dir = tempfile::tempdir().unwrap();
    // Port 1 needs privileges (or is taken): the server cannot start.
    let out = Command::new(env!("CARGO_BIN_EXE_mandate"))
        .args(["serve", "--listen", "192.0.2.1:1", "--insecure-plaintext"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(64),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Logs on a pipe carry no colour codes; `--log-format json` writes one JSON object per
/// line.
#[test]
fn logs_are_plain_on_a_pipe_and_json_on_request() {
    for format in ["text", "json"] {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_mandate"))
            .args(["serve", "--listen", "127.0.0.1:0", "--log-format", format])
            .current_dir(dir.path())
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The policy set is logged while the server starts, before it listens.
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let line = lines
            .by_ref()
            .map(Result::unwrap)
            .find(|l| l.contains("policy set loaded"))
            .unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!line.contains('\u{1b}'), "colour codes on a pipe: {line:?}");
        if format == "json" {
            let j: serde_json::Value = serde_json::from_str(&line).unwrap();
            assert_eq!(j["level"], "INFO", "{j}");
            assert_eq!(j["fields"]["message"], "policy set loaded", "{j}");
            assert!(j["fields"]["policy_hash"].is_string(), "{j}");
        } else {
            assert!(serde_json::from_str::<serde_json::Value>(&line).is_err());
        }
    }
}

/// `mandate gateway` without a configuration, with a bad one, or in stdio mode without a
/// server command: exit 64 (or clap's usage error) with a message naming the problem,
/// before anything starts.
#[test]
fn the_gateway_refuses_a_missing_or_bad_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_mandate"))
            .args(args)
            .current_dir(dir.path())
            .env_remove("MANDATE_GATEWAY_CONFIG")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = run(&["gateway"]);
    assert_eq!(code, Some(64), "{err}");
    assert!(err.contains("MANDATE_GATEWAY_CONFIG"), "{err}");
    std::fs::write(dir.path().join("g.toml"), "[gateway]\nagent = 7\n").unwrap();
    for args in [
        &["gateway", "--config", "g.toml"][..],
        &[
            "gateway", "stdio", "--config", "g.toml", "--name", "files", "--", "true",
        ],
    ] {
        let (code, err) = run(args);
        assert_eq!(code, Some(64), "{err}");
        assert!(err.contains("g.toml") && err.contains("line 2"), "{err}");
    }
    let (code, err) = run(&["gateway", "stdio", "--config", "g.toml", "--name", "files"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("<COMMAND>"), "{err}");
}

/// `mandate config print`: flag > environment > file > default, each key with its source;
/// relative paths in the file are the file's; an unknown key is refused with its line.
#[test]
fn config_print_shows_precedence_and_unknown_keys_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let etc = dir.path().join("etc");
    std::fs::create_dir(&etc).unwrap();
    std::fs::write(
        etc.join("mandate.toml"),
        "listen = \"127.0.0.1:9001\"\ndata_dir = \"state\"\ntrust_domain = \"file.example\"\n\
         policy_dir = \"/srv/policies\"\nlog_format = \"json\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_mandate"))
        .args(["config", "print", "--config", "etc/mandate.toml"])
        .args(["--policy-dir", "/flag/policies"])
        .current_dir(dir.path())
        .env("MANDATE_TRUST_DOMAIN", "env.example")
        .env_remove("MANDATE_LISTEN")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = |key: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{key} = ")))
            .unwrap_or_else(|| panic!("no {key} in {text}"))
            .to_owned()
    };
    assert_eq!(line("listen"), "listen = \"127.0.0.1:9001\"  # file");
    assert_eq!(
        line("data_dir"),
        "data_dir = \"etc/state\"  # file",
        "relative to the file"
    );
    assert_eq!(
        line("trust_domain"),
        "trust_domain = \"env.example\"  # environment"
    );
    assert_eq!(
        line("policy_dir"),
        "policy_dir = \"/flag/policies\"  # flag"
    );
    assert_eq!(line("log_format"), "log_format = \"json\"  # file");
    assert_eq!(
        line("insecure_plaintext"),
        "insecure_plaintext = false  # default"
    );
    assert!(text.contains("# tls_cert is not set"), "{text}");

    // What it prints is a file `--config` accepts (comments and all).
    let printed = dir.path().join("printed.toml");
    std::fs::write(&printed, text.as_bytes()).unwrap();
    let again = Command::new(env!("CARGO_BIN_EXE_mandate"))
        .args(["config", "print", "--config", "printed.toml"])
        .current_dir(dir.path())
        .env_remove("MANDATE_TRUST_DOMAIN")
        .output()
        .unwrap();
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("trust_domain = \"env.example\"  # file")
    );

    std::fs::write(
        etc.join("bad.toml"),
        "listen = \"127.0.0.1:9001\"\n\nlisten_adress = \"0.0.0.0:1\"\n",
    )
    .unwrap();
    for command in [&["config", "print"][..], &["serve"][..]] {
        let out = Command::new(env!("CARGO_BIN_EXE_mandate"))
            .args(command)
            .args(["--config", "etc/bad.toml"])
            .current_dir(dir.path())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{err}");
        assert!(err.contains("etc/bad.toml"), "{err}");
        assert!(err.contains("line 3"), "{err}");
        assert!(err.contains("listen_adress"), "{err}");
    }
    assert!(!dir.path().join("mandate-data").exists());
}

/// Plaintext on an address other machines reach is refused before anything is created.
#[test]
fn serve_refuses_plaintext_off_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_mandate"))
        .args(["serve", "--listen", "0.0.0.0:0"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{err}");
    assert!(err.contains("--insecure-plaintext"), "{err}");
    assert!(!dir.path().join("mandate-data").exists());
}

/// `mandate serve --config` with TLS, the CLI with `--ca-file`, and a certificate from a
/// new CA picked up on SIGHUP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_tls_from_a_config_file_and_reload_on_sighup() {
    use mandate_tls::test_pki::TestPki;
    let dir = tempfile::tempdir().unwrap();
    let old = TestPki::new(dir.path(), "old").unwrap();
    let new = TestPki::new(dir.path(), "new").unwrap();
    let issued = old.issue("server", None).unwrap();
    std::fs::write(
        dir.path().join("mandate.toml"),
        "listen = \"127.0.0.1:0\"\ntls_cert = \"server.pem\"\ntls_key = \"server.key\"\n",
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_mandate"))
        .args(["serve", "--config", "mandate.toml"])
        .current_dir(dir.path())
        .env_remove("MANDATE_LISTEN")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let addr = first.rsplit(' ').next().unwrap().to_owned();
    let list = |ca: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_mandate"))
            .args(["--server", &addr, "--ca-file"])
            .arg(ca)
            .args(["--json", "agent", "list"])
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    let out = list(&old.ca_path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("spiffe://mandate.local/admin"));
    assert_eq!(list(&new.ca_path()).status.code(), Some(3));

    let next = new.issue("next", None).unwrap();
    std::fs::copy(&next.cert, &issued.cert).unwrap();
    std::fs::copy(&next.key, &issued.key).unwrap();
    let hup = Command::new("kill")
        .arg("-HUP")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(hup.success());
    let mut reloaded = false;
    for _ in 0..200 {
        if list(&new.ca_path()).status.success() {
            reloaded = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(reloaded, "SIGHUP did not reload the certificate");
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Each request runs in a span naming the method, the signing agent and the task or link it
/// names, visible in `--log-format json`; no token or signature is logged.
#[test]
fn request_spans_name_the_agent_and_task() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_mandate"))
        .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
        .current_dir(dir.path())
        .env("RUST_LOG", "mandate_server=debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = stdout.next().unwrap().unwrap();
    let addr = first.rsplit(' ').next().unwrap().to_owned();
    let task = "0123456789abcdef0123456789abcdef";
    let mut shown = None;
    for _ in 0..200 {
        let out = Command::new(env!("CARGO_BIN_EXE_mandate"))
            .args(["--server", &addr, "task", "show", task])
            .current_dir(dir.path())
            .output()
            .unwrap();
        if String::from_utf8_lossy(&out.stderr).contains("NOT_FOUND") {
            shown = Some(out);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    assert!(shown.is_some(), "the task lookup never reached the server");
    child.kill().unwrap();
    child.wait().unwrap();
    let logs: Vec<serde_json::Value> = BufReader::new(child.stderr.take().unwrap())
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| serde_json::from_str(&l).ok())
        .collect();
    let handled = logs
        .iter()
        .find(|l| l["fields"]["message"] == "handled" && l["span"]["task"] == task)
        .unwrap_or_else(|| panic!("no span with the task: {logs:#?}"));
    assert_eq!(handled["span"]["name"], "rpc");
    assert_eq!(handled["span"]["agent"], "spiffe://mandate.local/admin");
    assert_eq!(handled["span"]["method"], "/mandate.v1.TaskService/GetTask");
    assert_eq!(handled["fields"]["grpc_status"], "5");
    let all = logs.iter().map(ToString::to_string).collect::<String>();
    assert!(!all.contains("x-mandate-signature"));
}

#[test]
fn the_etcd_store_settings_print_without_the_password_and_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), "not read until connecting").unwrap();
    let run = |extra: &[&str], password: Option<&str>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_mandate"));
        c.args(["config", "print"])
            .args(extra)
            .current_dir(dir.path())
            .env_remove("MANDATE_STORE")
            .env_remove("MANDATE_ETCD_PASSWORD");
        if let Some(p) = password {
            c.env("MANDATE_ETCD_PASSWORD", p);
        }
        c.output().unwrap()
    };
    let out = run(
        &[
            "--store",
            "etcds://10.0.0.1:2379,10.0.0.2:2379/prod",
            "--etcd-ca-file",
            "ca.pem",
            "--etcd-user",
            "mandate",
        ],
        Some("hunter2-secret"),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("store = \"etcds://10.0.0.1:2379,10.0.0.2:2379/prod\"  # flag"),
        "{text}"
    );
    assert!(text.contains("etcd_user = \"mandate\"  # flag"), "{text}");
    assert!(
        !text.contains("hunter2"),
        "the password is never printed: {text}"
    );

    for (args, password, says) in [
        (
            &["--etcd-user", "mandate", "--store", "etcd://127.0.0.1:2379"][..],
            None,
            "password",
        ),
        (&["--store", "etcd://"][..], None, "names no etcd member"),
        (
            &["--store", "postgres://db"][..],
            None,
            "not an etcd address",
        ),
        (&["--etcd-ca-file", "ca.pem"][..], None, "need store"),
        (
            &["--advertise", "auto"][..],
            None,
            "advertise (several coordinators) needs store",
        ),
        (
            &[
                "--store",
                "etcds://127.0.0.1:2379",
                "--etcd-cert-file",
                "ca.pem",
            ][..],
            None,
            "go together",
        ),
    ] {
        let out = run(args, password);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}
