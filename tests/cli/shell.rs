//! `kvstore shell` driven through stdin (not a terminal: no prompt, one
//! command per line, each with the one-shot command's output and status).

use crate::support::start;
use crate::support::{kv, url};

#[test]
fn commands_from_stdin_run_in_order_with_their_output_per_line() {
    let tmp = tempfile::tempdir().unwrap();
    let s = start(&tmp.path().join("data"), &[], &[]);
    let u = url(s.port);
    let script = "\
        # comments and blank lines are skipped\n\
        \n\
        put a '{\"x\": [1, 2]}'\n\
        put 'two words' \"hello there\" --ttl 1h\n\
        get a\n\
        get 'two words'\n\
        list\n\
        delete a\n\
        get a\n\
        put b 1\n";
    let d = kv(&["shell", "--url", &u], &[], Some(script));
    assert_eq!(
        d.out,
        "created\ncreated\n{\"x\":[1,2]}\n\"hello there\"\na\ntwo words\ndeleted\ncreated\n"
    );
    // The failed `get a` said so on stderr and the session went on.
    assert_eq!(d.err, "kvstore: key not found: a\n");
    assert_eq!(d.code, 0, "the last command succeeded: {d:?}");
    s.stop();
}

#[test]
fn the_shell_exits_with_the_last_commands_status() {
    let tmp = tempfile::tempdir().unwrap();
    let s = start(&tmp.path().join("data"), &[], &[]);
    let u = url(s.port);
    assert_eq!(kv(&["shell", "--url", &u], &[], Some("get nope\n")).code, 1);
    let d = kv(&["shell", "--url", &u], &[], Some("frobnicate\n"));
    assert_eq!(d.code, 2, "{d:?}");
    assert!(
        d.err.contains("frobnicate") && d.err.contains("help"),
        "{d:?}"
    );
    let d = kv(&["shell", "--url", &u], &[], Some("put k 'unbalanced\n"));
    assert_eq!(d.code, 2, "{d:?}");
    assert!(d.err.contains("quotes"), "{d:?}");
    assert_eq!(
        kv(&["shell", "--url", &u], &[], Some("get nope\nstats\n")).code,
        0
    );
    s.stop();
    // The server is gone: a command fails with 3, the shell still reads on.
    let d = kv(&["shell", "--url", &u], &[], Some("get a\nhelp\n"));
    assert_eq!(d.code, 0, "{d:?}");
    assert!(d.err.contains("cannot reach"), "{d:?}");
}

#[test]
fn exit_stops_reading() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    std::fs::create_dir(&dir).unwrap();
    let d = dir.to_str().unwrap();
    let out = kv(
        &["shell", "--data-dir", d],
        &[],
        Some("put a 1\nexit\nput b 2\n"),
    );
    assert_eq!(out.out, "created\n");
    assert_eq!(out.code, 0);
    kv(&["get", "--data-dir", d, "b"], &[], None).assert(1, "key not found");
    let out = kv(&["shell", "--data-dir", d], &[], Some("quit\nput b 2\n"));
    assert_eq!(out.out, "");
}

#[test]
fn a_shell_on_a_data_dir_keeps_it_open_for_the_session_and_its_writes_last() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    std::fs::create_dir(&dir).unwrap();
    let d = dir.to_str().unwrap();
    let batch = tmp.path().join("b.json");
    std::fs::write(
        &batch,
        r#"{"operations": [{"op": "set", "key": "x", "value": true}, {"op": "get", "key": "x"}]}"#,
    )
    .unwrap();
    let script = format!("put a 1\nbatch {}\nget a\nstats\n", batch.to_str().unwrap());
    let out = kv(&["shell", "--data-dir", d], &[], Some(&script));
    let lines: Vec<&str> = out.out.lines().collect();
    assert_eq!(
        lines[..4],
        [
            "created",
            "{\"success\":true,\"created\":true}",
            "{\"key\":\"x\",\"value\":true}",
            "1"
        ]
    );
    let stats: serde_json::Value = serde_json::from_str(lines[4]).unwrap();
    assert_eq!(stats["keys"], 2);
    assert_eq!(out.code, 0, "{out:?}");
    // Closed on exit: the directory opens again and holds both keys.
    assert_eq!(kv(&["list", "--data-dir", d], &[], None).out, "a\nx\n");
}

#[test]
fn help_lists_every_command_and_one_commands_flags() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    std::fs::create_dir(&dir).unwrap();
    let d = kv(
        &["shell", "--data-dir", dir.to_str().unwrap()],
        &[],
        Some("help\nhelp put\n"),
    );
    for c in [
        "get", "put", "delete", "list", "batch", "stats", "help", "exit",
    ] {
        assert!(d.out.contains(&format!("  {c} ")), "{c} missing: {}", d.out);
    }
    assert!(d.out.contains("--ttl"), "{}", d.out);
    assert_eq!(d.code, 0, "{d:?}");
}
