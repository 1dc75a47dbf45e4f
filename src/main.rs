//! The `dfsd` binary: parse the command line, load the config, run a role or a command.

use std::process::ExitCode;

use anyhow::Context;
use tracing_subscriber::EnvFilter;

use dfsd::cli::flags::Flags;
use dfsd::cli::{Cli, Command};
use dfsd::config::Config;
use dfsd::security::Tls;

fn main() -> ExitCode {
    match run(dfsd::cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of our output went away (`dfsd get /f - | head`): exit quietly with
        // the status a shell gives a process killed by SIGPIPE, as Unix tools do.
        Err(e) if broken_pipe(&e) => ExitCode::from(141),
        Err(e) => {
            eprintln!("dfsd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// True if `e` comes from writing to a pipe whose reader has gone.
fn broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let flags = Flags::of(&cli);
    let Some(command) = cli.command else {
        anyhow::bail!(
            "no command given; try `dfsd --help` (or `dfsd dev` to start a local cluster)"
        );
    };
    let cfg = Config::load_with(cli.config.as_deref(), flags.provider())?;
    cfg.validate()?;
    init_logging(&command, &cfg);
    if command.is_server() {
        // Whatever a server creates is its own (files that dfsd creates get explicit
        // modes too); client commands keep the user's umask for the files they write.
        dfsd::security::files::private_umask();
        dfsd::security::files::check_key_files(&[&cfg.tls.key, &cfg.gateway.tls_key]);
    }

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if command.is_server() {
        rt.block_on(serve(command, cfg))
    } else {
        rt.block_on(dfsd::cli::run(command, cfg))
    }
}

/// Servers log at the configured level; client commands only warnings and errors, so
/// their output stays clean.
fn init_logging(command: &Command, cfg: &Config) {
    let level = if command.is_server() || std::env::var_os("DFSD_LOG_LEVEL").is_some() {
        cfg.log_level.clone()
    } else {
        "warn".into()
    };
    // s3s logs every refused request (a bad signature, an unknown key) at ERROR; the
    // gateway logs its own failures, so s3s stays quiet unless the filter names it.
    let level = if matches!(command, Command::Gateway(_)) && !level.contains("s3s") {
        format!("{level},s3s=off")
    } else {
        level
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    dfsd::logging::init(filter, &cfg.log_format);
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
}

/// TLS for a server role: required unless plaintext was chosen explicitly.
fn server_tls(cfg: &Config) -> anyhow::Result<Option<Tls>> {
    match Tls::load(&cfg.tls)? {
        Some(t) => Ok(Some(t)),
        None if cfg.tls.plaintext => {
            tracing::warn!(
                "serving PLAINTEXT (tls.plaintext): traffic is not encrypted and cluster \
                 members are not authenticated; use only on a trusted network"
            );
            Ok(None)
        }
        None => anyhow::bail!(
            "TLS is not configured: set tls.ca, tls.cert and tls.key (create them with \
             `dfsd cert init` and `dfsd cert issue`), or choose plaintext explicitly with \
             --plaintext (DFSD_TLS__PLAINTEXT=true)"
        ),
    }
}

/// Runs a server role until SIGTERM or Ctrl-C.
async fn serve(command: Command, cfg: Config) -> anyhow::Result<()> {
    let bind = |addr: String| async move {
        tokio::net::TcpListener::bind(&addr)
            .await
            .with_context(|| format!("bind {addr}"))
    };
    match command {
        Command::Coordinator(_) => {
            let tls = server_tls(&cfg)?;
            let l = bind(cfg.coordinator.listen.clone()).await?;
            dfsd::coordinator::run(l, cfg.coordinator, tls, shutdown_signal()).await
        }
        Command::Datanode(_) => {
            let tls = server_tls(&cfg)?;
            let l = bind(cfg.datanode.listen.clone()).await?;
            dfsd::datanode::run(l, cfg.datanode, tls, shutdown_signal()).await
        }
        Command::Dev(a) => dfsd::dev::run(cfg, &a, shutdown_signal()).await,
        Command::Gateway(_) => {
            // A gateway authenticates to the cluster with its certificate: TLS, unless
            // plaintext is chosen as for the servers of the cluster.
            let tls = server_tls(&cfg)?;
            let l = bind(cfg.gateway.listen.clone()).await?;
            dfsd::gateway::run(l, &cfg, tls.as_ref(), shutdown_signal()).await
        }
        other => anyhow::bail!("{other:?} is not a server role"),
    }
}
