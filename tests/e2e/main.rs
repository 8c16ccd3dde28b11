//! End-to-end tests against a real coordinator on an ephemeral loopback port, in one
//! binary.

#![expect(unreachable_pub, reason = "items are shared between the test modules")]
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail loudly"
)]

mod audit;
mod bad_input;
mod flow;
mod harness;
mod operations;
mod policy;
mod tool;
