//! Keys taken from request paths: the raw path after `/kv/`, percent-decoded
//! exactly once, so `%2F` is a `/` inside the key and `%25` a `%`.
//!
//! The raw URI is decoded here rather than taken from actix's match info,
//! whose partial re-quoting of reserved characters would otherwise have to be
//! undone; the route pattern `/kv/{key:.*}` only selects the handler.

use actix_web::HttpRequest;

use super::error::{ApiError, KeyProblem};

/// The path prefix of single-key routes.
pub const PREFIX: &str = "/kv/";

/// The key of a `/kv/{key}` request, checked against `max` bytes.
pub fn from_path(req: &HttpRequest, max: usize) -> Result<String, ApiError> {
    let raw = req.uri().path();
    let encoded = raw.strip_prefix(PREFIX).unwrap_or(raw);
    let key = String::from_utf8(percent_decode(encoded.as_bytes()))
        .map_err(|_| ApiError::InvalidKey(KeyProblem::NotUtf8))?;
    check(&key, max).map_err(ApiError::InvalidKey)?;
    Ok(key)
}

/// Checks a key's length: 1..=`max` bytes.
pub fn check(key: &str, max: usize) -> Result<(), KeyProblem> {
    if key.is_empty() {
        return Err(KeyProblem::Empty);
    }
    if key.len() > max {
        return Err(KeyProblem::TooLong {
            len: key.len(),
            max,
        });
    }
    Ok(())
}

/// Decodes `%XX` escapes; a `%` not followed by two hex digits stays as it is.
fn percent_decode(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        let b = input[i];
        if b == b'%'
            && let (Some(hi), Some(lo)) = (
                input.get(i + 1).and_then(|&c| hex(c)),
                input.get(i + 2).and_then(|&c| hex(c)),
            )
        {
            out.push(hi << 4 | lo);
            i += 3;
            continue;
        }
        out.push(b);
        i += 1;
    }
    out
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::percent_decode;

    #[test]
    fn escapes_decode_once() {
        assert_eq!(percent_decode(b"a%2Fb%252F"), b"a/b%2F".to_vec());
    }

    #[test]
    fn a_lone_percent_stays() {
        assert_eq!(percent_decode(b"50%+%4"), b"50%+%4".to_vec());
    }
}
