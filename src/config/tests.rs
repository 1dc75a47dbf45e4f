//! Tests of the configuration: defaults, the shipped example, layering and validation.

use super::*;

#[test]
fn defaults_are_valid() {
    Config::default().validate().unwrap();
}

#[test]
fn shipped_example_parses_and_is_valid() {
    let text = include_str!("../../dfsd.example.toml");
    let cfg = Config::from_toml_str(text).unwrap();
    cfg.validate().unwrap();
    // The example documents the defaults: it must not drift from them.
    assert_eq!(cfg, Config::default());
}

#[test]
fn sizes_and_durations_parse_from_strings() {
    let cfg = Config::from_toml_str(
        "[client]\nchunk_size = \"4MiB\"\n[coordinator]\ndead_after = \"45s\"\n",
    )
    .unwrap();
    assert_eq!(cfg.client.chunk_size, 4 << 20);
    assert_eq!(cfg.coordinator.dead_after, Duration::from_secs(45));
}

#[test]
fn unknown_keys_are_refused() {
    let err = Config::from_toml_str("[client]\nchunksize = 5\n").unwrap_err();
    assert!(err.to_string().contains("chunksize"), "{err}");
}

#[test]
fn validation_names_the_key() {
    let mut cfg = Config::default();
    cfg.coordinator.write_quorum = 5;
    let err = cfg.validate().unwrap_err().to_string();
    assert!(err.contains("coordinator.write_quorum"), "{err}");
}

#[test]
fn redaction_hides_every_secret_and_nothing_else() {
    let mut cfg = Config::default();
    cfg.client.access_key = "DKCLIENT000000000000".into();
    cfg.client.secret_key = "client-secret".into();
    cfg.coordinator.admin_key_id = "DKADMIN0000000000000".into();
    cfg.coordinator.admin_secret = "admin-secret".into();
    cfg.coordinator.join_secret = "coordinator-join".into();
    cfg.datanode.join_secret = "datanode-join".into();
    cfg.gateway.secret_key = "gateway-secret".into();
    let text = cfg.redacted().to_toml();
    for secret in [
        "client-secret",
        "admin-secret",
        "coordinator-join",
        "datanode-join",
        "gateway-secret",
    ] {
        assert!(!text.contains(secret), "{secret} printed:\n{text}");
    }
    assert_eq!(text.matches(REDACTED).count(), 5, "{text}");
    // Key ids are not secrets; an unset secret stays visibly unset.
    assert!(text.contains("DKCLIENT000000000000") && text.contains("DKADMIN0000000000000"));
    assert!(!Config::default().redacted().to_toml().contains(REDACTED));
}

#[test]
fn a_public_advertise_address_must_be_dialable() {
    for (addr, ok) in [
        ("127.0.0.1:17071", true),
        ("http://dn1.example:7071", true),
        ("0.0.0.0:17071", false),
        ("127.0.0.1", false),
        ("not a uri:x", false),
    ] {
        let mut cfg = Config::default();
        cfg.datanode.public_advertise = addr.into();
        let got = cfg.validate();
        assert_eq!(got.is_ok(), ok, "{addr}: {got:?}");
        if let Err(e) = got {
            assert!(e.to_string().contains("datanode.public_advertise"), "{e}");
        }
    }
}

#[test]
fn endpoint_uri_adds_scheme() {
    assert_eq!(endpoint_uri("a:1"), "http://a:1");
    assert_eq!(endpoint_uri("http://a:1"), "http://a:1");
}
