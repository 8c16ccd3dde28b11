//! Integration tests for mandate-core, in one binary: the adversarial suite, properties and
//! the golden vectors, all through the public API.

#![expect(
    unreachable_pub,
    reason = "items are shared between the suite's modules"
)]
#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test fixtures fail loudly"
)]

mod adversarial;
mod fixture;
mod golden;
mod precision;
mod properties;
mod protowriter;
mod scenarios;
mod sizes;
