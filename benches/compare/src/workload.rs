//! The workload every engine runs: its keys, values and random orders.
//!
//! Key `i` is 16 bytes: one hex digit naming its prefix group (`i * 16 / keys`),
//! then `i` in 15 decimal digits. Keys therefore sort in `i` order (the
//! sequential load is in key order) and the 16 one-byte prefixes each hold
//! ~1/16 of the keys. A value is derived from its key index and a version, so any
//! read can be checked against what must have been written.

/// Sizes and counts of one run (the flags).
#[derive(Debug, Clone)]
pub struct Workload {
    /// Keys loaded (default 1M).
    pub keys: u64,
    /// Bytes per value (default 100, at least 16).
    pub value_bytes: usize,
    /// Most ops of each durable phase (it also stops after `durable_secs`).
    pub durable_ops: u64,
    /// Longest a durable phase runs, in seconds.
    pub durable_secs: f64,
    /// Writer threads of the concurrent durable phase (default 64).
    pub durable_threads: usize,
}

/// Prefix groups; a prefix scan reads every group once.
pub const PREFIXES: u64 = 16;

/// Bytes per key.
pub const KEY_BYTES: usize = 16;

impl Workload {
    /// Key number `i` (see the module docs for its layout).
    pub fn key(&self, i: u64) -> [u8; KEY_BYTES] {
        let group = i * PREFIXES / self.keys.max(1);
        let mut key = [0u8; KEY_BYTES];
        key[0] = HEX[usize::try_from(group % PREFIXES).unwrap_or(0)];
        let mut n = i;
        for b in key[1..].iter_mut().rev() {
            *b = b'0' + u8::try_from(n % 10).unwrap_or(0);
            n /= 10;
        }
        key
    }

    /// The prefix of group `g` (one byte).
    pub fn prefix(g: u64) -> [u8; 1] {
        [HEX[usize::try_from(g % PREFIXES).unwrap_or(0)]]
    }

    /// Keys in prefix group `g`: those `i` with `i * 16 / keys == g`.
    pub fn keys_in_group(&self, g: u64) -> u64 {
        let first = |g: u64| (g * self.keys).div_ceil(PREFIXES);
        first(g + 1).min(self.keys) - first(g).min(self.keys)
    }

    /// Fills `out` with the value of key `i` at `version`: the two numbers up
    /// front (so a stale or misplaced value is caught), then filler bytes.
    pub fn value_into(&self, i: u64, version: u64, out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(&i.to_le_bytes());
        out.extend_from_slice(&version.to_le_bytes());
        let mut x = i ^ (version << 56) ^ 0x9e37_79b9_7f4a_7c15;
        while out.len() < self.value_bytes {
            x = splitmix(x);
            out.extend_from_slice(&x.to_le_bytes());
        }
        out.truncate(self.value_bytes);
    }

    /// Whether `got` is the value of key `i` at `version`, checked by its header
    /// and length (the filler follows from them).
    pub fn value_matches(&self, i: u64, version: u64, got: &[u8]) -> bool {
        got.len() == self.value_bytes
            && got[..8] == i.to_le_bytes()
            && got[8..16] == version.to_le_bytes()
    }

    /// The key index stored in a value's header, if it has one.
    pub fn index_of_value(got: &[u8]) -> Option<u64> {
        Some(u64::from_le_bytes(got.get(..8)?.try_into().ok()?))
    }

    /// Every key index in a random order fixed by `seed` (Fisher-Yates).
    pub fn permutation(&self, seed: u64) -> Vec<u64> {
        let mut order: Vec<u64> = (0..self.keys).collect();
        let mut rng = Rng(seed);
        for i in (1..order.len()).rev() {
            let j = usize::try_from(rng.below(i as u64 + 1)).unwrap_or(0);
            order.swap(i, j);
        }
        order
    }
}

const HEX: [u8; 16] = *b"0123456789abcdef";

/// A small deterministic generator (splitmix64): enough for shuffles and key picks.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        splitmix(self.0)
    }

    /// A number in `0..n` (`n > 0`); the modulo bias is irrelevant here.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

fn splitmix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(keys: u64) -> Workload {
        Workload {
            keys,
            value_bytes: 100,
            durable_ops: 1,
            durable_secs: 1.0,
            durable_threads: 1,
        }
    }

    #[test]
    fn keys_sort_in_index_order_and_groups_cover_every_key() {
        let w = w(1000);
        let keys: Vec<_> = (0..1000).map(|i| w.key(i)).collect();
        assert!(keys.windows(2).all(|p| p[0] < p[1]));
        let total: u64 = (0..PREFIXES).map(|g| w.keys_in_group(g)).sum();
        assert_eq!(total, 1000);
        for g in 0..PREFIXES {
            let n = keys
                .iter()
                .filter(|k| k[0] == Workload::prefix(g)[0])
                .count();
            assert_eq!(n as u64, w.keys_in_group(g), "group {g}");
        }
    }

    #[test]
    fn a_value_matches_only_its_key_and_version() {
        let w = w(10);
        let mut v = Vec::new();
        w.value_into(3, 1, &mut v);
        assert_eq!(v.len(), 100);
        assert!(w.value_matches(3, 1, &v));
        assert!(!w.value_matches(3, 0, &v));
        assert!(!w.value_matches(4, 1, &v));
        assert_eq!(Workload::index_of_value(&v), Some(3));
    }

    #[test]
    fn a_permutation_holds_every_index_once() {
        let mut p = w(500).permutation(7);
        assert_ne!(p, (0..500).collect::<Vec<_>>());
        p.sort_unstable();
        assert_eq!(p, (0..500).collect::<Vec<_>>());
    }
}
