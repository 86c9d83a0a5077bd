//! Where the CPU went during a run: user + system time of every thread of this
//! process (from `/proc/self/task/*/stat`), grouped by thread name, so the
//! report can say how much of the 2 cores the load generator took from the
//! server. Linux only; elsewhere the snapshot is empty.

use std::collections::BTreeMap;
use std::time::Duration;

/// CPU ticks per thread group at one moment.
#[derive(Debug, Default)]
pub struct Snapshot(BTreeMap<String, u64>);

/// Takes a snapshot now.
pub fn snapshot() -> Snapshot {
    let mut groups = BTreeMap::new();
    let pid = std::process::id().to_string();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Snapshot(groups);
    };
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        // `tid (comm) state ppid …`: comm may hold spaces, so split at the parens.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let tid = stat[..open].trim();
        let comm = &stat[open + 1..close];
        // After `)`: state is field 3; utime and stime are fields 14 and 15.
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let ticks: u64 = [11, 12]
            .iter()
            .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
            .sum();
        *groups.entry(group(tid == pid, comm)).or_insert(0) += ticks;
    }
    Snapshot(groups)
}

/// The thread group of a thread: the main thread is the load generator;
/// numbered threads (actix workers, tokio workers) are grouped.
fn group(main: bool, comm: &str) -> String {
    if main {
        return "client".into();
    }
    match comm {
        c if c.starts_with("actix-rt|") || c.starts_with("actix-server wo") => {
            "actix workers".into()
        }
        c if c.starts_with("tokio-r") => "client".into(),
        c => c.trim_end_matches(|ch: char| ch.is_ascii_digit()).into(),
    }
}

/// Each group's share of one core between `before` and `after`, `wall` apart,
/// busiest first, e.g. `actix workers 152%, client 41%, kvstore-engine 4%`.
pub fn shares(before: &Snapshot, after: &Snapshot, wall: Duration) -> String {
    #[allow(unsafe_code, reason = "audited: see the SAFETY comment")]
    // SAFETY: sysconf has no preconditions; it only reads a system constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = if hz > 0 { hz as f64 } else { 100.0 };
    let secs = wall.as_secs_f64().max(1e-9);
    let mut rows: Vec<(f64, &str)> = after
        .0
        .iter()
        .map(|(name, &t)| {
            let d = t.saturating_sub(before.0.get(name).copied().unwrap_or(0));
            (d as f64 / hz / secs * 100.0, name.as_str())
        })
        .filter(|(pct, _)| *pct >= 1.0)
        .collect();
    rows.sort_by(|a, b| b.0.total_cmp(&a.0));
    let total: f64 = rows.iter().map(|r| r.0).sum();
    let mut out = format!("cpu {total:.0}% =");
    for (i, (pct, name)) in rows.iter().enumerate() {
        let sep = if i == 0 { " " } else { ", " };
        out.push_str(&format!("{sep}{name} {pct:.0}%"));
    }
    out
}
