//! Cutting a verified block's common row into its fields at speed.
//!
//! Why here: the replay's line-protocol encoder runs this for every row of
//! a block that matched its index, so it must be branch-light; it belongs
//! beside the row format because it hard-codes that format's shape (a
//! 24-byte time, then seven fields ending in a newline).

use super::simd;

/// The fields of the common row of a verified block, without a branch
/// per field: a time of 24 bytes (the agent's form) and the other seven
/// fields within the 64 bytes after its comma. Those 64 bytes become bit
/// masks of their bytes below `-` (0x2d) and of their commas
/// ([`simd::masks`]); the first byte below `-` that is not a comma must be
/// the newline that ends the row, and exactly six commas must come before
/// it (a space or a `+` in a field sends the line to the row-by-row path).
/// A loop per separator mispredicted about once per field.
///
/// Returns the seven fields after the time as (start, length) in `buf`,
/// and where the row's newline is, or `None` for any other line (split by
/// [`super::parse::split8`], as a row read one by one). The caller checks that the first
/// 24 bytes are a time: then they hold no comma or newline.
///
/// The newline's place comes straight from the masks, not through the
/// fields: the next row's start waits on it, and a chain of six separators
/// taken off one by one in between made every row wait for the last.
#[inline(always)]
pub fn fast_cut(buf: &[u8], start: usize) -> Option<([(usize, usize); 7], usize)> {
    let bytes: &[u8; 65] = buf.get(start + 24..start + 25 + 64)?.try_into().ok()?;
    if bytes[0] != b',' {
        return None;
    }
    let (below, commas) = simd::masks(bytes[1..].try_into().ok()?);
    let others = below & !commas;
    let end = others & others.wrapping_neg();
    let at = end.trailing_zeros() as usize;
    if end == 0 || bytes[1 + at] != b'\n' {
        return None;
    }
    let base = start + 25;
    let newline = base + at;
    // The commas before the newline, then the newline: the separators
    // that end the seven fields. Taken off one at a time, lowest first;
    // with fewer than six commas a field's length is nonsense, but then
    // no bit is left for the newline, and it is not used.
    let mut seps = commas & (end - 1) | end;
    let mut from = base;
    let mut next = || {
        let at = base + seps.trailing_zeros() as usize;
        seps &= seps.wrapping_sub(1);
        let field = (from, at.wrapping_sub(from));
        from = at + 1;
        field
    };
    let six = [next(), next(), next(), next(), next(), next()];
    // Exactly one bit left, the newline (the highest): six commas.
    if seps != end {
        return None;
    }
    let last = (from, newline - from);
    Some((
        [six[0], six[1], six[2], six[3], six[4], six[5], last],
        newline,
    ))
}
