//! The stored form of a JSON value: its text exactly as the client wrote it,
//! minus insignificant whitespace. Numbers, escapes and key order are kept
//! byte for byte, so a value reads back exactly as stored.

/// Removes whitespace outside strings from already-validated JSON text.
pub fn minify(raw: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut in_string = false;
    let mut escaped = false;
    for &b in raw.as_bytes() {
        if in_string {
            out.push(b);
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else if !matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
            if b == b'"' {
                in_string = true;
            }
            out.push(b);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::minify;

    #[test]
    fn whitespace_inside_strings_survives() {
        assert_eq!(
            minify("{ \"a b\" : [ 1 , \"x \\\" y\" ] }"),
            b"{\"a b\":[1,\"x \\\" y\"]}".to_vec()
        );
    }

    #[test]
    fn numbers_are_kept_as_written() {
        assert_eq!(minify(" 1.50e+3 "), b"1.50e+3".to_vec());
    }
}
