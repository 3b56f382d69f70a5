//! Compiles `proto/` with protox, a pure-Rust protobuf compiler, so that a
//! fresh clone builds with only the Rust toolchain (no system `protoc`).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["proto/tokenvault/v1/tokenvault.proto"];
    println!("cargo:rerun-if-changed=proto");
    let descriptors = protox::compile(files, ["proto"])?;
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("tokenvault_descriptor.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )?;
    tonic_prost_build::configure()
        // Messages that carry a token get a hand-written, redacting Debug
        // (src/redact.rs) instead of the derived one.
        .skip_debug([
            ".tokenvault.v1.StoreRefreshTokenRequest",
            ".tokenvault.v1.ResealRefreshTokenRequest",
            ".tokenvault.v1.ShareAccessTokenRequest",
            ".tokenvault.v1.GetAccessTokenResponse",
        ])
        // Malformed requests get INVALID_ARGUMENT, as the .proto promises.
        .codec_path("crate::codec::TokenvaultCodec")
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
