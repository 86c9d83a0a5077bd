//! Configuration and start-up failures: env and flags, and one clear line
//! with a non-zero exit for a bad flag, an unusable dir, a busy port, a
//! locked dir.

use std::time::Duration;

use crate::support::{BIN, free_port, request, run, start};

fn assert_one_clear_line(stderr: &str, needle: &str) {
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!stderr.contains("backtrace"), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with("kvstore: "), "{stderr}");
    assert!(last.contains(needle), "{needle:?} not in {last:?}");
}

#[test]
fn port_and_data_dir_come_from_the_environment() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("nested").join("data");
    let port = free_port();
    let mut child = std::process::Command::new(BIN)
        .env("PORT", port.to_string())
        .env("DATA_DIR", &dir)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut ok = false;
    for _ in 0..200 {
        if let Ok(r) =
            crate::support::try_request(port, "PUT", "/kv/a", Some(r#"{"value":1}"#), &[])
        {
            ok = r.status == 200;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(ok, "server on PORT did not answer");
    assert!(
        dir.join("wal.log").exists(),
        "DATA_DIR was created and used"
    );
}

#[test]
fn the_port_flag_overrides_the_environment() {
    let tmp = tempfile::tempdir().unwrap();
    // support::start passes --port; PORT points elsewhere.
    let s = start(&tmp.path().join("data"), &[], &[("PORT", "1")]);
    assert_eq!(request(s.port, "GET", "/health", None, &[]).status, 200);
    s.stop();
}

#[test]
fn the_data_dir_flag_overrides_the_environment() {
    let tmp = tempfile::tempdir().unwrap();
    let from_env = tmp.path().join("env-dir");
    let from_flag = tmp.path().join("flag-dir");
    let s = start(&from_env, &["--data-dir", from_flag.to_str().unwrap()], &[]);
    assert_eq!(s.req("PUT", "/kv/a", Some(r#"{"value": 1}"#)).status, 200);
    s.stop();
    assert!(from_flag.join("wal.log").exists());
    assert!(!from_env.exists());
}

#[test]
fn serve_is_also_an_explicit_subcommand() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let port = free_port();
    let mut child = std::process::Command::new(BIN)
        .args([
            "serve",
            "--port",
            &port.to_string(),
            "--data-dir",
            dir.to_str().unwrap(),
        ])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut status = 0;
    for _ in 0..200 {
        if let Ok(r) = crate::support::try_request(port, "GET", "/health", None, &[]) {
            status = r.status;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(status, 200);
}

#[test]
fn a_bad_flag_exits_2_with_one_line() {
    for args in [
        &["--bogus"][..],
        &["--sync", "sometimes"],
        &["--port", "99999"],
    ] {
        let (status, _, stderr) = run(args, &[]);
        assert_eq!(status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert_one_clear_line(&stderr, "");
    }
}

#[test]
fn an_unusable_data_dir_exits_non_zero_with_one_clear_line() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("a-file");
    std::fs::write(&file, "not a dir").unwrap();
    let port = free_port().to_string();
    let (status, _, stderr) = run(
        &["--port", &port, "--data-dir", file.to_str().unwrap()],
        &[],
    );
    assert!(!status.success());
    assert_one_clear_line(&stderr, "a-file");
}

#[test]
fn a_port_in_use_exits_non_zero_with_one_clear_line() {
    let tmp = tempfile::tempdir().unwrap();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port().to_string();
    let dir = tmp.path().join("data");
    let (status, _, stderr) = run(&["--port", &port, "--data-dir", dir.to_str().unwrap()], &[]);
    assert!(!status.success());
    assert_one_clear_line(&stderr, "cannot listen on");
}

#[test]
fn a_data_dir_locked_by_another_server_exits_non_zero_with_one_clear_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let s = start(&dir, &[], &[]);
    let port = free_port().to_string();
    let (status, _, stderr) = run(&["--port", &port, "--data-dir", dir.to_str().unwrap()], &[]);
    assert!(!status.success());
    assert_one_clear_line(&stderr, "already open");
    assert_eq!(
        s.req("GET", "/health", None).status,
        200,
        "the first server is unharmed"
    );
    s.stop();
}

#[test]
fn invalid_option_values_are_refused_before_opening() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let d = dir.to_str().unwrap();
    for args in [
        &["--data-dir", d, "--segment-bytes", "10"][..],
        &["--data-dir", d, "--compaction-ratio", "2"],
        &[
            "--data-dir",
            d,
            "--sync",
            "periodic",
            "--sync-interval-ms",
            "0",
        ],
        &["--data-dir", d, "--workers", "0"],
        &["--data-dir", d, "--compaction-threads", "0"],
    ] {
        let (status, _, stderr) = run(args, &[]);
        assert!(!status.success(), "{args:?}");
        assert_one_clear_line(&stderr, "invalid");
    }
    assert!(!dir.exists(), "nothing was created");
}
