//! Progress bars of offline work are drawn only on a terminal: piped, the
//! subcommands print exactly their summary lines.

use crate::support::kv;

#[test]
fn offline_work_prints_no_progress_when_stderr_is_not_a_terminal() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let d = dir.to_str().unwrap();
    let lines: String = (0..3000)
        .map(|i| format!("{{\"key\":\"k{i}\",\"value\":{i}}}\n"))
        .collect();
    let import = kv(&["import", "--data-dir", d], &[], Some(&lines));
    assert_eq!(import.code, 0, "{import:?}");
    assert_eq!(import.err, format!("imported 3000 keys into {d}\n"));
    let export = kv(&["export", "--data-dir", d], &[], None);
    assert_eq!(export.err, "exported 3000 keys\n");
    assert_eq!(
        export.out,
        lines
            .lines()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .map(|l| format!("{l}\n"))
            .collect::<String>()
    );
    let verify = kv(&["verify", "--data-dir", d], &[], None);
    assert_eq!((verify.code, verify.err.as_str()), (0, ""), "{verify:?}");
    assert!(verify.out.ends_with("ok\n"), "{verify:?}");
    let compact = kv(&["compact", "--data-dir", d], &[], None);
    assert_eq!((compact.code, compact.err.as_str()), (0, ""), "{compact:?}");
    assert!(!compact.out.contains('\u{1b}'), "{compact:?}");
}

#[test]
fn on_a_terminal_import_draws_a_bar_and_clears_it() {
    use std::io::Read;
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in.jsonl");
    let lines: String = (0..20_000)
        .map(|i| format!("{{\"key\":\"k{i}\",\"value\":{i}}}\n"))
        .collect();
    std::fs::write(&input, lines).unwrap();
    let (mut master, slave) = crate::shell_pty::openpty();
    let mut child = std::process::Command::new(crate::support::BIN)
        .args(["import", "--data-dir"])
        .arg(tmp.path().join("data"))
        .arg("--input")
        .arg(&input)
        .env("TERM", "xterm")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::from(slave))
        .spawn()
        .unwrap();
    let reader = std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        // Ends with EIO once the child has exited and closed the slave.
        while let Ok(n) = master.read(&mut buf) {
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&seen).into_owned()
    });
    assert!(child.wait().unwrap().success());
    let seen = reader.join().unwrap();
    assert!(seen.contains("importing"), "{seen:?}");
    assert!(seen.contains("/20000 keys"), "{seen:?}");
    assert!(seen.contains("imported 20000 keys"), "{seen:?}");
}
