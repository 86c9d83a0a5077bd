//! Keys as the keydir stores and compares them.
//!
//! [`Key`] keeps up to 16 bytes inline (no heap allocation, no pointer to chase
//! in a B-tree node). Comparisons — the bulk of a keydir lookup — first compare
//! the leading two 8-byte words as big-endian integers and fall back to a full
//! byte-wise comparison only on a tie, which gives exactly byte-wise
//! (lexicographic) order: zero padding sorts a shorter key first, as a prefix
//! does, and padding ties fall through to the full comparison. Lookups borrow a
//! key as a [`KeySlice`], so they allocate nothing.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;
use std::ops::Deref;

use smallvec::SmallVec;

/// An owned key.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Key(SmallVec<[u8; 16]>);

/// A borrowed key with the keydir's ordering; the same bytes as a `[u8]`.
#[derive(PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct KeySlice([u8]);

impl Key {
    /// Copies `bytes` into a key.
    pub fn from_slice(bytes: &[u8]) -> Key {
        // A whole inline buffer moves in two loads; the general copy is a
        // memcpy call.
        match bytes.first_chunk::<16>() {
            Some(buf) if bytes.len() == 16 => Key(SmallVec::from_buf(*buf)),
            _ => Key(SmallVec::from_slice(bytes)),
        }
    }
}

impl KeySlice {
    /// Views `bytes` as a key.
    #[allow(unsafe_code, reason = "audited: see the SAFETY comment")]
    pub fn new(bytes: &[u8]) -> &KeySlice {
        // SAFETY: KeySlice is repr(transparent) over [u8], so the two references
        // have the same layout and metadata (length); lifetimes are carried over.
        unsafe { &*(std::ptr::from_ref::<[u8]>(bytes) as *const KeySlice) }
    }

    /// The key's bytes.
    #[allow(dead_code, reason = "unused since the module went private")]
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// The first 8 bytes as a big-endian integer, zero-padded.
#[inline]
fn leading_word(b: &[u8]) -> u64 {
    // One load for a key of 8 bytes or more. A variable-length copy into a
    // stack word compiles to a memcpy call whose narrow stores the word's
    // load then waits on (no store forwarding): a dozen cycles per compare.
    if let Some(word) = b.first_chunk::<8>() {
        return u64::from_be_bytes(*word);
    }
    b.iter()
        .zip((0..8u32).rev())
        .fold(0, |word, (&byte, at)| word | u64::from(byte) << (8 * at))
}

fn second_word(b: &[u8]) -> u64 {
    leading_word(b.get(8..).unwrap_or(&[]))
}

/// The first two words of a key, the prefix of its ordering.
pub(crate) fn words(b: &[u8]) -> (u64, u64) {
    (leading_word(b), second_word(b))
}

/// The order of two keys whose first two words (see [`words`]) are equal.
///
/// Keys of at most 16 bytes are whole in their zero-padded words, so then the
/// shorter is a prefix of the other (the smaller) and equal lengths mean equal
/// keys: no memcmp. Overwrites of one key meet here in every sort and merge of
/// a segment's entries.
pub(crate) fn cmp_past_words(a: &[u8], b: &[u8]) -> Ordering {
    if a.len() <= 16 && b.len() <= 16 {
        a.len().cmp(&b.len())
    } else {
        a.cmp(b)
    }
}

/// Byte order of two keys, by their words first (no memcmp for keys of at
/// most 16 bytes).
pub(crate) fn cmp_keys(a: &[u8], b: &[u8]) -> Ordering {
    // Two words cover a 16-byte key whole, including keys that share an
    // 8-byte prefix ("session:…"), before any memcmp.
    leading_word(a)
        .cmp(&leading_word(b))
        .then_with(|| second_word(a).cmp(&second_word(b)))
        .then_with(|| cmp_past_words(a, b))
}

/// Whether two keys are equal, by their words for keys of at most 16 bytes.
pub(crate) fn same_key(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len()
        && if a.len() <= 16 {
            words(a) == words(b)
        } else {
            a == b
        }
}

impl Ord for KeySlice {
    fn cmp(&self, other: &KeySlice) -> Ordering {
        cmp_keys(&self.0, &other.0)
    }
}

impl PartialOrd for KeySlice {
    fn partial_cmp(&self, other: &KeySlice) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Key {
    fn cmp(&self, other: &Key) -> Ordering {
        KeySlice::new(&self.0).cmp(KeySlice::new(&other.0))
    }
}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Key) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Borrow<KeySlice> for Key {
    fn borrow(&self) -> &KeySlice {
        KeySlice::new(&self.0)
    }
}

impl Deref for Key {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(&self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn prefixes_sort_first_and_zero_bytes_are_not_padding() {
        let mut keys: Vec<Key> = [&b"ab"[..], b"ab\0", b"a", b"ab\0\0\0\0\0\0\x01", b"b", b""]
            .iter()
            .map(|k| Key::from_slice(k))
            .collect();
        keys.sort();
        let got: Vec<&[u8]> = keys.iter().map(|k| &**k).collect();
        assert_eq!(
            got,
            vec![&b""[..], b"a", b"ab", b"ab\0", b"ab\0\0\0\0\0\0\x01", b"b"]
        );
    }

    proptest! {
        #[test]
        fn order_is_exactly_byte_order(a in proptest::collection::vec(prop_oneof![Just(0u8), any::<u8>()], 0..24),
                                       b in proptest::collection::vec(prop_oneof![Just(0u8), any::<u8>()], 0..24)) {
            prop_assert_eq!(Key::from_slice(&a).cmp(&Key::from_slice(&b)), a.cmp(&b));
        }

        #[test]
        fn words_then_past_words_is_byte_order(a in proptest::collection::vec(prop_oneof![Just(0u8), any::<u8>()], 0..24),
                                               b in proptest::collection::vec(prop_oneof![Just(0u8), any::<u8>()], 0..24)) {
            let split = words(&a).cmp(&words(&b)).then_with(|| cmp_past_words(&a, &b));
            prop_assert_eq!(split, a.cmp(&b));
        }
    }
}
