//! Compiles the token wire format with protox (no system `protoc`) and generates prost types.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let file = "mandate/token/v1/token.proto";
    println!("cargo:rerun-if-changed={}", proto_root.join(file).display());
    let descriptors = protox::compile([file], [&proto_root])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}
