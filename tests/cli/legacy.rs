//! A data dir whose `wal.log` is the reference implementations' JSON lines
//! is migrated at start, served, and its original kept byte for byte.

use crate::support::start;

const LEGACY: &str = concat!(
    r#"{"op":"set","key":"a","value":{"n":1.50},"timestamp":1700000000}"#,
    "\n",
    r#"{"op":"set","key":"b","value":"x","ttl":null,"timestamp":1700000000.5}"#,
    "\n",
    r#"{"op":"set","key":"c","value":[1,2],"timestamp":1700000001000}"#,
    "\n",
    r#"{"op":"delete","key":"b","timestamp":1700000002}"#,
    "\n",
    r#"{"op":"set","key":"old","value":1,"ttl":5,"timestamp":1700000000}"#,
    "\n",
    r#"{"op":"set","key":"forever","value":true,"ttl":1e12,"timestamp":1700000000}"#,
    "\n",
);

#[test]
fn a_legacy_json_lines_wal_is_migrated_and_served() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("wal.log"), LEGACY).unwrap();
    let s = start(&dir, &[], &[]);
    assert_eq!(
        s.req("GET", "/kv/a", None).body,
        r#"{"key":"a","value":{"n":1.50}}"#
    );
    assert_eq!(
        s.req("GET", "/kv/c", None).body,
        r#"{"key":"c","value":[1,2]}"#
    );
    assert_eq!(s.req("GET", "/kv/b", None).status, 404);
    assert_eq!(
        s.req("GET", "/kv", None).body,
        r#"{"keys":["a","c","forever"]}"#
    );
    assert!(
        s.log_text().contains("migrated 6 legacy operations"),
        "{}",
        s.log_text()
    );
    assert_eq!(s.req("PUT", "/kv/new", Some(r#"{"value": 1}"#)).status, 200);
    s.stop();

    let backup = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains("legacy"))
        .expect("a backup of the legacy log");
    assert_eq!(std::fs::read_to_string(backup).unwrap(), LEGACY);

    let s = start(&dir, &[], &[]);
    assert_eq!(
        s.req("GET", "/kv", None).body,
        r#"{"keys":["a","c","forever","new"]}"#
    );
    s.stop();
}
