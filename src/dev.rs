//! `dfsd dev`: a coordinator and N datanodes in one process on loopback, the zero-setup way
//! to try dfsd. Data lives under one directory and survives restarts.
//!
//! It is plaintext, and without `--auth` it asks for no access key, so it listens on a
//! loopback address only, and so does its admin HTTP port (`coordinator.admin_listen`),
//! where everyone would count as admin and see every path; `--auth` turns access keys on
//! (and, since there is no TLS, a join secret that its in-process datanodes share), and
//! only then may either name another address.

use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::cli::DevArgs;
use crate::client::{Client, ReadRange};
use crate::config::{endpoint_uri, ClientConfig, Config, CoordinatorConfig};
use crate::security::join::JoinSecret;

/// Runs the dev cluster until `shutdown` fires (or, with `demo_only`, until the demo ends).
pub async fn run(
    cfg: Config,
    args: &DevArgs,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (nodes, data_dir, listen) = (args.nodes, args.data_dir.as_path(), args.listen.as_str());
    if nodes == 0 {
        anyhow::bail!("--nodes must be at least 1");
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };

    // A local toy: plaintext, and no access keys unless --auth.
    let mut coord_cfg = cfg.coordinator.clone();
    coord_cfg.auth = args.auth;
    coord_cfg.data_dir = data_dir.join("coordinator");
    coord_cfg.replication = coord_cfg.replication.min(nodes as u32);
    if coord_cfg.write_quorum > coord_cfg.replication {
        coord_cfg.write_quorum = coord_cfg.replication;
    }
    let mut client_cfg = cfg.client.clone();
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("bind coordinator on {listen}"))?;
    let bound = listener.local_addr()?;
    if !args.auth && !bound.ip().is_loopback() {
        anyhow::bail!(
            "dfsd dev --listen {listen}: without authentication the dev cluster serves only \
             a loopback address (127.0.0.1); add --auth to require access keys"
        );
    }
    if !args.auth {
        check_admin_on_loopback(&coord_cfg.admin_listen).await?;
    }
    let mut join_secret = String::new();
    if args.auth {
        // The datanodes run in this process: a fresh join secret each start is enough.
        join_secret = JoinSecret::generate();
        coord_cfg.join_secret = join_secret.clone();
        dev_credentials(&mut coord_cfg, &mut client_cfg)?;
    }
    let coord_addr = endpoint_uri(&bound.to_string());
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(crate::coordinator::run(
        listener,
        coord_cfg,
        None,
        stopped(stop_rx.clone()),
    ));

    for i in 0..nodes {
        let mut dn = cfg.datanode.clone();
        dn.join = coord_addr.clone();
        dn.data_dir = data_dir.join(format!("node-{i}"));
        dn.advertise = String::new();
        dn.join_secret = join_secret.clone();
        // One process, one metrics registry: the coordinator's admin endpoint (if any)
        // already serves every datanode's series.
        dn.admin_listen = String::new();
        let l = TcpListener::bind("127.0.0.1:0")
            .await
            .context("bind datanode")?;
        tasks.spawn(crate::datanode::run(l, dn, None, stopped(stop_rx.clone())));
    }

    client_cfg.coordinator = coord_addr.clone();
    let client = Client::new(&client_cfg)?;
    let ready = wait_for_nodes(&client, nodes).await;
    let demo = match ready {
        Ok(()) => demo(&client).await,
        Err(e) => Err(e),
    };
    match &demo {
        Ok(msg) => {
            println!(
                "dfsd dev cluster: coordinator {coord_addr}, {nodes} datanodes, data in {}",
                data_dir.display()
            );
            println!("{msg}");
            if !args.demo_only {
                println!("Try, in another terminal:");
                println!(
                    "  dfsd put ./some-file /some-file && dfsd ls -l / && dfsd get /some-file -"
                );
                println!("Press Ctrl-C to stop.");
            }
        }
        Err(e) => eprintln!("dfsd dev: self-check failed: {e:#}"),
    }
    if demo.is_ok() && !args.demo_only {
        tokio::select! {
            _ = shutdown => {}
            Some(r) = tasks.join_next() => {
                r.context("server task")??;
            }
        }
    }
    let _ = stop_tx.send(true);
    while let Some(r) = tasks.join_next().await {
        r.context("server task")??;
    }
    demo.map(|_| ())
}

/// Refuses an admin address that is not loopback: without authentication every viewer of
/// the status page counts as admin. A host name is judged by every address it resolves
/// to, as binding may take any of them.
async fn check_admin_on_loopback(admin_listen: &str) -> anyhow::Result<()> {
    if admin_listen.is_empty() {
        return Ok(());
    }
    let addrs: Vec<_> = tokio::net::lookup_host(admin_listen)
        .await
        .with_context(|| format!("resolve coordinator.admin_listen {admin_listen}"))?
        .collect();
    if addrs.is_empty() || addrs.iter().any(|a| !a.ip().is_loopback()) {
        anyhow::bail!(
            "dfsd dev: coordinator.admin_listen {admin_listen}: without authentication \
             everyone who reaches the admin port counts as admin and sees every path, so the \
             dev cluster serves it only on a loopback address (127.0.0.1:9070); add --auth \
             to require access keys"
        );
    }
    Ok(())
}

/// With `--auth`: the admin key the demo uses. DFSD_ACCESS_KEY / DFSD_SECRET_KEY if set
/// (they also become the first admin key of a new cluster), else the configured first
/// admin key, else, for a new cluster, a fresh one, printed once.
fn dev_credentials(coord: &mut CoordinatorConfig, client: &mut ClientConfig) -> anyhow::Result<()> {
    if !client.access_key.is_empty() {
        if coord.admin_key_id.is_empty() {
            coord.admin_key_id = client.access_key.clone();
            coord.admin_secret = client.secret_key.clone();
        }
        return Ok(());
    }
    if !coord.admin_key_id.is_empty() {
        client.access_key = coord.admin_key_id.clone();
        client.secret_key = coord.admin_secret.clone();
        return Ok(());
    }
    let db = coord.data_dir.join(crate::coordinator::secrets::DB_NAME);
    if db.exists() {
        anyhow::bail!(
            "dfsd dev --auth: {} already has access keys: set DFSD_ACCESS_KEY and \
             DFSD_SECRET_KEY to an admin key (printed at its first start)",
            db.display()
        );
    }
    let (id, secret, _, _) = crate::security::keys::generate();
    println!(
        "dfsd dev: access keys are on; the admin key is shown only now:\n\
         DFSD_ACCESS_KEY={id}\nDFSD_SECRET_KEY={secret}"
    );
    (coord.admin_key_id, coord.admin_secret) = (id.clone(), secret.clone());
    (client.access_key, client.secret_key) = (id, secret);
    Ok(())
}

async fn wait_for_nodes(client: &Client, want: usize) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(nodes) = client.nodes().await {
            let alive = nodes
                .iter()
                .filter(|n| n.state == Some(crate::model::NodeState::Alive))
                .count();
            if alive >= want {
                return Ok(());
            }
        }
        if tokio::time::Instant::now() > deadline {
            anyhow::bail!("datanodes did not register within 20 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Stores a small file and reads it back, byte for byte.
async fn demo(client: &Client) -> anyhow::Result<String> {
    let text =
        b"Hello from dfsd: this file was chunked, hashed, replicated and read back verified.\n"
            .to_vec();
    let report = client
        .put(&text[..], "/hello.txt", &Default::default())
        .await
        .context("store /hello.txt")?;
    let mut back = Vec::new();
    client
        .get("/hello.txt", &mut back, ReadRange::default())
        .await
        .context("read /hello.txt")?;
    anyhow::ensure!(back == text, "read back different bytes");
    Ok(format!(
        "self-check: stored /hello.txt ({} bytes, {} replicas per chunk) and read it back verified:\n  {}",
        report.entry.size,
        report.entry.replication,
        String::from_utf8_lossy(&back).trim_end()
    ))
}
