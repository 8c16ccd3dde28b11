//! The README quickstart, command by command, with `--json` output parsed: keys, agents, a
//! task, a delegation, a proof, online authorisation, revocation, inspection, the tree.

#![expect(clippy::unwrap_used, reason = "test fixtures fail loudly")]

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

struct Cli<'a> {
    server: String,
    dir: &'a Path,
}

impl Cli<'_> {
    /// Runs `mandate --json ARGS` as `agent` with `key`; returns the exit code and JSON.
    fn run(&self, agent: &str, key: &str, args: &[&str]) -> (i32, Value) {
        let out = Command::new(env!("CARGO_BIN_EXE_mandate"))
            .current_dir(self.dir)
            .args([
                "--server",
                &self.server,
                "--agent",
                agent,
                "--key",
                key,
                "--json",
            ])
            .args(args)
            .output()
            .unwrap();
        let stdout = String::from_utf8(out.stdout).unwrap();
        let json = serde_json::from_str(stdout.trim()).unwrap_or(Value::Null);
        let code = out.status.code().unwrap_or(-1);
        assert!(
            code != 3,
            "`mandate {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        (code, json)
    }

    /// Runs `mandate ARGS` as `agent` with `key`, expecting it to fail; returns the exit
    /// code and stderr.
    fn fail(&self, agent: &str, key: &str, args: &[&str]) -> (i32, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_mandate"))
            .current_dir(self.dir)
            .args(["--server", &self.server, "--agent", agent, "--key", key])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8(out.stderr).unwrap(),
        )
    }
}

const ADMIN: &str = "spiffe://mandate.local/admin";
const PLANNER: &str = "spiffe://mandate.local/planner";
const WORKER: &str = "spiffe://mandate.local/worker";
const TOOL: &str = "spiffe://mandate.local/tools/files";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quickstart_from_start_to_a_denied_revoked_worker() {
    quickstart(mandate_server::StoreChoice::Sled).await;
}

/// The same quickstart, unchanged, with the state on a 3-member etcd cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quickstart_on_etcd() {
    let cluster = mandate_etcd::test_cluster::EtcdCluster::start(3)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let config = mandate_store::EtcdConfig::new(cluster.endpoints());
    quickstart(mandate_server::StoreChoice::Etcd(Box::new(config))).await;
    drop(cluster);
}

async fn quickstart(store: mandate_server::StoreChoice) {
    let dir = tempfile::tempdir().unwrap();
    let mut config =
        mandate_server::Config::new(([127, 0, 0, 1], 0).into(), dir.path().join("mandate-data"));
    config.store = store;
    let server = mandate_server::start(config).await.unwrap();
    let cli = Cli {
        server: server.local_addr.to_string(),
        dir: dir.path(),
    };
    let admin_key = "mandate-data/admin.key";
    tokio::task::block_in_place(|| {
        // Keys and agents.
        for (name, id, role) in [
            ("planner", PLANNER, "planner"),
            ("worker", WORKER, "worker"),
            ("tool", TOOL, "tool"),
        ] {
            let (code, j) = cli.run(
                ADMIN,
                admin_key,
                &["keygen", "--out", &format!("{name}.key")],
            );
            assert_eq!(code, 0);
            assert!(j["public_key"].as_str().unwrap().len() == 43);
            let (code, j) = cli.run(
                ADMIN,
                admin_key,
                &[
                    "agent",
                    "register",
                    id,
                    "--key-file",
                    &format!("{name}.key"),
                    "--role",
                    role,
                ],
            );
            assert_eq!(code, 0);
            assert_eq!(j["status"], "active");
        }
        let (_, list) = cli.run(ADMIN, admin_key, &["agent", "list"]);
        assert_eq!(list.as_array().unwrap().len(), 4);
        let (_, shown) = cli.run(ADMIN, admin_key, &["agent", "show", WORKER]);
        assert_eq!(shown["role"], "worker");

        // The planner starts a task and delegates to the worker.
        let (code, task) = cli.run(
            PLANNER,
            "planner.key",
            &[
                "task",
                "start",
                "--cap",
                "files/*:read,write",
                "--ttl",
                "5m",
                "--intent",
                "quickstart",
                "--out",
                "planner.chain",
            ],
        );
        assert_eq!(code, 0);
        let task_id = task["task_id"].as_str().unwrap().to_owned();
        assert_eq!(task["state"], "active");
        let (code, d) = cli.run(
            PLANNER,
            "planner.key",
            &[
                "delegate",
                "--chain",
                "planner.chain",
                "--to",
                WORKER,
                "--cap",
                "files/reports/*:read",
                "--ttl",
                "2m",
                "--out",
                "worker.chain",
            ],
        );
        assert_eq!(code, 0);
        let worker_link = d["link_id"].as_str().unwrap().to_owned();
        // A delegation wider than the chain is refused locally, and the reason is said once.
        let (code, err) = cli.fail(
            PLANNER,
            "planner.key",
            &[
                "delegate",
                "--chain",
                "planner.chain",
                "--to",
                WORKER,
                "--cap",
                "db/*:read",
            ],
        );
        assert_eq!(code, 3, "{err}");
        assert_eq!(err.matches("SCOPE_WIDENED").count(), 1, "{err}");
        assert!(
            !err.contains('\u{1b}'),
            "colour codes in piped output: {err:?}"
        );
        // With --out, the chain goes to the file only.
        assert_eq!(
            (&d["chain_file"], &d["chain"]),
            (&json!("worker.chain"), &Value::Null)
        );

        // The worker proves a call; the tool asks the coordinator.
        let (_, p) = cli.run(
            WORKER,
            "worker.key",
            &[
                "prove",
                "--chain",
                "worker.chain",
                "--audience",
                TOOL,
                "--action",
                "read",
                "--resource",
                "files/reports/q3.txt",
            ],
        );
        let inv = p["invocation"].as_str().unwrap().to_owned();
        let (code, a) = cli.run(
            TOOL,
            "tool.key",
            &[
                "authorize",
                "--chain",
                "worker.chain",
                "--invocation",
                &inv,
                "--action",
                "read",
                "--resource",
                "files/reports/q3.txt",
            ],
        );
        assert_eq!((code, &a["allowed"]), (0, &Value::Bool(true)), "{a}");
        // Beyond its scope: `prove` refuses to sign what a tool would reject, naming the
        // first link that does not permit the call (the worker's)...
        let beyond = [
            "prove",
            "--chain",
            "worker.chain",
            "--audience",
            TOOL,
            "--action",
            "write",
            "--resource",
            "files/reports/q3.txt",
        ];
        let (code, refused) = cli.run(WORKER, "worker.key", &beyond);
        assert_eq!(
            (code, &refused["reason"], &refused["link"]),
            (1, &json!("NOT_PERMITTED"), &json!(1)),
            "{refused}"
        );
        // ... and a proof signed by a key that does not hold the leaf is refused too.
        let mut read = beyond.to_vec();
        read[6] = "read";
        let (code, refused) = cli.run(PLANNER, "planner.key", &read);
        assert_eq!((code, &refused["reason"]), (1, &json!("BAD_SIGNATURE")));
        // With --force it signs, and the tool denies: exit 1.
        let mut forced = beyond.to_vec();
        forced.push("--force");
        let (_, p) = cli.run(WORKER, "worker.key", &forced);
        let (code, a) = cli.run(
            TOOL,
            "tool.key",
            &[
                "authorize",
                "--chain",
                "worker.chain",
                "--invocation",
                p["invocation"].as_str().unwrap(),
                "--action",
                "write",
                "--resource",
                "files/reports/q3.txt",
            ],
        );
        assert_eq!((code, a["reason"].as_str()), (1, Some("NOT_PERMITTED")));

        // Inspect explains the chain.
        let (code, i) = cli.run(WORKER, "worker.key", &["inspect", "worker.chain"]);
        assert_eq!(code, 0);
        assert_eq!(i["links"].as_array().unwrap().len(), 2);
        assert_eq!(i["links"][1]["holder"], WORKER);
        assert_eq!(i["verification"]["valid"], true);
        let (_, i) = cli.run(WORKER, "worker.key", &["inspect", &inv]);
        assert_eq!(i["kind"], "invocation");
        // A chain that must be authorised online does not "verify offline": inspect says
        // so and exits 1.
        let (code, _) = cli.run(
            PLANNER,
            "planner.key",
            &[
                "task",
                "start",
                "--cap",
                "files/x:read",
                "--online",
                "--out",
                "online.chain",
            ],
        );
        assert_eq!(code, 0);
        let (code, i) = cli.run(PLANNER, "planner.key", &["inspect", "online.chain"]);
        let v = &i["verification"];
        assert_eq!(
            (code, &v["valid"], &v["reason"], &v["online_only"]),
            (1, &json!(false), &json!("ONLINE_REQUIRED"), &json!(true)),
            "{i}"
        );

        // Revoke the worker: a new proof is denied as REVOKED.
        let (code, r) = cli.run(
            PLANNER,
            "planner.key",
            &["revoke", &worker_link, "--reason", "done"],
        );
        assert_eq!(code, 0);
        assert_eq!(r["revoked_link_ids"].as_array().unwrap().len(), 1);
        let (_, p) = cli.run(
            WORKER,
            "worker.key",
            &[
                "prove",
                "--chain",
                "worker.chain",
                "--audience",
                TOOL,
                "--action",
                "read",
                "--resource",
                "files/reports/q3.txt",
            ],
        );
        let (code, a) = cli.run(
            TOOL,
            "tool.key",
            &[
                "authorize",
                "--chain",
                "worker.chain",
                "--invocation",
                p["invocation"].as_str().unwrap(),
                "--action",
                "read",
                "--resource",
                "files/reports/q3.txt",
            ],
        );
        assert_eq!((code, a["reason"].as_str()), (1, Some("REVOKED")));
        let (_, tree) = cli.run(PLANNER, "planner.key", &["tree", &task_id]);
        assert_eq!(tree["links"][1]["state"], "revoked");

        // Renew, show, list, complete.
        let (code, n) = cli.run(PLANNER, "planner.key", &["renew", &task_id, "--ttl", "1m"]);
        assert_eq!(code, 0);
        assert!(n["chain"].as_str().unwrap().starts_with("mandate1."));
        let (_, t) = cli.run(PLANNER, "planner.key", &["task", "show", &task_id]);
        assert_eq!(t["state"], "active");
        let (_, l) = cli.run(
            PLANNER,
            "planner.key",
            &["task", "list", "--requester", PLANNER],
        );
        assert_eq!(l.as_array().unwrap().len(), 2);
        let (_, c) = cli.run(
            PLANNER,
            "planner.key",
            &["task", "complete", &task_id, "--summary", "ok"],
        );
        assert_eq!(c["state"], "completed");
        // A second task, failed; then the worker is disabled.
        let (_, t2) = cli.run(
            PLANNER,
            "planner.key",
            &["task", "start", "--cap", "files/x:read"],
        );
        let (_, f) = cli.run(
            PLANNER,
            "planner.key",
            &[
                "task",
                "fail",
                t2["task_id"].as_str().unwrap(),
                "--reason",
                "nope",
            ],
        );
        assert_eq!(f["state"], "failed");
        let (code, _) = cli.run(
            ADMIN,
            admin_key,
            &["agent", "disable", WORKER, "--reason", "quickstart over"],
        );
        assert_eq!(code, 0);
        let (_, shown) = cli.run(ADMIN, admin_key, &["agent", "show", WORKER]);
        assert_eq!(shown["status"], "disabled");
    });
    server.shutdown().await.unwrap();
}
