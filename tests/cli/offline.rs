//! The offline subcommands: export, import, inspect, verify, compact.

use crate::support::{run, start};

fn seeded() -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let s = start(&dir, &[], &[]);
    for (k, v) in [
        ("a", r#"{"n":1.50}"#),
        ("b%2Fc", "[true,null]"),
        ("q", "\"x\\\"y\""),
    ] {
        let r = s.req(
            "PUT",
            &format!("/kv/{k}"),
            Some(&format!(r#"{{"value": {v}}}"#)),
        );
        assert_eq!(r.status, 200);
    }
    s.stop();
    (tmp, dir)
}

#[test]
fn export_then_import_round_trips_every_key_and_value() {
    let (tmp, dir) = seeded();
    let (status, out, err) = run(&["export", "--data-dir", dir.to_str().unwrap()], &[]);
    assert!(status.success(), "{err}");
    assert_eq!(
        out,
        concat!(
            r#"{"key":"a","value":{"n":1.50}}"#,
            "\n",
            r#"{"key":"b/c","value":[true,null]}"#,
            "\n",
            r#"{"key":"q","value":"x\"y"}"#,
            "\n",
        )
    );
    let file = tmp.path().join("dump.jsonl");
    std::fs::write(&file, &out).unwrap();
    let copy = tmp.path().join("copy");
    let (status, _, err) = run(
        &[
            "import",
            "--data-dir",
            copy.to_str().unwrap(),
            "--input",
            file.to_str().unwrap(),
        ],
        &[],
    );
    assert!(status.success(), "{err}");
    let out_file = tmp.path().join("again.jsonl");
    let (status, _, err) = run(
        &[
            "export",
            "--data-dir",
            copy.to_str().unwrap(),
            "--output",
            out_file.to_str().unwrap(),
        ],
        &[],
    );
    assert!(status.success(), "{err}");
    assert_eq!(std::fs::read_to_string(out_file).unwrap(), out);
}

#[test]
fn import_refuses_a_bad_line_and_stores_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("in.jsonl");
    std::fs::write(&file, "{\"key\":\"a\",\"value\":1}\n{\"key\":\"b\"}\n").unwrap();
    let dir = tmp.path().join("data");
    let (status, _, err) = run(
        &[
            "import",
            "--data-dir",
            dir.to_str().unwrap(),
            "--input",
            file.to_str().unwrap(),
        ],
        &[],
    );
    assert!(!status.success());
    assert!(err.contains("line 2"), "{err}");
    let (_, out, _) = run(&["export", "--data-dir", dir.to_str().unwrap()], &[]);
    assert_eq!(out, "");
}

#[test]
fn inspect_prints_the_report_stats_and_files() {
    let (_tmp, dir) = seeded();
    let (status, out, err) = run(&["inspect", "--data-dir", dir.to_str().unwrap()], &[]);
    assert!(status.success(), "{err}");
    assert!(out.contains("recovery: 3 live keys"), "{out}");
    assert!(out.contains("stats: keys 3"), "{out}");
    assert!(out.contains("wal.log"), "{out}");
}

#[test]
fn inspect_of_a_missing_dir_fails_with_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("missing");
    let (status, _, err) = run(&["inspect", "--data-dir", missing.to_str().unwrap()], &[]);
    assert!(!status.success());
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(!missing.exists());
}

#[test]
fn verify_passes_a_healthy_dir() {
    let (_tmp, dir) = seeded();
    let (status, out, err) = run(&["verify", "--data-dir", dir.to_str().unwrap()], &[]);
    assert!(status.success(), "{out}{err}");
    assert!(out.contains("read 3 keys"), "{out}");
}

#[test]
fn verify_fails_on_a_flipped_byte_in_a_sealed_segment() {
    let (_tmp, dir) = seeded();
    // Seal wal.log into a segment, then damage a value byte in it.
    let (status, _, err) = run(&["compact", "--data-dir", dir.to_str().unwrap()], &[]);
    assert!(status.success(), "{err}");
    let seg = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "seg"))
        .expect("a sealed segment after compact");
    let mut bytes = std::fs::read(&seg).unwrap();
    let at = bytes
        .windows(4)
        .position(|w| w == b"true")
        .expect("the value bytes in the segment");
    bytes[at] = b'T';
    std::fs::write(&seg, bytes).unwrap();
    let (status, out, err) = run(&["verify", "--data-dir", dir.to_str().unwrap()], &[]);
    assert!(!status.success(), "{out}");
    assert!(err.contains("corrupt"), "{err}");
}

#[test]
fn compact_reports_what_it_reclaimed() {
    let (_tmp, dir) = seeded();
    let (status, out, err) = run(&["compact", "--data-dir", dir.to_str().unwrap()], &[]);
    assert!(status.success(), "{err}");
    assert!(out.contains("reclaimed"), "{out}");
    let (_, out, _) = run(&["export", "--data-dir", dir.to_str().unwrap()], &[]);
    assert_eq!(out.lines().count(), 3);
}

/// Every file of `dir`: name, length, mtime and bytes.
fn snapshot(dir: &std::path::Path) -> Vec<(String, u64, std::time::SystemTime, Vec<u8>)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                m.len(),
                m.modified().unwrap(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

/// Sets the mode of `dir` and every file in it.
fn chmod_all(dir: &std::path::Path, file_mode: u32, dir_mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(file_mode)).unwrap();
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(dir_mode)).unwrap();
}

#[test]
fn verify_inspect_and_export_leave_a_read_only_copy_with_a_torn_tail_as_it_is() {
    let (_tmp, dir) = seeded();
    // A write torn by a crash: three bytes that are no whole record.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.join("wal.log"))
        .unwrap();
    std::io::Write::write_all(&mut f, b"\x01\x02\x03").unwrap();
    drop(f);
    chmod_all(&dir, 0o444, 0o555);
    // Root ignores the modes: comparing every file catches any write anyway.
    let before = snapshot(&dir);
    let d = dir.to_str().unwrap();

    let (status, out, err) = run(&["verify", "--data-dir", d], &[]);
    assert!(status.success(), "{out}{err}");
    assert!(out.contains("torn tail: the last 3 bytes"), "{out}");
    assert!(out.contains("read 3 keys"), "{out}");
    let (status, out, err) = run(&["inspect", "--data-dir", d], &[]);
    assert!(status.success(), "{out}{err}");
    assert!(out.contains("stats: keys 3"), "{out}");
    let (status, out, err) = run(&["export", "--data-dir", d], &[]);
    assert!(status.success(), "{err}");
    assert_eq!(out.lines().count(), 3, "{out}");

    assert_eq!(
        snapshot(&dir),
        before,
        "an offline tool changed the directory"
    );
    chmod_all(&dir, 0o644, 0o755);
}
