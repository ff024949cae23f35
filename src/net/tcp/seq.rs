//! Sequence numbers, which wrap: distances between them.

/// Signed distance from `base` to `seq`, valid while the two are within 2^31 of each other.
pub(super) fn seq_offset(seq: u32, base: u32) -> i64 {
    i64::from(seq.wrapping_sub(base) as i32)
}
