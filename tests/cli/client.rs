//! `kvstore get/put/delete/list/batch/stats` against a running server
//! (`--url`) and directly on a data directory (`--data-dir`): same output,
//! exit codes 0 found, 1 not found, 2 usage, 3 failure.

use crate::support::{Server, start};
use crate::support::{kv, url};

fn server() -> (tempfile::TempDir, Server, String) {
    let tmp = tempfile::tempdir().unwrap();
    let s = start(&tmp.path().join("data"), &[], &[]);
    let u = url(s.port);
    (tmp, s, u)
}

#[test]
fn put_then_get_prints_the_value_exactly_as_stored() {
    let (_tmp, s, u) = server();
    let put = |k: &str, v: &str, extra: &[&str]| {
        let mut args = vec!["put", "--url", &u, k, v];
        args.extend_from_slice(extra);
        kv(&args, &[], None)
    };
    assert_eq!(
        put("j", r#"{ "n": 1.50, "l": [true, null] }"#, &[]).out,
        "created\n"
    );
    assert_eq!(
        put("j", r#"{ "n": 1.50, "l": [true, null] }"#, &[]).out,
        "updated\n"
    );
    put("s", "hello world", &[]).assert(0, "");
    put("n", "42", &["--string"]).assert(0, "");
    put("neg", "-5", &[]).assert(0, "");
    let get = |k: &str| kv(&["get", "--url", &u, k], &[], None);
    assert_eq!(
        get("j").assert(0, "").out,
        "{\"n\":1.50,\"l\":[true,null]}\n"
    );
    assert_eq!(get("s").out, "\"hello world\"\n");
    assert_eq!(get("n").out, "\"42\"\n");
    assert_eq!(get("neg").out, "-5\n");
    // What the CLI stored is what any HTTP client reads.
    assert_eq!(
        s.req("GET", "/kv/s", None).body,
        r#"{"key":"s","value":"hello world"}"#
    );
    s.stop();
}

#[test]
fn a_missing_key_exits_1_and_other_failures_exit_3() {
    let (_tmp, s, u) = server();
    kv(&["get", "--url", &u, "nope"], &[], None).assert(1, "key not found: nope");
    kv(&["delete", "--url", &u, "nope"], &[], None).assert(1, "key not found: nope");
    kv(&["put", "--url", &u, "a", "1"], &[], None).assert(0, "");
    assert_eq!(
        kv(&["delete", "--url", &u, "a"], &[], None).out,
        "deleted\n"
    );
    kv(&["get", "--url", &u, "a"], &[], None).assert(1, "key not found");
    // A key longer than the server allows: the server's message, exit 3.
    let long = "k".repeat(2000);
    kv(&["put", "--url", &u, &long, "1"], &[], None).assert(3, "400");
    s.stop();
}

#[test]
fn usage_errors_exit_2_with_one_line() {
    kv(&["get"], &[], None).assert(2, "<KEY>");
    kv(&["put", "k"], &[], None).assert(2, "<VALUE>");
    kv(&["list", "--limit", "0"], &[], None).assert(2, "--limit");
    kv(&["put", "k", "1", "--ttl", "5 fortnights"], &[], None).assert(2, "--ttl");
    kv(&["get", "--url", "https://127.0.0.1:1", "k"], &[], None).assert(2, "https");
    kv(&["get", "--url", "127.0.0.1:1", "k"], &[], None).assert(2, "http://");
}

#[test]
fn no_server_at_the_url_exits_3_naming_it() {
    let port = crate::support::free_port();
    let u = url(port);
    let d = kv(&["get", "k"], &[("KVSTORE_URL", &u)], None);
    d.assert(3, &u);
    assert!(d.err.contains("--data-dir"), "{d:?}");
}

#[test]
fn keys_with_slashes_spaces_percent_and_unicode_reach_the_server_as_typed() {
    let (_tmp, s, u) = server();
    for key in ["a/b", "with space", "100%", "q?x=1&y", "é☃", "%2F"] {
        kv(&["put", "--url", &u, key, "1"], &[], None).assert(0, "");
        kv(&["get", "--url", &u, key], &[], None).assert(0, "");
    }
    // `%2F` typed as a key is three characters, not a slash.
    assert_eq!(s.req("GET", "/kv/%252F", None).status, 200);
    assert_eq!(s.req("GET", "/kv/a%2Fb", None).status, 200);
    let listed = kv(&["list", "--url", &u], &[], None);
    let mut want = vec!["%2F", "100%", "a/b", "q?x=1&y", "with space", "é☃"];
    want.sort();
    assert_eq!(listed.out.lines().collect::<Vec<_>>(), want);
    s.stop();
}

#[test]
fn list_pages_through_every_key_and_honours_prefix_and_limit() {
    let (tmp, s, u) = server();
    // More keys than one listing request returns (1000).
    let ops: Vec<String> = (0..2500)
        .map(|i| format!(r#"{{"op":"set","key":"k{i:05}","value":{i}}}"#))
        .chain((0..3).map(|i| format!(r#"{{"op":"set","key":"other{i}","value":0}}"#)))
        .collect();
    let file = tmp.path().join("seed.json");
    std::fs::write(&file, format!(r#"{{"operations":[{}]}}"#, ops.join(","))).unwrap();
    kv(&["batch", "--url", &u, file.to_str().unwrap()], &[], None).assert(0, "");
    let all = kv(&["list", "--url", &u, "--prefix", "k"], &[], None);
    let keys: Vec<&str> = all.out.lines().collect();
    assert_eq!(keys.len(), 2500);
    assert_eq!(keys[0], "k00000");
    assert_eq!(keys[2499], "k02499");
    assert!(keys.windows(2).all(|w| w[0] < w[1]));
    let some = kv(&["list", "--url", &u, "--limit", "1200"], &[], None);
    assert_eq!(some.out.lines().count(), 1200);
    let other = kv(&["list", "--url", &u, "--prefix", "other"], &[], None);
    assert_eq!(other.out, "other0\nother1\nother2\n");
    s.stop();
}

#[test]
fn a_batch_file_runs_as_one_batch_with_one_result_per_line() {
    let (tmp, s, u) = server();
    let file = tmp.path().join("b.json");
    std::fs::write(
        &file,
        r#"{"operations": [
            {"op": "set", "key": "a", "value": {"x": 1}},
            {"op": "get", "key": "a"},
            {"op": "delete", "key": "missing"},
            {"op": "set", "key": "t", "value": 2, "ttl": 60}
        ]}"#,
    )
    .unwrap();
    let d = kv(&["batch", "--url", &u, file.to_str().unwrap()], &[], None);
    assert_eq!(
        d.assert(0, "").out,
        concat!(
            "{\"success\":true,\"created\":true}\n",
            "{\"key\":\"a\",\"value\":{\"x\":1}}\n",
            "{\"error\":\"key not found\"}\n",
            "{\"success\":true,\"created\":true}\n",
        )
    );
    // From stdin, too.
    let d = kv(
        &["batch", "--url", &u, "-"],
        &[],
        Some(r#"{"operations":[{"op":"get","key":"t"}]}"#),
    );
    assert_eq!(d.out, "{\"key\":\"t\",\"value\":2}\n");
    s.stop();
}

#[test]
fn a_bad_batch_file_names_the_operation_and_applies_nothing() {
    let (tmp, s, u) = server();
    let file = tmp.path().join("b.json");
    std::fs::write(
        &file,
        r#"{"operations": [{"op": "set", "key": "a", "value": 1}, {"op": "frob", "key": "b"}]}"#,
    )
    .unwrap();
    kv(&["batch", "--url", &u, file.to_str().unwrap()], &[], None).assert(3, "operation 1");
    kv(&["get", "--url", &u, "a"], &[], None).assert(1, "key not found");
    let missing = tmp.path().join("missing.json");
    kv(
        &["batch", "--url", &u, missing.to_str().unwrap()],
        &[],
        None,
    )
    .assert(3, "missing.json");
    s.stop();
}

#[test]
fn a_ttl_takes_units_and_the_key_expires() {
    let (_tmp, s, u) = server();
    kv(&["put", "--url", &u, "t", "1", "--ttl", "300ms"], &[], None).assert(0, "");
    kv(&["put", "--url", &u, "long", "1", "--ttl", "1h"], &[], None).assert(0, "");
    std::thread::sleep(std::time::Duration::from_millis(1300));
    kv(&["get", "--url", &u, "t"], &[], None).assert(1, "key not found");
    kv(&["get", "--url", &u, "long"], &[], None).assert(0, "");
    s.stop();
}

#[test]
fn stats_prints_the_servers_figures_as_one_json_line() {
    let (_tmp, s, u) = server();
    kv(&["put", "--url", &u, "a", "1"], &[], None).assert(0, "");
    let d = kv(&["stats", "--url", &u], &[], None);
    assert_eq!(d.assert(0, "").out.lines().count(), 1);
    let v: serde_json::Value = serde_json::from_str(&d.out).unwrap();
    assert_eq!(v["keys"], 1);
    assert!(v["uptime_seconds"].is_number(), "{v}");
    s.stop();
}

#[test]
fn the_auth_token_comes_from_the_flag_or_the_environment() {
    let tmp = tempfile::tempdir().unwrap();
    let s = start(&tmp.path().join("data"), &["--auth-token", "tok"], &[]);
    let u = url(s.port);
    kv(&["put", "--url", &u, "a", "1"], &[], None).assert(3, "401");
    kv(
        &["put", "--url", &u, "a", "1", "--auth-token", "bad"],
        &[],
        None,
    )
    .assert(3, "401");
    kv(
        &["put", "--url", &u, "a", "1", "--auth-token", "tok"],
        &[],
        None,
    )
    .assert(0, "");
    let d = kv(
        &["get", "--url", &u, "a"],
        &[("KVSTORE_AUTH_TOKEN", "tok")],
        None,
    );
    assert_eq!(d.assert(0, "").out, "1\n");
    s.stop();
}

#[test]
fn the_data_dir_target_reads_what_the_server_wrote_and_says_when_a_server_holds_it() {
    let (tmp, s, u) = server();
    let dir = tmp.path().join("data");
    let d = dir.to_str().unwrap();
    kv(&["put", "--url", &u, "a", r#"{"v": [1]}"#], &[], None).assert(0, "");
    kv(&["get", "--data-dir", d, "a"], &[], None).assert(3, "held by a running kvstore server");
    let over_http: Vec<String> = ["get", "list", "stats"]
        .iter()
        .map(|c| {
            let args: Vec<&str> = match *c {
                "get" => vec!["get", "--url", &u, "a"],
                other => vec![other, "--url", &u],
            };
            kv(&args, &[], None).out
        })
        .collect();
    s.stop();
    assert_eq!(
        kv(&["get", "--data-dir", d, "a"], &[], None).out,
        over_http[0]
    );
    assert_eq!(kv(&["list", "--data-dir", d], &[], None).out, over_http[1]);
    let stats: serde_json::Value =
        serde_json::from_str(&kv(&["stats", "--data-dir", d], &[], None).out).unwrap();
    assert_eq!(stats["keys"], 1);
    // Writes on the directory are durable: the next server serves them.
    kv(&["put", "--data-dir", d, "b", "two"], &[], None).assert(0, "");
    kv(&["delete", "--data-dir", d, "a"], &[], None).assert(0, "");
    kv(&["get", "--data-dir", d, "a"], &[], None).assert(1, "key not found");
    let s = start(&dir, &[], &[]);
    assert_eq!(
        s.req("GET", "/kv/b", None).body,
        r#"{"key":"b","value":"two"}"#
    );
    assert_eq!(s.req("GET", "/kv/a", None).status, 404);
    s.stop();
}

#[test]
fn a_batch_on_the_data_dir_answers_as_the_server_would() {
    let tmp = tempfile::tempdir().unwrap();
    let body = r#"{"operations": [{"op": "set", "key": "a", "value": [1, 2]},
        {"op": "get", "key": "a"}, {"op": "set", "key": "a", "value": 3},
        {"op": "delete", "key": "zz"}, {"op": "get", "key": "a"}]}"#;
    let s = start(&tmp.path().join("http"), &[], &[]);
    let u = url(s.port);
    let http = kv(&["batch", "--url", &u, "-"], &[], Some(body));
    s.stop();
    let direct_dir = tmp.path().join("direct");
    std::fs::create_dir(&direct_dir).unwrap();
    let direct = kv(
        &["batch", "--data-dir", direct_dir.to_str().unwrap(), "-"],
        &[],
        Some(body),
    );
    assert_eq!(direct.assert(0, "").out, http.assert(0, "").out);
    assert_eq!(http.out.lines().count(), 5);
}

#[test]
fn a_missing_data_dir_is_refused_not_created() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("missing");
    kv(
        &["get", "--data-dir", missing.to_str().unwrap(), "k"],
        &[],
        None,
    )
    .assert(3, "missing");
    assert!(!missing.exists());
}
