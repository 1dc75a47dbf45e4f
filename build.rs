//! Compiles proto/ with protox (pure Rust: a fresh machine has no protoc).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(["dfs/v1/dfs.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .bytes(".dfs.v1")
        .compile_fds(fds)?;
    Ok(())
}
