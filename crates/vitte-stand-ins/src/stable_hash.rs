//! A hash whose value never changes between runs, platforms or Rust versions
//! (FNV-1a, 64 bit), so "same input, same output" holds for replies, error
//! schedules and identifiers.

/// FNV-1a over a sequence of byte slices, each followed by a separator byte so
/// `["ab", "c"]` and `["a", "bc"]` differ.
pub(crate) fn fnv1a<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = OFFSET;
    for part in parts {
        for &byte in part.iter().chain(std::iter::once(&0xff)) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(PRIME);
        }
    }
    hash
}

/// Mixes an integer seed and counter into one well-spread value.
pub(crate) fn mix(seed: u64, counter: u64) -> u64 {
    fnv1a([&seed.to_le_bytes()[..], &counter.to_le_bytes()[..]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vector_and_separation() {
        // FNV-1a of the bytes "a", 0xff (the value and its separator).
        assert_eq!(fnv1a([&b"a"[..]]), 0x089b_c907_b544_c769);
        assert_ne!(fnv1a([&b"ab"[..], b"c"]), fnv1a([&b"a"[..], b"bc"]));
        assert_ne!(mix(1, 2), mix(2, 1));
    }
}
