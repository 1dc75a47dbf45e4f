//! Compiles proto/ with protox (pure Rust: a fresh machine has no protoc).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    git_revision();
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

/// Exposes the short git revision as DFSD_GIT_REVISION (for `--version` and the
/// `dfsd_build_info` metric); "unknown" when there is no git or no repository.
fn git_revision() {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .filter(|s| !s.is_empty())
    };
    let rev = git(&["rev-parse", "--short=10", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=DFSD_GIT_REVISION={rev}");
    // Rebuild when HEAD moves (a commit or checkout appends to logs/HEAD).
    for p in ["HEAD", "logs/HEAD"] {
        if let Some(path) = git(&["rev-parse", "--git-path", p]) {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}
