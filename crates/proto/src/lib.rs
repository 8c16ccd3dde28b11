//! Generated code for the Mandate coordinator API (`proto/mandate/v1`) and the token wire
//! format (`proto/mandate/token/v1`), and the encoded file descriptor set for reflection.
//!
//! Nothing else lives here but the codec the generated services use ([`codec`]):
//! conversions to domain types are in the server and the SDK.

#![forbid(unsafe_code)]

pub mod codec;

// Generated code, nested like the proto package.
#[expect(clippy::all, clippy::pedantic, reason = "generated code")]
mod mandate {
    /// `mandate.v1`.
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/mandate.v1.rs"));
    }
}

/// Package `mandate.v1`: the coordinator services.
pub use mandate::v1;

/// Package `mandate.token.v1`: the token wire format. Its types are mandate-core's
/// (`mandate_core::pb`), which converts them to and from the domain types.
pub use mandate_core::pb as token;

/// The encoded `FileDescriptorSet` of every Mandate proto, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/mandate_descriptor.bin"));
