//! Compiles `proto/` with protox (no system `protoc`), generates prost messages and tonic
//! clients and servers, and writes the encoded descriptor set for server reflection.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let files = [
        "mandate/token/v1/token.proto",
        "mandate/v1/agents.proto",
        "mandate/v1/tasks.proto",
        "mandate/v1/authorization.proto",
        "mandate/v1/audit.proto",
        "mandate/v1/approvals.proto",
        "mandate/v1/policy.proto",
        "mandate/v1/access.proto",
    ];
    for f in files {
        println!("cargo:rerun-if-changed={}", root.join(f).display());
    }
    let descriptors = protox::compile(files, [&root])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("mandate_descriptor.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )?;
    tonic_prost_build::configure()
        // The token wire types exist once, in mandate-core, with their conversions.
        .extern_path(".mandate.token.v1", "::mandate_core::pb")
        .btree_map(".")
        // Undecodable requests are the caller's error, not the server's (see `codec.rs`).
        .codec_path("crate::codec::StrictCodec")
        .compile_fds(descriptors)?;
    Ok(())
}
