//! `kvstore backup`: offline (`--data-dir`) and through a server (`--url`);
//! the backup directory is then served as it is and answers reads.

use crate::support::{kv, start, url};

/// A data dir written by a server, which is stopped again.
fn seeded(tmp: &std::path::Path) -> std::path::PathBuf {
    let dir = tmp.join("data");
    let s = start(&dir, &[], &[]);
    for i in 0..30 {
        let body = format!(r#"{{"value": {{"n": {i}}}}}"#);
        assert_eq!(s.req("PUT", &format!("/kv/k{i}"), Some(&body)).status, 200);
    }
    assert_eq!(s.req("DELETE", "/kv/k3", None).status, 200);
    assert_eq!(s.req("POST", "/admin/compact", None).status, 200);
    assert_eq!(
        s.req("PUT", "/kv/fresh", Some(r#"{"value": "in wal.log"}"#))
            .status,
        200
    );
    s.stop();
    dir
}

/// Serves `dir` and checks the keys `seeded` left.
fn assert_serves_the_seeded_keys(dir: &std::path::Path) {
    let s = start(dir, &[], &[]);
    let r = s.req("GET", "/kv/k7", None);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, r#"{"key":"k7","value":{"n":7}}"#);
    assert_eq!(
        s.req("GET", "/kv/fresh", None).body,
        r#"{"key":"fresh","value":"in wal.log"}"#
    );
    assert_eq!(s.req("GET", "/kv/k3", None).status, 404);
    assert_eq!(s.req("GET", "/stats", None).json()["keys"], 30);
    s.stop();
}

#[test]
fn offline_backup_serves_as_it_is() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = seeded(tmp.path());
    let to = tmp.path().join("backup");
    let done = kv(
        &[
            "backup",
            "--data-dir",
            dir.to_str().unwrap(),
            "--to",
            to.to_str().unwrap(),
        ],
        &[],
        None,
    );
    done.assert(0, "");
    assert!(done.out.starts_with("backed up "), "{done:?}");
    assert!(done.out.contains("30 live keys"), "{done:?}");
    assert_serves_the_seeded_keys(&to);
    // The source still serves too, unchanged.
    assert_serves_the_seeded_keys(&dir);
}

#[test]
fn offline_backup_of_a_served_dir_points_at_url_and_url_works() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = seeded(tmp.path());
    let s = start(&dir, &["--auth-token", "s3cret"], &[]);
    let to = tmp.path().join("backup");
    let to_arg = to.to_str().unwrap();
    kv(
        &[
            "backup",
            "--data-dir",
            dir.to_str().unwrap(),
            "--to",
            to_arg,
        ],
        &[],
        None,
    )
    .assert(3, "--url");
    assert!(!to.exists());
    let base = url(s.port);
    kv(&["backup", "--url", &base, "--to", to_arg], &[], None).assert(3, "401");
    let done = kv(
        &[
            "backup",
            "--url",
            &base,
            "--auth-token",
            "s3cret",
            "--to",
            to_arg,
        ],
        &[],
        None,
    );
    done.assert(0, "");
    assert!(done.out.contains("30 live keys"), "{done:?}");
    // Written after the backup: served by the store, not by the backup.
    let put = crate::support::request(
        s.port,
        "PUT",
        "/kv/later",
        Some(r#"{"value": 1}"#),
        &[("Authorization", "Bearer s3cret")],
    );
    assert_eq!(put.status, 200);
    s.stop();
    assert_serves_the_seeded_keys(&to);
    let b = start(&to, &[], &[]);
    assert_eq!(b.req("GET", "/kv/later", None).status, 404);
    b.stop();
}

#[test]
fn a_target_that_cannot_be_used_exits_2_both_ways() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = seeded(tmp.path());
    let full = tmp.path().join("full");
    std::fs::create_dir(&full).unwrap();
    std::fs::write(full.join("x"), b"x").unwrap();
    let full_arg = full.to_str().unwrap();
    kv(
        &[
            "backup",
            "--data-dir",
            dir.to_str().unwrap(),
            "--to",
            full_arg,
        ],
        &[],
        None,
    )
    .assert(2, "not an empty directory");
    let inside = dir.join("b");
    kv(
        &[
            "backup",
            "--data-dir",
            dir.to_str().unwrap(),
            "--to",
            inside.to_str().unwrap(),
        ],
        &[],
        None,
    )
    .assert(2, "inside the data directory");
    let s = start(&dir, &[], &[]);
    kv(
        &["backup", "--url", &url(s.port), "--to", full_arg],
        &[],
        None,
    )
    .assert(2, "not an empty directory");
    s.stop();
    assert_eq!(std::fs::read_dir(&full).unwrap().count(), 1);
    assert!(!inside.exists());
}
