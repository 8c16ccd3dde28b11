//! Generated code for the Mandate coordinator API (`proto/mandate/v1`) and the token wire
//! format (`proto/mandate/token/v1`), and the encoded file descriptor set for reflection.
//!
//! Nothing else lives here but the codec the generated services use ([`codec`]):
//! conversions to domain types are in the server and the SDK.

#![forbid(unsafe_code)]

pub mod codec;

// Generated modules nest like the proto packages so cross-package paths resolve.
#[expect(
    clippy::all,
    clippy::pedantic,
    unreachable_pub,
    reason = "generated code"
)]
mod mandate {
    /// `mandate.v1`.
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/mandate.v1.rs"));
    }
    /// `mandate.token`.
    pub mod token {
        /// `mandate.token.v1`.
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/mandate.token.v1.rs"));
        }
    }
}

/// Package `mandate.v1`: the coordinator services.
pub use mandate::v1;

/// Package `mandate.token.v1`: the token wire format.
pub use mandate::token::v1 as token;

/// The encoded `FileDescriptorSet` of every Mandate proto, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/mandate_descriptor.bin"));
