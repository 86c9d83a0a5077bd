//! The command line: flags parsed by hand (there are few) into [`Args`].

use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::workload::Workload;

/// `--help`.
pub const HELP: &str = "\
kvstore-compare: kvstore beside a naive log, fjall and redb over one workload.

Flags (defaults in brackets):
  --keys N            keys loaded [1000000]
  --value-bytes N     bytes per value, at least 16 [100]
  --durable-ops N     most puts per durable phase [1000000]
  --durable-secs S    longest a durable phase runs [3]
  --threads N         writers of the concurrent durable phase [64]
  --engines LIST      comma-separated, from kvstore,naive,fjall,redb,bare [all]
  --dir PATH          where the engines' directories go [a temporary directory]
  --out DIR           also write DIR/compare.md and DIR/compare.svg
  --help              this text
";

/// Validated settings of one run.
#[derive(Debug)]
pub struct Args {
    /// Sizes and counts.
    pub workload: Workload,
    /// Engines to run, in column order (kvstore first, for the ratios).
    pub engines: Vec<String>,
    /// Parent of the run's temporary directory.
    pub dir: Option<PathBuf>,
    /// Where the report and chart go.
    pub out: Option<PathBuf>,
    /// The flags as given, for the report's header.
    pub command_line: String,
}

/// Parses the flags; `None` means `--help` was asked for.
pub fn parse(mut argv: impl Iterator<Item = String>) -> Result<Option<Args>> {
    let mut args = Args {
        workload: Workload {
            keys: 1_000_000,
            value_bytes: 100,
            durable_ops: 1_000_000,
            durable_secs: 3.0,
            durable_threads: 64,
        },
        engines: ["kvstore", "naive", "fjall", "redb", "bare"]
            .map(String::from)
            .to_vec(),
        dir: None,
        out: None,
        command_line: String::new(),
    };
    let mut given = Vec::new();
    while let Some(flag) = argv.next() {
        if flag == "--help" || flag == "-h" {
            return Ok(None);
        }
        let value = argv
            .next()
            .ok_or_else(|| Error::Usage(format!("{flag} needs a value")))?;
        given.push(format!("{flag} {value}"));
        let w = &mut args.workload;
        match flag.as_str() {
            "--keys" => w.keys = number(&flag, &value, 1)?,
            "--value-bytes" => w.value_bytes = number(&flag, &value, 16)?,
            "--durable-ops" => w.durable_ops = number(&flag, &value, 1)?,
            "--threads" => w.durable_threads = number(&flag, &value, 1)?,
            "--durable-secs" => {
                w.durable_secs = value
                    .parse::<f64>()
                    .ok()
                    .filter(|s| *s > 0.0 && s.is_finite())
                    .ok_or_else(|| {
                        Error::Usage(format!("{flag} takes positive seconds, not {value:?}"))
                    })?
            }
            "--engines" => args.engines = value.split(',').map(|s| s.trim().to_string()).collect(),
            "--dir" => args.dir = Some(value.into()),
            "--out" => args.out = Some(value.into()),
            _ => return Err(Error::Usage(format!("unknown flag {flag}"))),
        }
    }
    // Key i carries i in 15 decimal digits; more keys would collide.
    if args.workload.keys > 999_999_999_999_999 {
        return Err(Error::Usage("--keys takes at most 999999999999999".into()));
    }
    if args.workload.durable_threads > 1024 {
        return Err(Error::Usage("--threads takes at most 1024".into()));
    }
    args.command_line = given.join(" ");
    Ok(Some(args))
}

fn number<T: std::str::FromStr + PartialOrd + Copy + std::fmt::Display>(
    flag: &str,
    value: &str,
    min: T,
) -> Result<T> {
    value
        .parse::<T>()
        .ok()
        .filter(|n| *n >= min)
        .ok_or_else(|| {
            Error::Usage(format!(
                "{flag} takes a whole number of at least {min}, not {value:?}"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(s: &str) -> Result<Option<Args>> {
        parse(s.split_whitespace().map(String::from))
    }

    #[test]
    fn no_flags_give_the_issue_s_workload() {
        let a = parse_str("").unwrap().unwrap();
        assert_eq!(a.workload.keys, 1_000_000);
        assert_eq!(a.workload.value_bytes, 100);
        assert_eq!(a.workload.durable_threads, 64);
        assert_eq!(a.engines, ["kvstore", "naive", "fjall", "redb", "bare"]);
    }

    #[test]
    fn flags_override_and_are_kept_for_the_report() {
        let a = parse_str("--keys 2000 --durable-ops 50 --out x")
            .unwrap()
            .unwrap();
        assert_eq!(a.workload.keys, 2000);
        assert_eq!(a.workload.durable_ops, 50);
        assert_eq!(a.command_line, "--keys 2000 --durable-ops 50 --out x");
    }

    #[test]
    fn bad_flags_are_usage_errors_not_panics() {
        for bad in [
            "--keys",
            "--keys 0",
            "--keys many",
            "--value-bytes 8",
            "--durable-secs -1",
            "--threads 5000",
            "--frobnicate 1",
        ] {
            assert!(matches!(parse_str(bad), Err(Error::Usage(_))), "{bad}");
        }
        assert!(parse_str("--help").unwrap().is_none());
    }
}
