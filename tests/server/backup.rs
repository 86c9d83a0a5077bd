//! docs/API.md "Beyond the original specification": `POST /admin/backup`.

use kvstore::engine::{Engine, Options};
use kvstore::server::ServerConfig;

use crate::common::{start, start_with};

#[actix_web::test]
async fn backup_reports_its_files_and_the_copy_holds_every_key() {
    let s = start().await;
    for i in 0..20 {
        s.set(&format!("k{i}"), &format!("{{\"n\":{i}}}")).await;
    }
    s.post("/admin/compact", "").await;
    s.set("fresh", "[1,2]").await;
    let out = tempfile::tempdir().unwrap();
    let to = out.path().join("b");
    let body = serde_json::json!({ "to": to }).to_string();
    let r = s.post("/admin/backup", &body).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["success"], true);
    assert_eq!(v["live_keys"], 21);
    let files = v["files"].as_u64().unwrap();
    assert!(files >= 2, "{}", r.body);
    assert_eq!(
        v["linked"].as_u64().unwrap() + v["copied"].as_u64().unwrap(),
        files
    );
    assert!(v["bytes"].as_u64().unwrap() > 0);
    assert!(v["elapsed_ms"].is_u64());
    // Written after the backup: not in it.
    s.set("later", "true").await;

    let (copy, _) = Engine::open(&to, Options::default()).unwrap();
    assert_eq!(
        copy.get(b"k7").unwrap().as_deref(),
        Some(&br#"{"n":7}"#[..])
    );
    assert_eq!(copy.get(b"fresh").unwrap().as_deref(), Some(&b"[1,2]"[..]));
    assert_eq!(copy.get(b"later").unwrap(), None);
    assert_eq!(copy.stats().live_keys, 21);
}

#[actix_web::test]
async fn bad_bodies_and_targets_are_400_without_paths() {
    let s = start().await;
    s.set("a", "1").await;
    for body in ["[]", "{}", r#"{"to": ""}"#, r#"{"to": 5}"#, "not json"] {
        s.post("/admin/backup", body).await.assert_error(400);
    }
    let out = tempfile::tempdir().unwrap();
    std::fs::write(out.path().join("file"), b"x").unwrap();
    let data_dir = s.state.engine().dir().to_path_buf();
    for (to, why) in [
        (out.path().to_path_buf(), "not an empty directory"),
        (out.path().join("file"), "not an empty directory"),
        (data_dir.join("inside"), "inside the data directory"),
        (
            out.path().join("no/parent"),
            "parent directory does not exist",
        ),
    ] {
        let body = serde_json::json!({ "to": to }).to_string();
        let msg = s.post("/admin/backup", &body).await.assert_error(400);
        assert!(
            msg.starts_with("backup target ") && msg.contains(why),
            "{msg}"
        );
        assert!(!msg.contains('/'), "an error names a path: {msg}");
    }
    // Nothing was made.
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 1);
    assert!(!data_dir.join("inside").exists());
}

#[actix_web::test]
async fn backup_needs_the_token() {
    let s = start_with(ServerConfig {
        auth_token: Some("s3cret".into()),
        ..ServerConfig::default()
    })
    .await;
    let out = tempfile::tempdir().unwrap();
    let to = out.path().join("b");
    let body = serde_json::json!({ "to": to }).to_string();
    s.post("/admin/backup", &body).await.assert_error(401);
    assert!(!to.exists());
}
