//! Compiles `proto/falco/*.proto` with protox (a pure-Rust protoc), so a build needs nothing but the
//! Rust toolchain. The encoded descriptor set is kept for gRPC server reflection.

use std::path::PathBuf;

use prost::Message;

const PROTOS: &[&str] = &[
    "falco/schema.proto",
    "falco/version.proto",
    "falco/outputs.proto",
    "falco/inputs.proto",
    "falco/drops.proto",
    "falco/rules.proto",
    "falco/configs.proto",
    "falco/sidecar.proto",
    "falco/metrics.proto",
    "falco/tokens.proto",
    "falco/fleet.proto",
    "falco/store.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let fds = protox::compile(PROTOS, ["proto"])?;
    std::fs::write(out.join("falco_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .btree_map(".")
        .compile_fds(fds)?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
