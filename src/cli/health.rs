//! `dfsd health`: one line, exit 0 when the server answers a cheap call, 1 otherwise (for
//! container health checks; `--local` checks the role this container runs).

use super::args::HealthArgs;
use crate::client::Client;
use crate::config::Config;
use crate::security::Tls;

/// Loopback address of a server listening on `listen` (a wildcard becomes 127.0.0.1).
fn local_addr(listen: &str) -> String {
    match listen.rsplit_once(':') {
        Some((host, port)) if host.is_empty() || host == "0.0.0.0" || host == "[::]" => {
            format!("127.0.0.1:{port}")
        }
        _ => listen.to_string(),
    }
}

/// `dfsd health [--datanode ADDR | --local] [--timeout D]`.
pub async fn command(mut cfg: Config, a: &HealthArgs) -> anyhow::Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wildcard_listen_address_is_checked_on_loopback() {
        assert_eq!(local_addr("0.0.0.0:7070"), "127.0.0.1:7070");
        assert_eq!(local_addr(":7071"), "127.0.0.1:7071");
        assert_eq!(local_addr("[::]:7072"), "127.0.0.1:7072");
        assert_eq!(local_addr("10.0.0.5:7070"), "10.0.0.5:7070");
    }
}
