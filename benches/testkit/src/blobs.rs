//! Deterministic bytes for blobs and layers.

/// `len` incompressible bytes, the same for the same `seed` (xorshift), so that fixtures are reproducible
/// and compression cannot flatter a figure.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_same_seed_gives_the_same_bytes_and_another_seed_others() {
        assert_eq!(super::random_bytes(7, 1000), super::random_bytes(7, 1000));
        assert_ne!(super::random_bytes(7, 1000), super::random_bytes(8, 1000));
        assert_eq!(super::random_bytes(1, 13).len(), 13);
    }
}
