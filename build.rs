//! Compiles proto/ with protox (pure Rust: a fresh machine has no protoc).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(["dfs/v1/dfs.proto"], ["proto"])?;
    // `rpc_methods.rs` in OUT_DIR: every RPC of every service as (path, client streaming,
    // server streaming), so tests sweep all methods, a new one included, from the
    // definitions themselves rather than a list kept by hand.
    let mut table = String::from("pub const RPC_METHODS: &[(&str, bool, bool)] = &[\n");
    for file in &fds.file {
        for service in &file.service {
            for m in &service.method {
                table.push_str(&format!(
                    "    (\"/{}.{}/{}\", {}, {}),\n",
                    file.package(),
                    service.name(),
                    m.name(),
                    m.client_streaming(),
                    m.server_streaming()
                ));
            }
        }
    }
    table.push_str("];\n");
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("rpc_methods.rs"), table)?;
    tonic_prost_build::configure()
        .bytes(".dfs.v1")
        .compile_fds(fds)?;
    Ok(())
}
