//! Sizes and durations as people write them: `64MiB`, `1.5GB`, `500ms`,
//! `1m30s`. One parser for sizes and one for durations, used by every size
//! and duration flag and by the config file (which hands its values to the
//! same flag parsers).
//!
//! Invariants:
//! - A plain number keeps the meaning the flag always had: bytes for a size,
//!   the flag's own unit for a duration (`--sync-interval-ms 250` is 250 ms,
//!   `--ttl 90` is 90 s), so existing invocations are unchanged.
//! - `K`, `M`, `G`, `T` and `KiB`… are powers of 1024; `KB`, `MB`… are powers
//!   of 1000. Suffixes are case-insensitive (`64mib`).
//! - Nothing overflows silently: a value past `u64::MAX` bytes or
//!   milliseconds is an error, as is a negative number or a fraction of a byte
//!   that rounds to nothing.

use std::time::Duration;

/// A size or duration that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    /// Nothing was given.
    #[error("empty value")]
    Empty,
    /// The text does not start with a number.
    #[error("{text:?} is not a number with an optional unit")]
    NotANumber {
        /// The text given.
        text: String,
    },
    /// A suffix that is not one of the units.
    #[error("unknown unit {unit:?} in {text:?} (expected {expected})")]
    UnknownUnit {
        /// The suffix.
        unit: String,
        /// The whole text.
        text: String,
        /// The units accepted.
        expected: &'static str,
    },
    /// The value does not fit.
    #[error("{text:?} is too large")]
    TooLarge {
        /// The text given.
        text: String,
    },
}

const SIZE_UNITS: &str = "B, K/KiB, M/MiB, G/GiB, T/TiB (1024) or KB, MB, GB, TB (1000)";
const DURATION_UNITS: &str = "ns, us, ms, s, m, h, d";

/// Bytes in `text`: `4096`, `64MiB`, `1.5GB`, `512 k`.
pub fn parse_size(text: &str) -> Result<u64, UnitError> {
    let (number, unit) = split_number(text.trim(), text)?;
    let factor: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => {
            return Err(UnitError::UnknownUnit {
                unit: unit.to_string(),
                text: text.to_string(),
                expected: SIZE_UNITS,
            });
        }
    };
    scale(number, factor, text)
}

/// The duration in `text`; a plain number counts in `plain` (the flag's own
/// unit). Groups add up: `1m30s`, `1h 15m`.
pub fn parse_duration(text: &str, plain: Duration) -> Result<Duration, UnitError> {
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(UnitError::Empty);
    }
    let mut total_ns: u128 = 0;
    let mut groups = 0;
    while !rest.is_empty() {
        let (number, after) = leading_number(rest, text)?;
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.' || c.is_whitespace())
            .unwrap_or(after.len());
        let (unit, tail) = after.split_at(unit_len);
        let unit_ns: u128 = match unit.to_ascii_lowercase().as_str() {
            "" if groups == 0 && tail.trim().is_empty() => plain.as_nanos(),
            "ns" => 1,
            "us" | "µs" => 1_000,
            "ms" => 1_000_000,
            "s" | "sec" | "secs" => 1_000_000_000,
            "m" | "min" | "mins" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "d" => 86_400_000_000_000,
            _ => {
                return Err(UnitError::UnknownUnit {
                    unit: unit.to_string(),
                    text: text.to_string(),
                    expected: DURATION_UNITS,
                });
            }
        };
        total_ns = total_ns.saturating_add(scale_u128(number, unit_ns, text)?);
        groups += 1;
        rest = tail.trim_start();
    }
    let secs = u64::try_from(total_ns / 1_000_000_000).map_err(|_| UnitError::TooLarge {
        text: text.to_string(),
    })?;
    let nanos = u32::try_from(total_ns % 1_000_000_000).unwrap_or(0);
    Ok(Duration::new(secs, nanos))
}

/// clap value parser: a size in bytes.
pub fn size(text: &str) -> Result<u64, UnitError> {
    parse_size(text)
}

/// clap value parser: a size in bytes, for `usize` settings.
pub fn size_usize(text: &str) -> Result<usize, UnitError> {
    usize::try_from(parse_size(text)?).map_err(|_| UnitError::TooLarge {
        text: text.to_string(),
    })
}

/// clap value parser: a duration in whole milliseconds (plain numbers are ms).
pub fn millis(text: &str) -> Result<u64, UnitError> {
    let d = parse_duration(text, Duration::from_millis(1))?;
    u64::try_from(d.as_millis()).map_err(|_| UnitError::TooLarge {
        text: text.to_string(),
    })
}

/// clap value parser: a duration (plain numbers are seconds, fractions allowed).
pub fn seconds(text: &str) -> Result<Duration, UnitError> {
    parse_duration(text, Duration::from_secs(1))
}

/// A number `(integer part, fraction digits)` and the unit after it; the whole
/// text must be one number and one unit.
fn split_number<'a>(text: &'a str, original: &str) -> Result<(Number, &'a str), UnitError> {
    if text.is_empty() {
        return Err(UnitError::Empty);
    }
    let (number, unit) = leading_number(text, original)?;
    Ok((number, unit.trim()))
}

/// A non-negative decimal number kept exact: digits before and after the point.
#[derive(Debug, Clone, Copy)]
struct Number {
    whole: u128,
    frac: u128,
    frac_digits: u32,
}

fn leading_number<'a>(text: &'a str, original: &str) -> Result<(Number, &'a str), UnitError> {
    let end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (digits, rest) = text.split_at(end);
    let not_a_number = || UnitError::NotANumber {
        text: original.to_string(),
    };
    let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty() && frac.is_empty() || frac.contains('.') {
        return Err(not_a_number());
    }
    let too_large = || UnitError::TooLarge {
        text: original.to_string(),
    };
    // Fraction digits past 18 cannot change a byte count or a nanosecond.
    let frac = &frac[..frac.len().min(18)];
    let parse = |s: &str| -> Result<u128, UnitError> {
        if s.is_empty() {
            Ok(0)
        } else {
            s.parse::<u128>().map_err(|_| too_large())
        }
    };
    let number = Number {
        whole: parse(whole)?,
        frac: parse(frac)?,
        frac_digits: u32::try_from(frac.len()).unwrap_or(18),
    };
    Ok((number, rest.trim_start()))
}

fn scale_u128(n: Number, factor: u128, original: &str) -> Result<u128, UnitError> {
    let too_large = || UnitError::TooLarge {
        text: original.to_string(),
    };
    let whole = n.whole.checked_mul(factor).ok_or_else(too_large)?;
    let frac = n.frac.checked_mul(factor).ok_or_else(too_large)? / 10u128.pow(n.frac_digits);
    whole.checked_add(frac).ok_or_else(too_large)
}

fn scale(n: Number, factor: u64, original: &str) -> Result<u64, UnitError> {
    let v = scale_u128(n, u128::from(factor), original)?;
    u64::try_from(v).map_err(|_| UnitError::TooLarge {
        text: original.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_numbers_are_bytes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("0"), Ok(0));
    }

    #[test]
    fn binary_and_decimal_units() {
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("64mib"), Ok(64 << 20));
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("2 KB"), Ok(2000));
        assert_eq!(parse_size("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_size("1TB"), Ok(1_000_000_000_000));
        assert_eq!(parse_size("0.5k"), Ok(512));
    }

    #[test]
    fn bad_sizes_say_why() {
        assert!(matches!(
            parse_size("64QB"),
            Err(UnitError::UnknownUnit { .. })
        ));
        assert!(matches!(
            parse_size("MiB"),
            Err(UnitError::NotANumber { .. })
        ));
        assert!(matches!(
            parse_size("-1"),
            Err(UnitError::NotANumber { .. })
        ));
        assert!(matches!(
            parse_size("1.2.3"),
            Err(UnitError::NotANumber { .. })
        ));
        assert_eq!(parse_size(""), Err(UnitError::Empty));
        assert!(matches!(
            parse_size("16777216TiB"),
            Err(UnitError::TooLarge { .. })
        ));
    }

    #[test]
    fn durations_with_units_and_groups() {
        let ms = Duration::from_millis(1);
        assert_eq!(parse_duration("500ms", ms), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2s", ms), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m30s", ms), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h 15m", ms), Ok(Duration::from_secs(4500)));
        assert_eq!(parse_duration("1.5s", ms), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("250us", ms), Ok(Duration::from_micros(250)));
    }

    #[test]
    fn a_plain_duration_counts_in_the_flags_unit() {
        assert_eq!(millis("250"), Ok(250));
        assert_eq!(millis("1s"), Ok(1000));
        assert_eq!(seconds("90"), Ok(Duration::from_secs(90)));
        assert_eq!(seconds("0.25"), Ok(Duration::from_millis(250)));
    }

    #[test]
    fn a_plain_number_after_a_group_is_refused() {
        // "1m30" is ambiguous: 30 what?
        assert!(matches!(
            parse_duration("1m30", Duration::from_secs(1)),
            Err(UnitError::UnknownUnit { .. })
        ));
        assert!(matches!(
            parse_duration("5 fortnights", Duration::from_secs(1)),
            Err(UnitError::UnknownUnit { .. })
        ));
    }
}
