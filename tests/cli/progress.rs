//! Progress bars of offline work are drawn only on a terminal: piped, the
//! subcommands print exactly their summary lines.

use crate::client_support::kv;

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
