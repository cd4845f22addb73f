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
        .compile_fds(fds.clone())?;
    wire_outputs(&out, fds)?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}

/// A second, server-only build of `falco.outputs` whose responses are
/// `crate::proto::wire::OutputFrame`: stored alert bytes sent as they are (the pass-through
/// codec). Requests stay the ordinary generated type.
fn wire_outputs(
    out: &std::path::Path,
    mut fds: prost_types::FileDescriptorSet,
) -> Result<(), Box<dyn std::error::Error>> {
    let keep = [
        "falco/outputs.proto",
        "falco/schema.proto",
        "google/protobuf/timestamp.proto",
    ];
    fds.file
        .retain(|f| keep.contains(&f.name.as_deref().unwrap_or("")));
    let dir = out.join("wire");
    std::fs::create_dir_all(&dir)?;
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(true)
        .out_dir(&dir)
        .extern_path(".falco.schema", "crate::proto::schema")
        .extern_path(".falco.outputs.request", "crate::proto::outputs::Request")
        .extern_path(".falco.outputs.response", "crate::proto::wire::OutputFrame")
        .compile_fds(fds)?;
    Ok(())
}
