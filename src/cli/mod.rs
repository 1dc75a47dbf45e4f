//! The command line in one place: argument definitions (`args`), flags as the last layer
//! of the configuration (`flags`), and every client command, printing what the SDK
//! returns: files (`files`), cluster state (`cluster`), `health`, `events`, `keys`,
//! `certs`, `buckets`, with `progress` bars for transfers. `main.rs` parses with
//! [`parse`], loads the config with [`flags::Flags`] on top, then runs a server role or
//! hands the command to [`run`].

mod args;
mod buckets;
mod certs;
mod cluster;
mod events;
mod files;
pub mod flags;
mod health;
mod keys;
mod progress;

use clap::{CommandFactory, FromArgMatches};

pub use args::*;

use crate::client::Client;
use crate::config::Config;
use crate::security::Tls;

/// What `--plaintext` means to a server role.
const SERVE_PLAINTEXT: &str = "Serve without TLS (no encryption, members not authenticated); \
    for trusted test networks only [env: DFSD_TLS__PLAINTEXT]";
/// What it means to every other command.
const CONNECT_PLAINTEXT: &str =
    "Connect without TLS (no encryption, the server not authenticated) [env: DFSD_TLS__PLAINTEXT]";

/// The clap command: [`Cli`] with the wording of `--plaintext` fitted to each subcommand
/// (clap copies a global option's help unchanged into every subcommand).
pub fn command() -> clap::Command {
    let cmd = Cli::command();
    let plaintext = cmd
        .get_arguments()
        .find(|a| a.get_id() == "plaintext")
        .cloned()
        .expect("--plaintext is defined");
    let names: Vec<String> = cmd
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .collect();
    names.into_iter().fold(cmd, |cmd, name| {
        let help = if SERVER_ROLES.contains(&name.as_str()) {
            SERVE_PLAINTEXT
        } else {
            CONNECT_PLAINTEXT
        };
        // A subcommand's own copy of a global option keeps clap from propagating the
        // root's; values still reach `Cli::plaintext`.
        let own = plaintext.clone().help(help);
        cmd.mut_subcommand(name, |sc| sc.arg(own))
    })
}

/// Parses the process's arguments (after [`rewrite_role_args`]); prints help, the version
/// or a usage error and exits as clap does.
pub fn parse() -> Cli {
    let args = rewrite_role_args(std::env::args().collect());
    let matches = command().get_matches_from(args);
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.format(&mut command()).exit())
}

/// Runs a command other than a server role.
pub async fn run(command: Command, cfg: Config) -> anyhow::Result<()> {
    match command {
        Command::Config => {
            // Secrets are shown as "<redacted>": this output ends up in tickets and chats.
            print!("{}", cfg.redacted().to_toml());
            return Ok(());
        }
        Command::Health(a) => return health::command(cfg, &a).await,
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut self::command(), "dfsd", &mut std::io::stdout());
            return Ok(());
        }
        Command::Cert(c) if c.is_local() => return certs::local(c),
        _ => {}
    }
    let client = Client::connect(&cfg.client, Tls::load(&cfg.tls)?.as_ref())?;
    match command {
        Command::Put(a) => files::put(&client, &a).await,
        Command::Get(a) => files::get(&client, &a).await,
        Command::Ls(a) => files::ls(&client, &a).await,
        Command::Stat(a) => files::stat(&client, &a.path, a.json).await,
        Command::Rm(a) => files::rm(&client, &a).await,
        Command::Mv(a) => files::mv(&client, &a).await,
        Command::Mkdir(a) => files::mkdir(&client, &a).await,
        Command::Nodes(a) => cluster::nodes(&client, a.json).await,
        Command::Status(a) => cluster::status(&client, a.json).await,
        Command::Fsck(a) => cluster::fsck(&client, &a).await,
        Command::Node(n) => cluster::node(&client, n).await,
        Command::Key(k) => keys::command(&client, k).await,
        Command::Events(a) => events::command(&client, &a).await,
        Command::Cert(c) => certs::remote(&client, c).await,
        Command::Bucket(b) => buckets::command(&client, b).await,
        // Server roles are run by `main`, the commands above without a client.
        other => anyhow::bail!("{other:?} is not a client command"),
    }
}

/// `dfsd --role X ...` is `dfsd X ...`: moves the role to the subcommand position. With no
/// subcommand at all, `DFSD_ROLE` picks one (handy in containers).
pub fn rewrite_role_args(mut args: Vec<String>) -> Vec<String> {
    let subcommands: Vec<String> = Cli::command()
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .collect();
    let mut role = None;
    let mut i = 1;
    while i < args.len() {
        // A subcommand's own --role (e.g. `key create --role readonly`) is not ours.
        if subcommands.contains(&args[i]) {
            break;
        }
        if args[i] == "--role" && i + 1 < args.len() {
            role = Some(args[i + 1].clone());
            args.drain(i..i + 2);
            break;
        } else if let Some(r) = args[i].strip_prefix("--role=") {
            role = Some(r.to_string());
            args.remove(i);
            break;
        }
        i += 1;
    }
    if role.is_none() && args.len() <= 1 {
        role = std::env::var("DFSD_ROLE").ok().filter(|r| !r.is_empty());
    }
    if let Some(r) = role {
        args.insert(1.min(args.len()), r);
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn role_flag_becomes_the_subcommand() {
        assert_eq!(
            rewrite_role_args(v(&["dfsd", "--role", "datanode", "--join", "a:1"])),
            v(&["dfsd", "datanode", "--join", "a:1"])
        );
        assert_eq!(
            rewrite_role_args(v(&["dfsd", "--role=coordinator"])),
            v(&["dfsd", "coordinator"])
        );
        assert_eq!(
            rewrite_role_args(v(&["dfsd", "ls", "/"])),
            v(&["dfsd", "ls", "/"])
        );
        let key = v(&["dfsd", "key", "create", "--name", "n", "--role", "readonly"]);
        assert_eq!(rewrite_role_args(key.clone()), key);
    }

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
        command().debug_assert();
    }
}
