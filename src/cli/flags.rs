//! Command-line flags as the last layer of the configuration (defaults < TOML < `DFSD_*`
//! environment < flags): the flags given, and only those, serialized into the shape of
//! [`Config`](crate::config::Config) and merged by figment like the other layers.

use std::path::PathBuf;

use figment::providers::Serialized;
use serde::Serialize;

use super::args::{Cli, Command};

/// The flags of one command line that set configuration keys; a flag not given is left
/// out, so the layers below it show through.
#[derive(Debug, Default, Serialize)]
pub struct Flags {
    #[serde(skip_serializing_if = "Option::is_none")]
    log_level: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    log_format: Option<String>,
    client: ClientFlags,
    tls: TlsFlags,
    coordinator: CoordinatorFlags,
    datanode: DatanodeFlags,
    gateway: GatewayFlags,
}

#[derive(Debug, Default, Serialize)]
struct ClientFlags {
    #[serde(skip_serializing_if = "Option::is_none")]
    coordinator: Option<String>,
}

#[derive(Debug, Default, Serialize)]
struct TlsFlags {
    #[serde(skip_serializing_if = "Option::is_none")]
    ca: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cert: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    plaintext: Option<bool>,
}

#[derive(Debug, Default, Serialize)]
struct CoordinatorFlags {
    #[serde(skip_serializing_if = "Option::is_none")]
    listen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    admin_listen: Option<String>,
}

#[derive(Debug, Default, Serialize)]
struct DatanodeFlags {
    #[serde(skip_serializing_if = "Option::is_none")]
    join: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    listen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    advertise: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    public_advertise: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    capacity: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    admin_listen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    join_secret: Option<String>,
}

#[derive(Debug, Default, Serialize)]
struct GatewayFlags {
    #[serde(skip_serializing_if = "Option::is_none")]
    listen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_cert: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    plaintext_s3: Option<bool>,
}

impl Flags {
    /// The configuration flags of `cli`: the global ones and those of a server role. A
    /// switch (`--plaintext`) sets its key only when given: leaving it out never turns
    /// off what the file or the environment turned on.
    pub fn of(cli: &Cli) -> Flags {
        let mut f = Flags {
            log_level: cli.log_level.clone(),
            log_format: cli.log_format.clone(),
            client: ClientFlags {
                coordinator: cli.coordinator.clone(),
            },
            tls: TlsFlags {
                ca: cli.tls_ca.clone(),
                cert: cli.tls_cert.clone(),
                key: cli.tls_key.clone(),
                plaintext: cli.plaintext.then_some(true),
            },
            ..Flags::default()
        };
        match &cli.command {
            Some(Command::Coordinator(a)) => {
                f.coordinator = CoordinatorFlags {
                    listen: a.listen.clone(),
                    data_dir: a.data_dir.clone(),
                    admin_listen: a.admin_listen.clone(),
                }
            }
            Some(Command::Datanode(a)) => {
                f.datanode = DatanodeFlags {
                    join: a.join.clone(),
                    listen: a.listen.clone(),
                    advertise: a.advertise.clone(),
                    public_advertise: a.public_advertise.clone(),
                    data_dir: a.data_dir.clone(),
                    capacity: a.capacity,
                    admin_listen: a.admin_listen.clone(),
                    join_secret: a.join_secret.clone(),
                }
            }
            Some(Command::Gateway(a)) => {
                f.gateway = GatewayFlags {
                    listen: a.listen.clone(),
                    tls_cert: a.s3_tls_cert.clone(),
                    tls_key: a.s3_tls_key.clone(),
                    plaintext_s3: a.plaintext_s3.then_some(true),
                }
            }
            _ => {}
        }
        f
    }

    /// The figment layer to merge last.
    pub fn provider(self) -> Serialized<Flags> {
        Serialized::defaults(self)
    }
}

#[cfg(test)]
mod tests {
    use clap::FromArgMatches;
    use figment::providers::{Format, Toml};
    use figment::Figment;

    use super::*;
    use crate::config::Config;

    /// Defaults < `toml` < the flags of `args`, as `Config::load` merges them.
    fn merged(toml: &str, args: &[&str]) -> Config {
        let matches = super::super::command().get_matches_from(args);
        let cli = Cli::from_arg_matches(&matches).unwrap();
        Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string(toml))
            .merge(Flags::of(&cli).provider())
            .extract()
            .unwrap()
    }

    #[test]
    fn role_flags_beat_the_file_and_absent_ones_leave_it() {
        let file = "[datanode]\nlisten = \"0.0.0.0:1\"\ncapacity = \"1GiB\"\njoin = \"c:1\"\n\
                    [tls]\nplaintext = true\n";
        let c = merged(
            file,
            &[
                "dfsd",
                "datanode",
                "--listen",
                "127.0.0.1:2",
                "--capacity",
                "2GiB",
            ],
        );
        assert_eq!(c.datanode.listen, "127.0.0.1:2");
        assert_eq!(c.datanode.capacity, 2 << 30);
        assert_eq!(
            c.datanode.join, "c:1",
            "a flag not given leaves the file's value"
        );
        assert!(
            c.tls.plaintext,
            "no --plaintext does not turn the file's off"
        );

        let c = merged(
            "[gateway]\nlisten = \"0.0.0.0:9\"\n",
            &[
                "dfsd",
                "gateway",
                "--plaintext-s3",
                "--listen",
                "127.0.0.1:9",
            ],
        );
        assert_eq!(
            (c.gateway.listen.as_str(), c.gateway.plaintext_s3),
            ("127.0.0.1:9", true)
        );
        let c = merged(
            "[coordinator]\ndata_dir = \"/a\"\n",
            &["dfsd", "coordinator", "--data-dir", "/b", "--plaintext"],
        );
        assert_eq!(c.coordinator.data_dir, PathBuf::from("/b"));
        assert!(c.tls.plaintext);
    }

    #[test]
    fn global_flags_reach_their_keys_before_or_after_the_command() {
        for args in [
            &["dfsd", "--tls-ca", "ca.pem", "--log-format", "json", "ls"][..],
            &["dfsd", "ls", "--tls-ca", "ca.pem", "--log-format", "json"][..],
        ] {
            let c = merged("[tls]\nca = \"file.pem\"\n", args);
            assert_eq!(
                (c.tls.ca.as_str(), c.log_format.as_str()),
                ("ca.pem", "json")
            );
        }
        let c = merged("", &["dfsd", "ls", "--plaintext"]);
        assert!(c.tls.plaintext);
        let c = merged("", &["dfsd", "--plaintext", "ls"]);
        assert!(c.tls.plaintext);
        // Role flags of one role do not leak into another's section.
        let c = merged("", &["dfsd", "coordinator", "--listen", "127.0.0.1:5"]);
        assert_eq!(c.datanode.listen, Config::default().datanode.listen);
    }
}
