//! Compiles the example tool's proto with protox (no system `protoc`).

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Read when the script runs, not baked in when it is compiled: a build script binary
    // reused from another checkout must not point there.
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("proto");
    let file = "files/v1/files.proto";
    println!("cargo:rerun-if-changed={}", root.join(file).display());
    tonic_prost_build::configure().compile_fds(protox::compile([file], [&root])?)?;
    Ok(())
}
