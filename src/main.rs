//! The `dfsd` binary: parse the command line, load the config, run a role or a command.

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use dfsd::cli::{rewrite_role_args, Cli, Command};
use dfsd::client::{commands, Client};
use dfsd::config::Config;
use dfsd::security::Tls;

fn main() -> ExitCode {
    let cli = Cli::parse_from(rewrite_role_args(std::env::args().collect()));
    match run(cli) {
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

fn is_server(cmd: &Command) -> bool {
    matches!(
        cmd,
        Command::Coordinator(_) | Command::Datanode(_) | Command::Dev(_) | Command::Gateway(_)
    )
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let Some(command) = cli.command else {
        anyhow::bail!(
            "no command given; try `dfsd --help` (or `dfsd dev` to start a local cluster)"
        );
    };
    let mut cfg = Config::load(cli.config.as_deref())?;
    if let Some(c) = cli.coordinator {
        cfg.client.coordinator = c;
    }
    if let Some(l) = cli.log_level {
        cfg.log_level = l;
    }
    if let Some(v) = cli.tls_ca {
        cfg.tls.ca = v;
    }
    if let Some(v) = cli.tls_cert {
        cfg.tls.cert = v;
    }
    if let Some(v) = cli.tls_key {
        cfg.tls.key = v;
    }
    if cli.plaintext {
        cfg.tls.plaintext = true;
    }
    if let Some(f) = cli.log_format {
        cfg.log_format = f;
    }
    match &command {
        Command::Coordinator(a) => {
            if let Some(v) = &a.listen {
                cfg.coordinator.listen = v.clone();
            }
            if let Some(v) = &a.data_dir {
                cfg.coordinator.data_dir = v.clone();
            }
            if let Some(v) = &a.admin_listen {
                cfg.coordinator.admin_listen = v.clone();
            }
        }
        Command::Datanode(a) => {
            if let Some(v) = &a.join {
                cfg.datanode.join = v.clone();
            }
            if let Some(v) = &a.listen {
                cfg.datanode.listen = v.clone();
            }
            if let Some(v) = &a.advertise {
                cfg.datanode.advertise = v.clone();
            }
            if let Some(v) = &a.data_dir {
                cfg.datanode.data_dir = v.clone();
            }
            if let Some(v) = a.capacity {
                cfg.datanode.capacity = v;
            }
            if let Some(v) = &a.admin_listen {
                cfg.datanode.admin_listen = v.clone();
            }
            if let Some(v) = &a.join_secret {
                cfg.datanode.join_secret = v.clone();
            }
        }
        Command::Gateway(a) => {
            if let Some(v) = &a.listen {
                cfg.gateway.listen = v.clone();
            }
            if let Some(v) = &a.s3_tls_cert {
                cfg.gateway.tls_cert = v.clone();
            }
            if let Some(v) = &a.s3_tls_key {
                cfg.gateway.tls_key = v.clone();
            }
            if a.plaintext_s3 {
                cfg.gateway.plaintext_s3 = true;
            }
        }
        _ => {}
    }
    cfg.validate()?;

    // Servers log at the configured level; client commands only warnings and errors, so
    // their output stays clean.
    let level = if is_server(&command) || std::env::var_os("DFSD_LOG_LEVEL").is_some() {
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
    if is_server(&command) {
        // Whatever a server creates is its own (files that dfsd creates get explicit
        // modes too); client commands keep the user's umask for the files they write.
        dfsd::security::files::private_umask();
        dfsd::security::files::check_key_files(&[&cfg.tls.key, &cfg.gateway.tls_key]);
    }

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(dispatch(command, cfg))
}

/// Loopback address of a server listening on `listen` (a wildcard becomes 127.0.0.1).
fn local_addr(listen: &str) -> String {
    match listen.rsplit_once(':') {
        Some((host, port)) if host.is_empty() || host == "0.0.0.0" || host == "[::]" => {
            format!("127.0.0.1:{port}")
        }
        _ => listen.to_string(),
    }
}

/// `dfsd health`: one line, exit 0 when the server answers, 1 otherwise.
async fn health(mut cfg: Config, a: &dfsd::cli::HealthArgs) -> anyhow::Result<()> {
    let mut datanode = a.datanode.clone();
    if a.local {
        match std::env::var("DFSD_ROLE").unwrap_or_default().as_str() {
            "datanode" => datanode = Some(local_addr(&cfg.datanode.listen)),
            "coordinator" => cfg.client.coordinator = local_addr(&cfg.coordinator.listen),
            other => {
                anyhow::bail!("health --local: DFSD_ROLE is {other:?}, not coordinator or datanode")
            }
        }
    }
    cfg.client.connect_timeout = cfg.client.connect_timeout.min(a.timeout);
    let client = Client::connect(&cfg.client, Tls::load(&cfg.tls)?.as_ref())?;
    match datanode {
        Some(addr) => {
            client.ping_datanode(&addr, a.timeout).await?;
            println!("datanode {addr}: ok");
        }
        None => {
            client.ping_coordinator(a.timeout).await?;
            println!("coordinator {}: ok", cfg.client.coordinator);
        }
    }
    Ok(())
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

async fn dispatch(command: Command, cfg: Config) -> anyhow::Result<()> {
    use anyhow::Context;
    match command {
        Command::Coordinator(_) => {
            let tls = server_tls(&cfg)?;
            let l = tokio::net::TcpListener::bind(&cfg.coordinator.listen)
                .await
                .with_context(|| format!("bind {}", cfg.coordinator.listen))?;
            dfsd::coordinator::run(l, cfg.coordinator, tls, shutdown_signal()).await
        }
        Command::Datanode(_) => {
            let tls = server_tls(&cfg)?;
            let l = tokio::net::TcpListener::bind(&cfg.datanode.listen)
                .await
                .with_context(|| format!("bind {}", cfg.datanode.listen))?;
            dfsd::datanode::run(l, cfg.datanode, tls, shutdown_signal()).await
        }
        Command::Cert(c) if c.is_local() => commands::cert(c),
        Command::Dev(a) => dfsd::dev::run(cfg, &a, shutdown_signal()).await,
        Command::Config => {
            // Secrets are shown as "<redacted>": this output ends up in tickets and chats.
            print!("{}", cfg.redacted().to_toml());
            Ok(())
        }
        Command::Health(a) => health(cfg, &a).await,
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "dfsd", &mut std::io::stdout());
            Ok(())
        }
        Command::Gateway(_) => {
            // A gateway authenticates to the cluster with its certificate: TLS, unless
            // plaintext is chosen as for the servers of the cluster.
            let tls = server_tls(&cfg)?;
            let l = tokio::net::TcpListener::bind(&cfg.gateway.listen)
                .await
                .with_context(|| format!("bind {}", cfg.gateway.listen))?;
            dfsd::gateway::run(l, &cfg, tls.as_ref(), shutdown_signal()).await
        }
        other => {
            let client = Client::connect(&cfg.client, Tls::load(&cfg.tls)?.as_ref())?;
            match other {
                Command::Put(a) => commands::put(&client, &a).await,
                Command::Get(a) => commands::get(&client, &a).await,
                Command::Ls(a) => commands::ls(&client, &a).await,
                Command::Stat(a) => commands::stat(&client, &a.path, a.json).await,
                Command::Rm(a) => commands::rm(&client, &a).await,
                Command::Mv(a) => commands::mv(&client, &a).await,
                Command::Mkdir(a) => commands::mkdir(&client, &a).await,
                Command::Nodes(a) => commands::nodes(&client, a.json).await,
                Command::Status(a) => commands::status(&client, a.json).await,
                Command::Fsck(a) => commands::fsck(&client, &a).await,
                Command::Node(n) => commands::node(&client, n).await,
                Command::Key(k) => commands::key(&client, k).await,
                Command::Events(a) => dfsd::client::events::command(&client, &a).await,
                Command::Cert(c) => dfsd::client::certs::command(&client, c).await,
                Command::Bucket(b) => dfsd::client::buckets::command(&client, b).await,
                _ => unreachable!("server roles handled above"),
            }
        }
    }
}
