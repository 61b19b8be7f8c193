//! Digests of the ledger file's bytes in fixed segments, which a checkpoint carries so that an open can
//! check the bytes it covers without hashing every line.
//!
//! Segment `i` is the bytes `i * SEGMENT .. (i + 1) * SEGMENT` of the file, whatever lines they cut; only
//! whole segments have digests. BLAKE3 runs several times faster than SHA-256 here, so checking these
//! digests costs a fraction of checking each line's own hash, and the segments let each thread check its own
//! part of the file.

/// Bytes per segment. A checkpoint records it, and its digests are used only under the same size.
pub(crate) const SEGMENT: u64 = 1 << 20;

/// The BLAKE3 digest of one segment.
pub(crate) type SegmentDigest = [u8; 32];

/// Digests the bytes fed to it, which start at a segment boundary and follow on from each other, one
/// digest per whole segment.
pub(super) struct SegmentHasher {
    /// The file offset of the next byte fed.
    at: u64,
    hasher: blake3::Hasher,
    digests: Vec<SegmentDigest>,
}

impl SegmentHasher {
    /// A hasher whose first byte is at `from`, a segment boundary.
    pub(super) fn new(from: u64) -> Self {
        debug_assert_eq!(from % SEGMENT, 0, "segments start on their boundaries");
        SegmentHasher { at: from, hasher: blake3::Hasher::new(), digests: Vec::new() }
    }

    pub(super) fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let room = usize::try_from(SEGMENT - self.at % SEGMENT).unwrap_or(usize::MAX);
            let (now, rest) = bytes.split_at(room.min(bytes.len()));
            self.hasher.update(now);
            self.at += now.len() as u64;
            bytes = rest;
            if self.at.is_multiple_of(SEGMENT) {
                self.digests.push(*self.hasher.finalize().as_bytes());
                self.hasher.reset();
            }
        }
    }

    /// The digests of the whole segments fed; a part-filled last one has none.
    pub(super) fn finish(self) -> Vec<SegmentDigest> {
        self.digests
    }
}

/// The hex form of `digests`, as a checkpoint stores them.
pub(crate) fn to_hex(digests: &[SegmentDigest]) -> Vec<String> {
    digests.iter().map(hex::encode).collect()
}

/// Reads back digests in hex; `None` if one is not 32 bytes of hex.
pub(crate) fn from_hex(digests: &[String]) -> Option<Vec<SegmentDigest>> {
    digests
        .iter()
        .map(|digest| {
            let mut bytes = [0; 32];
            hex::decode_to_slice(digest, &mut bytes).ok().map(|()| bytes)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_do_not_depend_on_how_the_bytes_are_fed() {
        let bytes: Vec<u8> = (0..(2 * SEGMENT + 10)).map(|i| (i % 251) as u8).collect();
        let mut whole = SegmentHasher::new(0);
        whole.feed(&bytes);
        let whole = whole.finish();
        assert_eq!(whole.len(), 2, "two whole segments; the ten bytes after them have no digest");
        assert_eq!(whole[0], *blake3::hash(&bytes[..SEGMENT as usize]).as_bytes());

        let mut pieces = SegmentHasher::new(0);
        for piece in bytes.chunks(333_333) {
            pieces.feed(piece);
        }
        assert_eq!(pieces.finish(), whole);

        let mut second = SegmentHasher::new(SEGMENT);
        second.feed(&bytes[SEGMENT as usize..]);
        assert_eq!(second.finish(), whole[1..]);
    }

    #[test]
    fn hex_round_trips_and_refuses_what_is_not_a_digest() {
        let digests = vec![[7; 32], [0xab; 32]];
        assert_eq!(from_hex(&to_hex(&digests)), Some(digests));
        assert_eq!(from_hex(&["ab".into()]), None);
        assert_eq!(from_hex(&["zz".repeat(32)]), None);
    }
}
