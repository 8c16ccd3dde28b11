//! The load tool still drives a coordinator: each scenario at a tiny size, with no errors.
//! (Figures come from release builds at full size; see BENCHMARKS.md.)

use std::process::Command;

#[test]
fn every_request_scenario_runs_without_errors() {
    for (scenario, size) in [
        ("echo", "--requests=200"),
        ("authorize", "--requests=200"),
        ("delegate", "--requests=100"),
        ("mixed", "--requests=200"),
        ("revoke-cascade", "--descendants=200"),
        ("gateway", "--requests=200"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_mandate-bench"))
            .args([scenario, size, "--json"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{scenario}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8(out.stdout).unwrap();
        // Every report line (the gateway scenario prints two: direct, then through it).
        assert!(
            stdout.lines().any(|l| l.starts_with('{')),
            "{scenario}: {stdout}"
        );
        for line in stdout.lines().filter(|l| l.starts_with('{')) {
            let report: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{scenario}: {e}: {stdout}"));
            // Revoke-cascade reports timings, not a request count.
            assert_eq!(
                report["errors"].as_u64().unwrap_or(0),
                0,
                "{scenario}: {report}"
            );
        }
    }
}
