//! The client operations as parsed flags ([`Op`]), and [`execute`]: one
//! operation against a [`Target`], its output on stdout and its outcome.
//! Shared word for word by the one-shot commands and `kvstore shell`.
//!
//! Output, one item per line, so scripts can read it:
//! - `get`: the value as compact JSON; `put`: `created` or `updated`;
//!   `delete`: `deleted`; `list`: one key per line; `batch`: one JSON result
//!   object per operation; `stats`: one JSON object.
//! - A missing key (`get`, `delete`) is [`Outcome::NotFound`], exit 1.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Subcommand};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::{BatchOp, ClientError, Target, Write};
use crate::cli::units;
use crate::server::body::{present, ttl_seconds};
use crate::server::minify;

/// Keys fetched per listing request.
const LIST_PAGE: usize = 1000;

/// A client operation.
#[derive(Debug, Clone, Subcommand)]
pub enum Op {
    /// Print the value of KEY as JSON (exit 1 when it is absent).
    Get(GetArgs),
    /// Store VALUE under KEY (VALUE is JSON if it parses as JSON, else a string).
    Put(PutArgs),
    /// Delete KEY (exit 1 when it is absent).
    Delete(KeyArgs),
    /// Print the keys, one per line, in byte order.
    List(ListArgs),
    /// Run a `/kv/batch` body (`{"operations": [...]}`) from FILE as one atomic batch.
    Batch(BatchArgs),
    /// Print the store's figures as JSON.
    Stats(StatsArgs),
}

/// `get KEY`.
pub type GetArgs = KeyArgs;

/// A single key.
#[derive(Debug, Clone, Args)]
pub struct KeyArgs {
    /// The key (any UTF-8 text; no escaping needed).
    pub key: String,
}

/// `put KEY VALUE [--ttl S] [--string]`.
#[derive(Debug, Clone, Args)]
pub struct PutArgs {
    /// The key.
    pub key: String,
    /// The value: JSON (`42`, `true`, `'{"a": 1}'`) if it parses as JSON,
    /// else stored as a JSON string (`hello` → "hello").
    #[arg(allow_hyphen_values = true)]
    pub value: String,
    /// Expire after this long (`90`, `1.5`, `500ms`, `1h`; plain numbers are seconds).
    #[arg(long, value_parser = units::seconds)]
    pub ttl: Option<Duration>,
    /// Store VALUE as a JSON string even if it parses as JSON (`--string 42` → "42").
    #[arg(long)]
    pub string: bool,
}

/// `list [--prefix P] [--limit N]`.
#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    /// Only keys starting with this.
    #[arg(long, default_value = "")]
    pub prefix: String,
    /// At most this many keys.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,
}

/// `batch FILE`.
#[derive(Debug, Clone, Args)]
pub struct BatchArgs {
    /// A JSON file holding a `/kv/batch` body, or `-` for stdin.
    pub file: PathBuf,
}

/// `stats` (no arguments).
#[derive(Debug, Clone, Args)]
pub struct StatsArgs {}

/// How an operation ended, when it did not fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Done (found, stored, listed…): exit 0.
    Done,
    /// The key was absent: exit 1, with this message.
    NotFound(String),
}

/// Runs `op` against `target`, writing its output to `out`.
pub fn execute(
    target: &dyn Target,
    op: &Op,
    out: &mut dyn std::io::Write,
) -> Result<Outcome, ClientError> {
    let mut line = |text: &str| writeln!(out, "{text}").map_err(ClientError::Output);
    match op {
        Op::Get(a) => match target.get(&a.key)? {
            Some(value) => line(&value)?,
            None => return Ok(not_found(&a.key)),
        },
        Op::Put(a) => {
            let write = Write {
                value: value_json(&a.value, a.string),
                ttl: a.ttl.map(|d| d.as_secs_f64()),
            };
            let created = target.put(&a.key, &write)?;
            line(if created { "created" } else { "updated" })?;
        }
        Op::Delete(a) => {
            if !target.delete(&a.key)? {
                return Ok(not_found(&a.key));
            }
            line("deleted")?;
        }
        Op::List(a) => {
            let mut remaining = a.limit.unwrap_or(u64::MAX);
            let mut after: Option<String> = None;
            while remaining > 0 {
                let want = usize::try_from(remaining).map_or(LIST_PAGE, |r| r.min(LIST_PAGE));
                let page = target.list(&a.prefix, after.as_deref(), want)?;
                for key in &page.keys {
                    line(key)?;
                }
                remaining = remaining.saturating_sub(page.keys.len() as u64);
                match page.keys.last() {
                    Some(last) if page.more => after = Some(last.clone()),
                    _ => break,
                }
            }
        }
        Op::Batch(a) => {
            let ops = read_batch(&a.file)?;
            for result in target.batch(&ops)? {
                line(&result)?;
            }
        }
        Op::Stats(_) => line(&target.stats()?)?,
    }
    Ok(Outcome::Done)
}

fn not_found(key: &str) -> Outcome {
    Outcome::NotFound(format!("key not found: {key}"))
}

/// VALUE as stored JSON text: itself (compacted) when it parses as JSON and
/// `as_string` is off, else a JSON string holding it.
pub fn value_json(text: &str, as_string: bool) -> String {
    if !as_string && let Ok(raw) = serde_json::from_str::<&RawValue>(text) {
        return String::from_utf8_lossy(&minify(raw.get())).into_owned();
    }
    serde_json::Value::String(text.to_string()).to_string()
}

#[derive(Deserialize)]
struct BatchFile<'a> {
    #[serde(borrow)]
    operations: Vec<&'a RawValue>,
}

#[derive(Deserialize)]
struct OpLine<'a> {
    op: String,
    key: String,
    #[serde(borrow, default, deserialize_with = "present")]
    value: Option<&'a RawValue>,
    #[serde(borrow, default)]
    ttl: Option<&'a RawValue>,
}

/// Reads and validates a batch file (`-`: stdin) whole, before anything runs.
pub fn read_batch(path: &Path) -> Result<Vec<BatchOp>, ClientError> {
    let mut text = String::new();
    let read = if path == Path::new("-") {
        std::io::stdin().lock().read_to_string(&mut text)
    } else {
        std::fs::File::open(path).and_then(|mut f| f.read_to_string(&mut text))
    };
    read.map_err(|source| ClientError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_batch(&text).map_err(|(where_, reason)| ClientError::BadBatch {
        path: path.to_path_buf(),
        where_,
        reason,
    })
}

/// Parses a `/kv/batch` body; an error says where (`body`, `operation N`) and what.
pub fn parse_batch(text: &str) -> Result<Vec<BatchOp>, (String, String)> {
    let body: BatchFile<'_> = serde_json::from_str(text).map_err(|e| {
        (
            "body".to_string(),
            format!("{e} (expected {{\"operations\": [...]}})"),
        )
    })?;
    body.operations
        .iter()
        .enumerate()
        .map(|(i, raw)| parse_op(raw).map_err(|reason| (format!("operation {i}"), reason)))
        .collect()
}

fn parse_op(raw: &RawValue) -> Result<BatchOp, String> {
    let op: OpLine<'_> = serde_json::from_str(raw.get()).map_err(|e| e.to_string())?;
    let key = op.key;
    match op.op.as_str() {
        "set" => {
            let value = op.value.ok_or("set without \"value\"")?;
            let ttl = ttl_seconds(op.ttl).map_err(|e| e.to_string())?;
            let value = String::from_utf8_lossy(&minify(value.get())).into_owned();
            Ok(BatchOp::Set {
                key,
                write: Write { value, ttl },
            })
        }
        "get" => Ok(BatchOp::Get { key }),
        "delete" => Ok(BatchOp::Delete { key }),
        other => Err(format!(
            "unknown op {other:?} (expected \"set\", \"get\" or \"delete\")"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_that_parses_as_json_is_json() {
        assert_eq!(value_json("42", false), "42");
        assert_eq!(value_json(" { \"a\" : [1, 2] } ", false), r#"{"a":[1,2]}"#);
        assert_eq!(value_json("\"quoted\"", false), r#""quoted""#);
        assert_eq!(value_json("null", false), "null");
    }

    #[test]
    fn any_other_value_is_a_string() {
        assert_eq!(value_json("hello world", false), r#""hello world""#);
        assert_eq!(value_json("{broken", false), r#""{broken""#);
        assert_eq!(value_json("", false), r#""""#);
        assert_eq!(value_json("42", true), r#""42""#);
    }

    #[test]
    fn a_batch_body_parses_in_order() {
        let ops = parse_batch(
            r#"{"operations": [{"op": "set", "key": "a", "value": {"x": 1}, "ttl": 1.5},
            {"op": "get", "key": "a"}, {"op": "delete", "key": "b"}]}"#,
        )
        .unwrap();
        assert_eq!(
            ops,
            vec![
                BatchOp::Set {
                    key: "a".into(),
                    write: Write {
                        value: r#"{"x":1}"#.into(),
                        ttl: Some(1.5)
                    }
                },
                BatchOp::Get { key: "a".into() },
                BatchOp::Delete { key: "b".into() },
            ]
        );
    }

    #[test]
    fn a_bad_operation_is_named_by_its_index() {
        let (where_, reason) = parse_batch(
            r#"{"operations": [{"op": "get", "key": "a"}, {"op": "frob", "key": "b"}]}"#,
        )
        .unwrap_err();
        assert_eq!(where_, "operation 1");
        assert!(reason.contains("frob"), "{reason}");
        let (where_, _) =
            parse_batch(r#"{"operations": [{"op": "set", "key": "a"}]}"#).unwrap_err();
        assert_eq!(where_, "operation 0");
        let (where_, _) = parse_batch("[1, 2]").unwrap_err();
        assert_eq!(where_, "body");
    }
}
