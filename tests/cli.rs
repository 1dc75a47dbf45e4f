//! The command line as a user meets it, through the real binary: `--help` lists a
//! command's own flags before the global options, in words that fit the command, and a
//! flag beats the `DFSD_*` environment, which beats the config file.

use std::process::{Command, Output};

use dfsd::config::Config;

const BIN: &str = env!("CARGO_BIN_EXE_dfsd");

/// Configuration variables a caller's environment might set; each test sets its own.
const CONFIG_ENV: [&str; 5] = [
    "DFSD_CONFIG",
    "DFSD_COORDINATOR",
    "DFSD_LOG_LEVEL",
    "DFSD_TLS__CA",
    "DFSD_TLS__PLAINTEXT",
];

fn dfsd(env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut cmd = Command::new(BIN);
    for k in CONFIG_ENV {
        cmd.env_remove(k);
    }
    let out = cmd.envs(env.iter().copied()).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "dfsd {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn help(args: &[&str]) -> String {
    String::from_utf8(dfsd(&[], args).stdout).unwrap()
}

const GLOBAL_FLAGS: [&str; 8] = [
    "--config",
    "--coordinator",
    "--log-level",
    "--tls-ca",
    "--tls-cert",
    "--tls-key",
    "--plaintext",
    "--log-format",
];

/// Splits a help text at its "Global options:" heading.
fn split_at_global_heading(help: &str) -> (&str, &str) {
    let at = help
        .find("\nGlobal options:\n")
        .unwrap_or_else(|| panic!("no \"Global options:\" heading in:\n{help}"));
    help.split_at(at)
}

#[test]
fn put_help_lists_its_own_flags_first_and_the_global_options_in_client_words() {
    let text = help(&["put", "--help"]);
    let (own, global) = split_at_global_heading(&text);
    for flag in [
        "--no-clobber",
        "--replication",
        "--write-quorum",
        "--chunk-size",
        "--quiet",
    ] {
        assert!(own.contains(flag), "{flag} before the heading:\n{text}");
    }
    for flag in GLOBAL_FLAGS {
        assert!(!own.contains(flag), "{flag} before the heading:\n{text}");
        assert!(global.contains(flag), "{flag} under the heading:\n{text}");
    }
    assert!(global.contains("Connect without TLS"), "{text}");
    assert!(!text.contains("Serve without TLS"), "{text}");
}

#[test]
fn servers_serve_without_tls_and_nested_client_commands_connect() {
    for role in ["coordinator", "datanode", "gateway", "dev"] {
        let text = help(&[role, "--help"]);
        let (_, global) = split_at_global_heading(&text);
        assert!(global.contains("Serve without TLS"), "{role}:\n{text}");
        assert!(!text.contains("Connect without TLS"), "{role}:\n{text}");
    }
    let text = help(&["key", "create", "--help"]);
    let (own, global) = split_at_global_heading(&text);
    assert!(own.contains("--name") && own.contains("--prefix"), "{text}");
    assert!(global.contains("Connect without TLS"), "{text}");
}

#[test]
fn a_flag_beats_the_environment_which_beats_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(
        &file,
        "log_level = \"warn\"\n[client]\ncoordinator = \"10.0.0.1:7070\"\n\
         [tls]\nca = \"file-ca.pem\"\n",
    )
    .unwrap();
    let file = file.to_str().unwrap();
    let config = |env: &[(&str, &str)], flags: &[&str]| {
        let mut args = vec!["--config", file];
        args.extend_from_slice(flags);
        args.push("config");
        let out = dfsd(env, &args);
        let c = Config::from_toml_str(&String::from_utf8(out.stdout).unwrap()).unwrap();
        (c.log_level, c.client.coordinator, c.tls.ca)
    };
    let owned = |a: &str, b: &str, c: &str| (a.to_string(), b.to_string(), c.to_string());

    assert_eq!(
        config(&[], &[]),
        owned("warn", "10.0.0.1:7070", "file-ca.pem")
    );
    let env = [
        ("DFSD_LOG_LEVEL", "info"),
        ("DFSD_COORDINATOR", "10.0.0.2:7070"),
        ("DFSD_TLS__CA", "env-ca.pem"),
    ];
    assert_eq!(
        config(&env, &[]),
        owned("info", "10.0.0.2:7070", "env-ca.pem")
    );
    let flags = [
        "--log-level",
        "debug",
        "--coordinator",
        "10.0.0.3:7070",
        "--tls-ca",
        "flag-ca.pem",
    ];
    assert_eq!(
        config(&env, &flags),
        owned("debug", "10.0.0.3:7070", "flag-ca.pem")
    );
    // Only the flags given win: the others keep the environment's values.
    assert_eq!(
        config(&env, &["--tls-ca", "flag-ca.pem"]),
        owned("info", "10.0.0.2:7070", "flag-ca.pem")
    );
}
