//! The legacy JSON-lines `wal.log` of the reference implementations (docs/API.md,
//! "Persistence layout"): one `{"op","key","value","ttl","timestamp"}` object per
//! line. [`JsonLines`] decodes it for the engine's one-time migration.
//!
//! - `op` is `"set"` or `"delete"`; `key` a string; `value` any JSON (kept as
//!   written, minified); a `set` without `value` stores `null`.
//! - `timestamp` is Unix time in seconds (integer or fraction), or in ms when
//!   above 10^11. Missing, the migration time stands in.
//! - `ttl` (seconds, may be fractional) counts from the line's timestamp;
//!   absent or `null` means never; `<= 0` means already expired.
//! - A final line that does not parse is a write torn by a crash: skipped.
//!   Any other bad line fails the migration and leaves the file untouched.

use std::collections::BTreeMap;

use serde_json::value::RawValue;

use crate::engine::{Expiry, LegacyDecoder, LegacyError, LegacyLog, LegacyOp};

/// Decoder of the reference implementations' JSON-lines log.
#[derive(Debug, Default, Clone, Copy)]
pub struct JsonLines;

impl LegacyDecoder for JsonLines {
    fn detect(&self, head: &[u8]) -> bool {
        let head = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
        head.iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_some_and(|&b| b == b'{')
    }

    fn decode(&self, bytes: &[u8], now_ms: u64) -> Result<LegacyLog, LegacyError> {
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        let lines: Vec<(usize, &[u8])> = bytes
            .split(|&b| b == b'\n')
            .enumerate()
            .map(|(i, l)| (i + 1, l.trim_ascii()))
            .filter(|(_, l)| !l.is_empty())
            .collect();
        let mut log = LegacyLog::default();
        let last = lines.len();
        for (n, (line_no, line)) in lines.into_iter().enumerate() {
            match parse_line(line, now_ms) {
                Ok(op) => log.ops.push(op),
                Err(_) if n + 1 == last => log.torn_last_line = true,
                Err(reason) => {
                    return Err(LegacyError {
                        line: line_no,
                        reason,
                    });
                }
            }
        }
        Ok(log)
    }
}

fn parse_line(line: &[u8], now_ms: u64) -> Result<LegacyOp, String> {
    let text = std::str::from_utf8(line).map_err(|_| "not UTF-8".to_string())?;
    let fields: BTreeMap<String, &RawValue> =
        serde_json::from_str(text).map_err(|e| format!("not a JSON object: {e}"))?;
    let field = |name: &str| fields.get(name).copied().filter(|v| v.get() != "null");
    let op: String = match field("op") {
        Some(v) => {
            serde_json::from_str(v.get()).map_err(|_| "\"op\" is not a string".to_string())?
        }
        None => return Err("missing \"op\"".into()),
    };
    let key: String = match field("key") {
        Some(v) => {
            serde_json::from_str(v.get()).map_err(|_| "\"key\" is not a string".to_string())?
        }
        None => return Err("missing \"key\"".into()),
    };
    if key.is_empty() {
        return Err("empty \"key\"".into());
    }
    let number = |name: &str| -> Result<Option<f64>, String> {
        field(name)
            .map(|v| {
                serde_json::from_str::<f64>(v.get())
                    .map_err(|_| format!("\"{name}\" is not a number"))
            })
            .transpose()
    };
    match op.as_str() {
        "set" | "put" => {
            let value = fields
                .get("value")
                .map_or_else(|| b"null".to_vec(), |v| crate::json::minify(v.get()));
            let ts_ms = match number("timestamp")? {
                Some(ts) if ts > 1e11 => ts,
                Some(ts) => ts * 1000.0,
                None => now_ms as f64,
            };
            let expiry = match number("ttl")? {
                None => Expiry::Never,
                Some(ttl) if ttl <= 0.0 => Expiry::At(to_ms(ts_ms)),
                Some(ttl) => Expiry::At(to_ms(ts_ms + ttl * 1000.0)),
            };
            Ok(LegacyOp::Set {
                key: key.into_bytes(),
                value,
                expiry,
            })
        }
        "delete" | "del" => Ok(LegacyOp::Delete {
            key: key.into_bytes(),
        }),
        other => Err(format!("unknown op {other:?}")),
    }
}

/// A millisecond instant from a float, rounded, at least 1 (0 means "never").
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "clamped to >= 1 first; float-to-int `as` saturates at u64::MAX and maps NaN to 0"
)]
fn to_ms(ms: f64) -> u64 {
    (ms.round().max(1.0) as u64).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_sets_deletes_and_ttls_in_both_timestamp_units() {
        let log = br#"{"op":"set","key":"a","value":{"x": [1, 2.50]},"timestamp":1700000000}
{"op":"set","key":"b","value":"v","ttl":10,"timestamp":1700000000.5}
{"op":"set","key":"c","value":3,"ttl":1.5,"timestamp":1700000000000}
{"op":"delete","key":"a","timestamp":1700000001}
"#;
        let out = JsonLines.decode(log, 0).unwrap();
        assert!(!out.torn_last_line);
        assert_eq!(
            out.ops,
            vec![
                LegacyOp::Set {
                    key: b"a".to_vec(),
                    value: br#"{"x":[1,2.50]}"#.to_vec(),
                    expiry: Expiry::Never
                },
                LegacyOp::Set {
                    key: b"b".to_vec(),
                    value: br#""v""#.to_vec(),
                    expiry: Expiry::At(1_700_000_010_500)
                },
                LegacyOp::Set {
                    key: b"c".to_vec(),
                    value: b"3".to_vec(),
                    expiry: Expiry::At(1_700_000_001_500)
                },
                LegacyOp::Delete { key: b"a".to_vec() },
            ]
        );
    }

    #[test]
    fn torn_last_line_is_skipped_but_a_bad_middle_line_fails() {
        let torn = b"{\"op\":\"set\",\"key\":\"a\",\"value\":1}\n{\"op\":\"set\",\"ke";
        let out = JsonLines.decode(torn, 5).unwrap();
        assert!(out.torn_last_line);
        assert_eq!(out.ops.len(), 1);
        let bad = b"{\"op\":\"set\",\"key\":\"a\",\"value\":1}\nnot json\n{\"op\":\"delete\",\"key\":\"a\"}\n";
        let err = JsonLines.decode(bad, 5).unwrap_err();
        assert_eq!(err.line, 2);
    }

    #[test]
    fn detects_json_lines_but_not_segments() {
        assert!(JsonLines.detect(b"  {\"op\""));
        assert!(!JsonLines.detect(b"KVSTORE\0"));
    }
}
