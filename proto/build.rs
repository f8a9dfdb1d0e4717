fn main() -> Result<(), Box<dyn std::error::Error>> {
    // protoc comes from a crate so that a machine with only cargo can build the workspace.
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .bytes(".")
        // Kept for gRPC reflection, so `grpcurl -plaintext node:9093 list` works.
        .file_descriptor_set_path(out_dir.join("chronik_descriptor.bin"))
        .compile_with_config(config, &["proto/raft.proto", "proto/control.proto", "proto/data.proto"], &["proto"])?;
    Ok(())
}
