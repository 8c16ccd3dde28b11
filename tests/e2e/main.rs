//! End-to-end tests against a real coordinator on an ephemeral loopback port, in one
//! binary.

#![expect(unreachable_pub, reason = "items are shared between the test modules")]
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]

// Where a test goes (one module per area of the API; shared set-up in `harness` and
// `failing_store`):
//
// - `access`: the access review (who can, live authority, exposure), figures by hand.
// - `flow`: tasks and delegation end to end (start, delegate, authorize, expire, revoke,
//   complete, restart), and disabling agents.
// - `bad_input`: request authentication and everything a caller can get wrong (unsigned,
//   stale, replayed, malformed, oversized, undecodable, foreign trust domain), quotas and
//   concurrent duplicates; each proves that nothing changed.
// - `batch`: `AuthorizeBatch` (order, one audit record a decision, bad input refused whole).
// - `tool`: the tool side (the SDK's verifier and tower layer against a live feed).
// - `feed`: `WatchRevocations`: resuming, heartbeats, publishing only once durable.
// - `policy`: Cedar decisions, obligations, approvals, break-glass, reloads and drift.
// - `audit`: the audit log API (query, follow, verify, export) and failing closed when the
//   audit write fails.
// - `operations`: health and reflection, the trust bundle and renewal, bounded storage.
// - `gateway`: `mandate-gateway` in front of a real HTTP upstream.
// - `tls`: TLS and mutual TLS on the listeners, certificate reload.
// - `metrics`: the Prometheus exposition, scraped by a real Prometheus.
// - `on_etcd`: the main flows again with the state on a 3-member etcd cluster.
mod access;
mod audit;
mod bad_input;
mod batch;
mod failing_store;
mod failover;
mod feed;
mod flow;
mod gateway;
mod harness;
mod metrics;
mod on_etcd;
mod operations;
mod policy;
mod tls;
mod tool;
