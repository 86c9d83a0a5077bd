//! `--config kvstore.toml` / `KVSTORE_CONFIG`, and units in size and
//! duration flags: precedence flag > env > file > default.

use crate::support::{kv, url};
use crate::support::{request, start};

fn write_config(dir: &std::path::Path, text: &str) -> String {
    let path = dir.join("kvstore.toml");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

fn put_status(port: u16, key: &str, token: &str) -> u16 {
    let auth = format!("Bearer {token}");
    request(
        port,
        "PUT",
        &format!("/kv/{key}"),
        Some(r#"{"value": "0123456789012345678901234567890123456789"}"#),
        &[("Authorization", &auth)],
    )
    .status
}

#[test]
fn a_config_file_sets_the_server_flags_and_takes_units() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(
        tmp.path(),
        "segment_bytes = \"4KiB\"\nmax_key_bytes = 16\nsync = \"periodic\"\nsync_interval = \"250ms\"\n",
    );
    let s = start(&tmp.path().join("data"), &["--config", &cfg], &[]);
    assert_eq!(put_status(s.port, "a-key-of-twenty-byte", ""), 400);
    for i in 0..200 {
        assert_eq!(put_status(s.port, &format!("k{i}"), ""), 200);
    }
    let stats = s.req("GET", "/stats", None).json();
    // 200 records of ~60 bytes do not fit one 4 KiB segment.
    assert!(stats["segments"].as_u64().unwrap() >= 2, "{stats}");
    s.stop();
}

#[test]
fn a_flag_beats_the_environment_which_beats_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path(), "auth_token = \"file\"\nmax_key_bytes = 4\n");
    let dir = tmp.path().join("data");
    let s = start(&dir, &["--config", &cfg], &[]);
    assert_eq!(put_status(s.port, "abcd", "file"), 200);
    assert_eq!(
        put_status(s.port, "abcde", "file"),
        400,
        "file's max_key_bytes"
    );
    assert_eq!(put_status(s.port, "abcd", "env"), 401);
    s.stop();
    let s = start(
        &dir,
        &["--config", &cfg, "--max-key-bytes", "8"],
        &[("KVSTORE_AUTH_TOKEN", "env")],
    );
    assert_eq!(put_status(s.port, "abcdefgh", "env"), 200, "flag over file");
    assert_eq!(put_status(s.port, "abcd", "file"), 401, "env over file");
    s.stop();
    let s = start(
        &dir,
        &["--config", &cfg, "--auth-token", "flag"],
        &[("KVSTORE_AUTH_TOKEN", "env")],
    );
    assert_eq!(put_status(s.port, "abcd", "flag"), 200, "flag over env");
    assert_eq!(put_status(s.port, "abcd", "env"), 401);
    s.stop();
}

#[test]
fn client_commands_read_the_client_table() {
    let tmp = tempfile::tempdir().unwrap();
    let s = start(&tmp.path().join("data"), &["--auth-token", "tok"], &[]);
    let good = url(s.port);
    let cfg = write_config(
        tmp.path(),
        &format!("port = 1\n[client]\nurl = \"{good}\"\nauth_token = \"tok\"\n"),
    );
    kv(&["put", "--config", &cfg, "a", "1"], &[], None).assert(0, "");
    let d = kv(&["get", "a"], &[("KVSTORE_CONFIG", &cfg)], None);
    assert_eq!(d.assert(0, "").out, "1\n");
    // env over file, flag over env.
    let nowhere = url(crate::support::free_port());
    let env = [("KVSTORE_URL", nowhere.as_str())];
    kv(&["get", "--config", &cfg, "a"], &env, None).assert(3, &nowhere);
    kv(&["get", "--config", &cfg, "--url", &good, "a"], &env, None).assert(0, "");
    s.stop();
}

#[test]
fn a_bad_config_exits_2_with_one_line_naming_the_file_and_key() {
    let tmp = tempfile::tempdir().unwrap();
    for (text, needle) in [
        ("prot = 8080\n", "\"prot\""),
        ("segment_bytes = \"64QB\"\n", "segment_bytes"),
        ("sync = \"sometimes\"\n", "sync"),
        ("port = [1]\n", "port"),
        ("[client]\nsegment_bytes = 1\n", "client.segment_bytes"),
        ("port = \n", "line 1"),
    ] {
        let cfg = write_config(tmp.path(), text);
        let d = kv(&["--config", &cfg, "verify"], &[], None);
        d.assert(2, needle);
        assert!(d.err.contains("kvstore.toml"), "{d:?}");
    }
    let missing = tmp.path().join("nope.toml");
    kv(&["--config", missing.to_str().unwrap()], &[], None).assert(2, "nope.toml");
}

#[test]
fn size_and_duration_flags_take_units_and_plain_numbers_keep_their_meaning() {
    let tmp = tempfile::tempdir().unwrap();
    let s = start(
        &tmp.path().join("data"),
        &[
            "--segment-bytes",
            "4096",
            "--max-body-bytes",
            "1KiB",
            "--sync",
            "periodic",
            "--sync-interval-ms",
            "250",
        ],
        &[],
    );
    let big = format!(r#"{{"value": "{}"}}"#, "x".repeat(1100));
    s.req("PUT", "/kv/a", Some(&big)).assert_error(413);
    assert_eq!(s.req("PUT", "/kv/a", Some(r#"{"value": 1}"#)).status, 200);
    s.stop();
    kv(&["--segment-bytes", "64QB"], &[], None).assert(2, "unknown unit");
    kv(&["--sync-interval", "1 fortnight"], &[], None).assert(2, "unknown unit");
}
