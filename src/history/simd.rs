//! Bit masks of 64 bytes by SIMD compares: the only `unsafe` in the crate.
//!
//! Why a module of its own: the intrinsics need `unsafe`, and keeping them
//! in one small file, beside the plain-integer reference they must agree
//! with, keeps the rest of the crate under `#![deny(unsafe_code)]`.
//!
//! Bit masks of 64 bytes (bit i: byte i): bytes below `-`, and commas.
//! One compare of 16 bytes per mask where the target has one (SSE2 on
//! x86_64, NEON on little-endian aarch64: both part of those targets, so
//! there is nothing to detect at run time; any other target takes
//! [`scalar_masks`]): eight bytes at a time in plain integers took about
//! a quarter of an influx replay's encoding.

#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline(always)]
pub fn masks(bytes: &[u8; 64]) -> (u64, u64) {
    use std::arch::x86_64::*;
    // The masks of bytes 16 * i.. (a movemask of 16 bytes sets only
    // the low 16 bits). Called with constant `i`: no shift by a
    // variable, no loop.
    let part = |i: usize| {
        let part = &bytes[16 * i..16 * i + 16];
        // SAFETY: `part` is 16 readable bytes (an unaligned load is
        // allowed); SSE2 is always there on x86_64.
        let (b, c) = unsafe {
            let v = _mm_loadu_si128(part.as_ptr().cast());
            let below = _mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(0x2c)), v);
            let commas = _mm_cmpeq_epi8(v, _mm_set1_epi8(b',' as i8));
            (_mm_movemask_epi8(below), _mm_movemask_epi8(commas))
        };
        (u64::from(b as u16), u64::from(c as u16))
    };
    let (p0, p1, p2, p3) = (part(0), part(1), part(2), part(3));
    (
        p0.0 | p1.0 << 16 | p2.0 << 32 | p3.0 << 48,
        p0.1 | p1.1 << 16 | p2.1 << 32 | p3.1 << 48,
    )
}

// Little-endian: lane 0 read as a u64 puts byte k of the fold at bits
// 8k..8k+8.
#[cfg(all(
    target_arch = "aarch64",
    target_feature = "neon",
    target_endian = "little"
))]
#[inline(always)]
pub fn masks(bytes: &[u8; 64]) -> (u64, u64) {
    use std::arch::aarch64::*;
    // SAFETY: four 16-byte loads inside `bytes`; NEON is always there
    // on aarch64.
    unsafe {
        let p = bytes.as_ptr();
        let v = [
            vld1q_u8(p),
            vld1q_u8(p.add(16)),
            vld1q_u8(p.add(32)),
            vld1q_u8(p.add(48)),
        ];
        // Bit j of byte j % 8 in each half, then three pairwise adds
        // fold 64 such bytes into the 8 bytes of one mask.
        const WEIGHTS: [u8; 16] = [1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128];
        let weights = vld1q_u8(WEIGHTS.as_ptr());
        let gather = |m: [uint8x16_t; 4]| {
            let m = m.map(|m| vandq_u8(m, weights));
            let a = vpaddq_u8(m[0], m[1]);
            let b = vpaddq_u8(m[2], m[3]);
            let c = vpaddq_u8(a, b);
            vgetq_lane_u64::<0>(vreinterpretq_u64_u8(vpaddq_u8(c, c)))
        };
        (
            gather(v.map(|v| vcltq_u8(v, vdupq_n_u8(b'-')))),
            gather(v.map(|v| vceqq_u8(v, vdupq_n_u8(b',')))),
        )
    }
}

#[cfg(not(any(
    all(target_arch = "x86_64", target_feature = "sse2"),
    all(
        target_arch = "aarch64",
        target_feature = "neon",
        target_endian = "little"
    )
)))]
pub use self::scalar_masks as masks;

/// [`masks`] in plain integers, eight bytes at a time: the masks of
/// targets without SIMD of their own (armv7, whose NEON is not part of the
/// target), and the tests' reference everywhere (hence the `allow`).
#[allow(dead_code)]
pub fn scalar_masks(bytes: &[u8; 64]) -> (u64, u64) {
    const LO7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // Bit 7 of each byte to bit i of one byte: the eight partial products
    // land on distinct bits, so nothing carries.
    let gather = |high: u64| high.wrapping_mul(0x0002_0408_1020_4081) >> 56;
    // High bit set where the low seven bits are below `x` and bit 7 is clear.
    let below =
        |w: u64, x: u8| !(((w & LO7) + u64::from(0x80 - x) * 0x0101_0101_0101_0101) | w) & HIGH;
    let mut masks = (0, 0);
    for (i, w) in bytes.chunks_exact(8).enumerate() {
        let w = u64::from_le_bytes(w.try_into().unwrap_or_default());
        let at = 8 * i;
        masks.0 |= gather(below(w, b'-')) << at;
        masks.1 |= gather(below(w ^ 0x2c2c_2c2c_2c2c_2c2c, 1)) << at;
    }
    masks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::parse::tests::xorshift;

    #[test]
    fn separator_masks_agree_with_byte_by_byte() {
        // Bytes around each boundary the masks draw, and high bytes.
        const PICK: &[u8] = b",,,,\n\n\n+-.0 \t\r\"\x00\x2b\x2c\x2d\x80\xac\x8a\xff\x7f";
        let mut x = 0x5eed_u64;
        for round in 0..20_000 {
            let mut bytes = [0u8; 64];
            for b in &mut bytes {
                let r = xorshift(&mut x);
                *b = if round % 2 == 0 {
                    PICK[r as usize % PICK.len()]
                } else {
                    r as u8
                };
            }
            let mut want = (0u64, 0u64);
            for (i, &b) in bytes.iter().enumerate() {
                want.0 |= u64::from(b < b'-') << i;
                want.1 |= u64::from(b == b',') << i;
            }
            assert_eq!(masks(&bytes), want, "{bytes:?}");
            assert_eq!(scalar_masks(&bytes), want, "{bytes:?}");
        }
    }
}
