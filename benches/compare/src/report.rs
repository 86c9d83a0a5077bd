//! The markdown report: one row per phase, one column per engine, each peer's
//! cell carrying its ratio to kvstore, then the targets checked against them.
//!
//! Ratio direction, the same in every row: how many times better kvstore is
//! than the peer (kvstore ÷ peer for rates, peer ÷ kvstore for times and
//! bytes). Above 1.00× kvstore is ahead; a target "kvstore ≥ 1.5× naive" reads
//! straight off the naive cell.

use std::fmt::Write as _;

use crate::phases::{Column, Measure, Phase};
use crate::workload::Workload;

/// The table's row label for `phase`, with its unit.
fn row_label(phase: Phase, w: &Workload) -> String {
    match phase {
        Phase::SequentialLoad => "sequential load, no fsync (puts/s)".into(),
        Phase::RandomOverwrite => "random overwrite, no fsync (puts/s)".into(),
        Phase::RandomGet => "random get, warm (gets/s)".into(),
        Phase::PrefixScan => "prefix scan with values, 16 prefixes (items/s)".into(),
        Phase::Reopen => "reopen + first get".into(),
        Phase::DiskBytes => "disk bytes after the load (du)".into(),
        Phase::DurableSingle => "durable, 1 writer (puts/s)".into(),
        Phase::DurableConcurrent => format!("durable, {} writers (puts/s)", w.durable_threads),
    }
}

/// A measure as a table cell: `1,258k/s`, `12.3k/s`, `850/s`, `132 ms`, `152.3 MB`.
pub fn format_measure(m: Measure) -> String {
    match m {
        Measure::Rate { .. } => format_rate(m.value()),
        Measure::Secs(s) if s >= 10.0 => format!("{s:.1} s"),
        Measure::Secs(s) if s >= 0.01 => format!("{:.0} ms", s * 1e3),
        Measure::Secs(s) => format!("{:.2} ms", s * 1e3),
        Measure::Bytes(b) => format!("{:.1} MB", b as f64 / 1e6),
    }
}

fn format_rate(r: f64) -> String {
    if r >= 100_000.0 {
        format!("{}k/s", thousands((r / 1e3).round() as u64))
    } else if r >= 1_000.0 {
        format!("{:.1}k/s", r / 1e3)
    } else {
        format!("{r:.0}/s")
    }
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// How many times better kvstore's `ours` is than a peer's `theirs`.
pub fn advantage(ours: Measure, theirs: Measure) -> f64 {
    let (a, b) = (ours.value(), theirs.value());
    let r = if ours.higher_is_better() {
        a / b
    } else {
        b / a
    };
    if r.is_finite() { r } else { 0.0 }
}

/// The whole report: a line on the workload and the machine's load (`load`:
/// the 1-minute load average before and after the run), the table, the targets.
pub fn markdown(columns: &[Column], w: &Workload, load: Option<(f64, f64)>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} keys of 16 B, values of {} B, one process; durable phases: at most {} puts or {} s each.\n",
        w.keys, w.value_bytes, w.durable_ops, w.durable_secs
    );
    if let Some((before, after)) = load {
        let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
        let _ = writeln!(
            out,
            "Machine: {cores} cores, 1-minute load average {before:.1} before the run and \
             {after:.1} after (above the core count, every figure is lower than on an idle \
             machine).\n"
        );
    }
    let _ = writeln!(
        out,
        "Ratio in brackets: how many times better kvstore is than that peer \
         (kvstore ÷ peer for rates, peer ÷ kvstore for time and bytes; above 1.00× kvstore is ahead).\n"
    );
    out.push_str("| phase |");
    for c in columns {
        let _ = write!(out, " {} |", c.name);
    }
    out.push_str("\n| --- |");
    for _ in columns {
        out.push_str(" ---: |");
    }
    out.push('\n');
    let ours = columns.iter().find(|c| c.name == "kvstore");
    for phase in Phase::ALL {
        let _ = write!(out, "| {} |", row_label(phase, w));
        for c in columns {
            let cell = match (c.get(phase), ours.and_then(|o| o.get(phase))) {
                (None, _) => "—".to_string(),
                (Some(m), Some(k)) if c.name != "kvstore" => {
                    format!("{} ({:.2}×)", format_measure(m), advantage(k, m))
                }
                (Some(m), _) => format_measure(m),
            };
            let _ = write!(out, " {cell} |");
        }
        out.push('\n');
    }
    out.push('\n');
    out.push_str(&targets(columns, w));
    out
}

/// The targets of issue 8, each with what this run measured and ✓ or ✗.
fn targets(columns: &[Column], w: &Workload) -> String {
    let find = |name: &str, p: Phase| columns.iter().find(|c| c.name == name)?.get(p);
    let vs = |peer: &str, p: Phase| Some(advantage(find("kvstore", p)?, find(peer, p)?));
    let kv = |p: Phase| find("kvstore", p).map(Measure::value);
    let single = kv(Phase::DurableSingle);
    let concurrent = kv(Phase::DurableConcurrent);
    let rows: Vec<(String, Option<f64>, f64, bool)> = vec![
        (
            "sequential load ≥ 1.5× naive".into(),
            vs("naive", Phase::SequentialLoad),
            1.5,
            true,
        ),
        (
            "random overwrite ≥ 1.5× naive".into(),
            vs("naive", Phase::RandomOverwrite),
            1.5,
            true,
        ),
        (
            "random get ≥ 1.5× naive".into(),
            vs("naive", Phase::RandomGet),
            1.5,
            true,
        ),
        (
            "random get ≥ 2× redb".into(),
            vs("redb", Phase::RandomGet),
            2.0,
            true,
        ),
        (
            "prefix scan with values ≥ 1.0× redb".into(),
            vs("redb", Phase::PrefixScan),
            1.0,
            true,
        ),
        (
            format!("durable, {} writers ≥ 150k/s", w.durable_threads),
            concurrent.map(|r| r / 1e3),
            150.0,
            true,
        ),
        (
            format!("durable, {} writers ≥ 20× 1 writer", w.durable_threads),
            concurrent.zip(single).map(|(c, s)| c / s),
            20.0,
            true,
        ),
        (
            "durable, 1 writer ≥ 0.9× the bare loop".into(),
            single
                .zip(find(crate::peers::bare::NAME, Phase::DurableSingle))
                .map(|(s, b)| s / b.value()),
            0.9,
            true,
        ),
        (
            if w.keys == 1_000_000 {
                "reopen + first get ≤ 150 ms (1M keys)".to_string()
            } else {
                format!("reopen + first get ≤ 150 ms (at 1M keys; here {})", w.keys)
            },
            kv(Phase::Reopen).map(|s| s * 1e3),
            150.0,
            false,
        ),
    ];
    let mut out = String::from("| target | measured | met |\n| --- | ---: | :---: |\n");
    for (what, got, bound, at_least) in rows {
        let (cell, met) = match got {
            None => ("not run".to_string(), "—"),
            Some(g) => {
                let unit = if what.contains("k/s") {
                    "k/s"
                } else if what.contains("ms") {
                    " ms"
                } else {
                    "×"
                };
                let ok = if at_least { g >= bound } else { g <= bound };
                (format!("{g:.2}{unit}"), if ok { "✓" } else { "✗" })
            }
        };
        let _ = writeln!(out, "| {what} | {cell} | {met} |");
    }
    out
}

/// The 1-minute load average, where the OS reports one (Linux).
pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_read_as_the_issue_writes_them() {
        let r = |per_s: f64| Measure::Rate {
            ops: (per_s * 2.0) as u64,
            secs: 2.0,
        };
        assert_eq!(format_measure(r(1_258_000.0)), "1,258k/s");
        assert_eq!(format_measure(r(12_340.0)), "12.3k/s");
        assert_eq!(format_measure(r(850.0)), "850/s");
        assert_eq!(format_measure(Measure::Secs(0.132)), "132 ms");
        assert_eq!(format_measure(Measure::Bytes(152_300_000)), "152.3 MB");
    }

    #[test]
    fn the_ratio_is_above_one_where_kvstore_is_ahead_in_either_direction() {
        let fast = Measure::Rate {
            ops: 300,
            secs: 1.0,
        };
        let slow = Measure::Rate {
            ops: 100,
            secs: 1.0,
        };
        assert!((advantage(fast, slow) - 3.0).abs() < 1e-9);
        assert!((advantage(Measure::Secs(0.1), Measure::Secs(0.4)) - 4.0).abs() < 1e-9);
        assert!((advantage(Measure::Bytes(200), Measure::Bytes(100)) - 0.5).abs() < 1e-9);
    }
}
