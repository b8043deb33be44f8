//! Helpers shared by the fuzz targets: how a fuzz input chooses where a byte stream is split.
//!
//! The sans-IO core promises that the bytes a client sends may arrive in any pieces and the
//! result is the same. The targets check that promise by feeding one stream whole, byte by byte,
//! and in pieces whose lengths the fuzz input picks.

/// The most pieces one input may ask for (more adds little and slows every run).
const MAX_PIECES: usize = 16;

/// Reads a split header from the front of `data`: one byte `n` (taken modulo 16), then `n`
/// little-endian `u16` piece lengths. Returns the lengths and the rest of `data`.
///
/// A header cut short by the end of the input ends the list early.
pub fn split_header(data: &[u8]) -> (Vec<usize>, &[u8]) {
    let Some((&count, mut rest)) = data.split_first() else {
        return (Vec::new(), data);
    };
    let mut lengths = Vec::new();
    for _ in 0..usize::from(count) % MAX_PIECES {
        let Some((length, after)) = rest.split_first_chunk::<2>() else {
            break;
        };
        lengths.push(usize::from(u16::from_le_bytes(*length)));
        rest = after;
    }
    (lengths, rest)
}

/// Cuts `payload` into consecutive pieces of the given lengths (each clamped to what is left);
/// whatever remains is the last piece. Empty pieces are kept: an empty read must change nothing.
pub fn pieces<'a>(payload: &'a [u8], lengths: &[usize]) -> Vec<&'a [u8]> {
    let mut parts = Vec::with_capacity(lengths.len() + 1);
    let mut rest = payload;
    for &length in lengths {
        let (head, tail) = rest.split_at(length.min(rest.len()));
        parts.push(head);
        rest = tail;
    }
    parts.push(rest);
    parts
}

/// The three ways every target splits a stream: whole, in the chosen pieces, and byte by byte.
pub fn splits<'a>(payload: &'a [u8], lengths: &[usize]) -> [Vec<&'a [u8]>; 3] {
    [
        vec![payload],
        pieces(payload, lengths),
        payload.chunks(1).collect(),
    ]
}
