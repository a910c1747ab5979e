//! The Internet checksum (RFC 1071) over borrowed bytes, without allocation.
//!
//! A buffer is valid when the folded sum of all its 16-bit words, checksum
//! field included, is 0xffff. Two summation paths give the same folded
//! result:
//!
//! * AVX2, where the CPU has it (checked once per process by std's cached
//!   feature detection), for buffers of [`SIMD_MIN`] bytes or more: 256
//!   bytes per step in four independent vector accumulators; the tail is
//!   the buffer's last 32 bytes loaded again and masked, so one call does
//!   the whole buffer with no scalar loop.
//! * Portable: 64-bit words into 128-bit accumulators, sixteen bytes per
//!   step.
//!
//! Folding is written out here (a few shifts and adds) rather than taken
//! from etherparse, because it runs for every packet; the tests check it
//! against etherparse's. A verification needs no fold at all: see
//! `folds_to_ffff`.

use std::net::IpAddr;

/// Below this many bytes the vector setup and reduction cost more than they
/// save.
const SIMD_MIN: usize = 128;

/// Adds `bytes` (padded with a zero byte if odd) to a running sum.
///
/// The result is only meaningful modulo 0xffff (and its being zero or not):
/// every path and every fold work modulo 0xffff, where 2^16 is 1, so wider
/// words read in native order sum to the same folded value as 16-bit words
/// with end-around carry.
#[inline]
pub(crate) fn sum(start: u64, bytes: &[u8]) -> u64 {
    #[cfg(target_arch = "x86_64")]
    if bytes.len() >= SIMD_MIN && std::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 is present, checked just above; the buffer holds at
        // least 32 bytes (SIMD_MIN is above that).
        return unsafe { avx2::sum(start, bytes) };
    }
    sum_scalar(start, bytes)
}

/// `a + b` with end-around carry: equal modulo 0xffff, and zero only when
/// both are.
#[inline(always)]
fn add_carry(a: u64, b: u64) -> u64 {
    let (s, carry) = a.overflowing_add(b);
    s + u64::from(carry)
}

/// The portable summation: sixteen bytes per step in two 128-bit
/// accumulators, which cannot overflow and keep the two carry chains
/// independent.
#[inline]
pub(crate) fn sum_scalar(start: u64, bytes: &[u8]) -> u64 {
    let word = |b: &[u8]| {
        u128::from(u64::from_ne_bytes([
            b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
        ]))
    };
    let mut acc = [0u128; 2];
    let mut chunks = bytes.chunks_exact(16);
    for c in &mut chunks {
        acc[0] += word(&c[0..8]);
        acc[1] += word(&c[8..16]);
    }
    let mut total = acc[0] + acc[1] + u128::from(start);
    let mut rest = chunks.remainder();
    if rest.len() >= 8 {
        total += word(rest);
        rest = &rest[8..];
    }
    if rest.len() >= 4 {
        total += u128::from(u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]));
        rest = &rest[4..];
    }
    if rest.len() >= 2 {
        total += u128::from(u16::from_ne_bytes([rest[0], rest[1]]));
        rest = &rest[2..];
    }
    if let [last] = rest {
        total += u128::from(u16::from_ne_bytes([*last, 0]));
    }
    // 2^64 is 1 modulo 0xffff: fold the high half in.
    add_carry(total as u64, (total >> 64) as u64)
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::add_carry;
    use std::arch::x86_64::*;

    /// Bytes summed between two widenings of the 32-bit lanes: 2048 steps
    /// of 256 bytes. Each step adds two vectors, at most 2^16 in magnitude
    /// each, to a lane of each of the four accumulators, which are added
    /// before widening; with the tail vector, 2^30 + 2^16 in all, which
    /// cannot overflow.
    const ROUND: usize = 2048 * 256;

    /// Where the tail mask is loaded from: `MASK[rem..rem + 32]` keeps the
    /// last `rem` bytes of a vector and zeroes the others.
    static MASK: [u8; 64] = {
        let mut m = [0u8; 64];
        let mut i = 32;
        while i < 64 {
            m[i] = 0xff;
            i += 1;
        }
        m
    };

    /// The whole of [`super::sum`] for buffers of 32 bytes or more: vector
    /// steps, the tail, the reduction and the start value in one call.
    ///
    /// `vpmaddwd` adds pairs of *signed* words; flipping each word's top bit
    /// first turns an unsigned word `u` into the signed `u - 32768`, so the
    /// lanes hold the sum less 32768 per word, added back at the end.
    ///
    /// The tail (what is left after the last whole 32 bytes) is the last
    /// 32 bytes of the buffer, loaded again, with the bytes already summed
    /// masked to zero. When the buffer's length is odd that load starts at
    /// an odd offset and pairs every byte with the wrong neighbour; swapping
    /// the two bytes of each word puts each byte back in the half of a
    /// native word its offset calls for (even offsets low), which is all the
    /// sum depends on.
    ///
    /// # Safety
    /// The CPU must support AVX2, and `bytes` must hold at least 32 bytes.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn sum(start: u64, bytes: &[u8]) -> u64 {
        debug_assert!(bytes.len() >= 32);
        let flip = _mm256_set1_epi16(i16::MIN);
        let ones = _mm256_set1_epi16(1);
        let len = bytes.len();
        let full = len / 32 * 32;
        let rem = len - full;
        let first = if rem == 0 {
            _mm256_setzero_si256()
        } else {
            let last: &[u8; 32] = bytes[len - 32..].try_into().expect("32 bytes");
            // SAFETY: `last` holds 32 bytes; `MASK[rem..rem + 32]` lies in
            // MASK since `rem < 32`.
            let (v, m) = unsafe {
                (
                    _mm256_loadu_si256(last.as_ptr().cast()),
                    _mm256_loadu_si256(MASK.as_ptr().add(rem).cast()),
                )
            };
            let mut v = _mm256_and_si256(v, m);
            if len % 2 == 1 {
                let swap = _mm256_setr_epi8(
                    1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14, 1, 0, 3, 2, 5, 4, 7, 6,
                    9, 8, 11, 10, 13, 12, 15, 14,
                );
                v = _mm256_shuffle_epi8(v, swap);
            }
            _mm256_madd_epi16(_mm256_xor_si256(v, flip), ones)
        };
        // The first round takes the tail; there is one (`full >= 32`), and
        // the only one for any packet.
        let mut rounds = bytes[..full].chunks(ROUND);
        let one = rounds.next().expect("32 bytes or more");
        // SAFETY: AVX2 is present (this function's own requirement).
        let mut wide = unsafe { widen(round(first, one)) };
        for r in rounds {
            // SAFETY: as above.
            wide = _mm256_add_epi64(wide, unsafe { widen(round(_mm256_setzero_si256(), r)) });
        }
        let half = _mm_add_epi64(
            _mm256_castsi256_si128(wide),
            _mm256_extracti128_si256::<1>(wide),
        );
        // Signed: the biased lanes may sum to below zero.
        let total = _mm_cvtsi128_si64(half) + _mm_extract_epi64::<1>(half);
        // 16 words per vector (the tail's included), each biased by -32768.
        let vectors = len.div_ceil(32) as i64;
        add_carry(start, (total + vectors * 16 * 32768) as u64)
    }

    /// The biased 32-bit lane sums of `body` (a multiple of 32 bytes, at
    /// most [`ROUND`]), plus `acc`.
    ///
    /// # Safety
    /// The CPU must support AVX2.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn round(acc: __m256i, body: &[u8]) -> __m256i {
        let flip = _mm256_set1_epi16(i16::MIN);
        let ones = _mm256_set1_epi16(1);
        // A macro, not a closure, so that the intrinsics stay inside this
        // AVX2 function.
        macro_rules! lane {
            ($s:expr, $at:expr) => {{
                let b: &[u8] = &$s[$at..$at + 32];
                // SAFETY: `b` holds 32 bytes; loadu needs no alignment.
                let v = unsafe { _mm256_loadu_si256(b.as_ptr().cast()) };
                _mm256_madd_epi16(_mm256_xor_si256(v, flip), ones)
            }};
        }
        let zero = _mm256_setzero_si256();
        let (mut a0, mut a1, mut a2, mut a3) = (acc, zero, zero, zero);
        let mut steps = body.chunks_exact(256);
        for c in &mut steps {
            a0 = _mm256_add_epi32(a0, lane!(c, 0));
            a1 = _mm256_add_epi32(a1, lane!(c, 32));
            a2 = _mm256_add_epi32(a2, lane!(c, 64));
            a3 = _mm256_add_epi32(a3, lane!(c, 96));
            a0 = _mm256_add_epi32(a0, lane!(c, 128));
            a1 = _mm256_add_epi32(a1, lane!(c, 160));
            a2 = _mm256_add_epi32(a2, lane!(c, 192));
            a3 = _mm256_add_epi32(a3, lane!(c, 224));
        }
        // Below 256 bytes left, a multiple of 32.
        let mut r = steps.remainder();
        if r.len() >= 128 {
            a0 = _mm256_add_epi32(a0, lane!(r, 0));
            a1 = _mm256_add_epi32(a1, lane!(r, 32));
            a2 = _mm256_add_epi32(a2, lane!(r, 64));
            a3 = _mm256_add_epi32(a3, lane!(r, 96));
            r = &r[128..];
        }
        if r.len() >= 64 {
            a0 = _mm256_add_epi32(a0, lane!(r, 0));
            a1 = _mm256_add_epi32(a1, lane!(r, 32));
            r = &r[64..];
        }
        if r.len() >= 32 {
            a2 = _mm256_add_epi32(a2, lane!(r, 0));
        }
        _mm256_add_epi32(_mm256_add_epi32(a0, a1), _mm256_add_epi32(a2, a3))
    }

    /// Eight signed 32-bit lanes summed pairwise into four 64-bit ones.
    ///
    /// # Safety
    /// The CPU must support AVX2.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn widen(acc: __m256i) -> __m256i {
        _mm256_add_epi64(
            _mm256_cvtepi32_epi64(_mm256_castsi256_si128(acc)),
            _mm256_cvtepi32_epi64(_mm256_extracti128_si256::<1>(acc)),
        )
    }
}

/// Folds a running sum to 16 bits with end-around carry, in native byte
/// order: 0 only for a zero sum, else in 1..=0xffff.
#[inline(always)]
fn fold_native(s: u64) -> u16 {
    let s = (s >> 32) + (s & 0xffff_ffff);
    let s = (s >> 16) + (s & 0xffff);
    let s = (s >> 16) + (s & 0xffff);
    let s = (s >> 16) + (s & 0xffff);
    s as u16
}

/// Folds a running sum to 16 bits, in network byte order.
#[inline]
pub(crate) fn fold(sum: u64) -> u16 {
    u16::from_be_bytes(fold_native(sum).to_ne_bytes())
}

/// Whether `bytes`, with the running sum `start` (a pseudo-header, or 0),
/// checks out: their folded sum is 0xffff (the same in either byte order).
#[inline]
pub(crate) fn verifies(start: u64, bytes: &[u8]) -> bool {
    folds_to_ffff(sum(start, bytes))
}

/// `fold_native(s) == 0xffff`, without the fold: folding keeps the value
/// modulo 0xffff and gives 0 only for 0, so the fold is 0xffff exactly
/// when `s` is a non-zero multiple of 0xffff (a multiply by a constant,
/// where the fold is a chain of shifts and adds).
#[inline(always)]
fn folds_to_ffff(s: u64) -> bool {
    s != 0 && s.is_multiple_of(0xffff)
}

/// [`verifies`] for a 20-byte header (an IPv4 header without options):
/// five 32-bit words, no loop.
#[inline]
pub(crate) fn verifies_20(h: &[u8; 20]) -> bool {
    let w = |i: usize| u64::from(u32::from_ne_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]));
    folds_to_ffff(w(0) + w(4) + w(8) + w(12) + w(16))
}

/// The TCP/UDP/ICMPv6 pseudo-header: addresses, upper-layer length,
/// protocol.
#[inline(always)]
pub(crate) fn pseudo_header(src: IpAddr, dst: IpAddr, proto: u8, len: u32) -> u64 {
    // Words in native order, like `sum`'s; none of these adds can overflow.
    let mut s = u64::from(u32::from_ne_bytes(len.to_be_bytes()))
        + u64::from(u16::from_ne_bytes([0, proto]));
    match (src, dst) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            s += u64::from(u32::from_ne_bytes(a.octets()))
                + u64::from(u32::from_ne_bytes(b.octets()));
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let (a, b) = (a.octets(), b.octets());
            for half in [&a[..8], &a[8..], &b[..8], &b[8..]] {
                let w = u64::from_ne_bytes(half.try_into().expect("8 bytes"));
                s = add_carry(s, w);
            }
        }
        // Mixed families cannot come out of the decoder.
        _ => {}
    }
    s
}

/// Checksum to write into a header whose checksum field is zero.
pub(crate) fn compute(bytes: &[u8]) -> u16 {
    !fold(sum(0, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::checksum::u64_16bit_word;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn noise(n: usize, mut x: u64) -> Vec<u8> {
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    /// The plain definition: big-endian 16-bit words, end-around carry.
    fn reference(start16: u16, bytes: &[u8]) -> u16 {
        let mut s = u32::from(start16);
        for w in bytes.chunks(2) {
            s += u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]));
            s = (s & 0xffff) + (s >> 16);
        }
        s as u16
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3 example words: 0001 f203 f4f5 f6f7 → sum ddf2.
        let b = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(0, &b)), 0xddf2);
        assert_eq!(compute(&b), !0xddf2);
    }

    #[test]
    fn matches_sixteen_bit_summation_for_every_length_and_start() {
        // Reference: etherparse's 16-bit-word summation with carries.
        let data = noise(300, 0x1234_5678_9abc_def1);
        let ones = vec![0xffu8; 300];
        for buf in [&data[..], &ones[..]] {
            for len in 0..buf.len() {
                for start in [0u64, 1, 0xffff, u64::MAX - 3, 0x8000_0000_0000_0000] {
                    let want = u16::from_be_bytes(
                        (!u64_16bit_word::ones_complement(u64_16bit_word::add_slice(
                            start,
                            &buf[..len],
                        )))
                        .to_ne_bytes(),
                    );
                    assert_eq!(
                        fold(sum(start, &buf[..len])),
                        want,
                        "len {len} start {start}"
                    );
                }
            }
        }
    }

    /// Both paths (vector where the CPU has it, and portable) against the
    /// plain 16-bit sum, for every length to 2048 at every start offset to
    /// 16, on noise, all-ones and all-zero data.
    #[test]
    fn every_path_matches_the_plain_sum_for_all_lengths_and_offsets() {
        let patterns = [
            noise(2048 + 16, 7),
            vec![0xff; 2048 + 16],
            vec![0; 2048 + 16],
        ];
        for buf in &patterns {
            for off in 0..16 {
                for len in 0..=2048 {
                    let b = &buf[off..off + len];
                    let want = reference(0, b);
                    assert_eq!(fold(sum(0, b)), want, "sum: off {off} len {len}");
                    assert_eq!(fold(sum_scalar(0, b)), want, "scalar: off {off} len {len}");
                    #[cfg(target_arch = "x86_64")]
                    if len >= 32 && std::is_x86_feature_detected!("avx2") {
                        // The vector path's sum is exact, not just equal
                        // modulo 0xffff: compare it word for word.
                        // SAFETY: AVX2 is present; 32 bytes or more.
                        let v = unsafe { avx2::sum(0, b) };
                        let words: u64 = b
                            .chunks(2)
                            .map(|w| u64::from(u16::from_ne_bytes([w[0], *w.get(1).unwrap_or(&0)])))
                            .sum();
                        assert_eq!(v, words, "avx2: off {off} len {len}");
                        for start in [1u64, 0xffff, u64::MAX - 3] {
                            // SAFETY: as above.
                            let v = unsafe { avx2::sum(start, b) };
                            assert_eq!(
                                fold(v),
                                fold(sum_scalar(start, b)),
                                "avx2: off {off} len {len} start {start}"
                            );
                        }
                    }
                }
            }
        }
    }

    /// Buffers long enough for several vector rounds (the lane bounds).
    #[test]
    fn long_buffers_sum_exactly() {
        let round = 2048 * 256;
        for len in [
            round - 2,
            round,
            round + 31,
            round + 96,
            2 * round + 255,
            (3 << 20) + 1,
        ] {
            for buf in [vec![0xffu8; len], noise(len, len as u64)] {
                let want = reference(0, &buf);
                assert_eq!(fold(sum(0, &buf)), want, "len {len}");
            }
        }
    }

    #[test]
    fn fold_matches_etherparse() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut values = vec![0, 1, 0xffff, 0x1_0000, 0xffff_ffff, u64::MAX, u64::MAX - 1];
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            values.push(x);
            values.push(x >> (x % 64));
        }
        values.extend((0..100_000u64).map(|k| k * 0xffff));
        values.extend((1..100_000u64).map(|k| u64::MAX - k));
        for v in values {
            let want = !u64_16bit_word::ones_complement(v);
            assert_eq!(fold_native(v), want, "{v:#x}");
            assert_eq!(folds_to_ffff(v), fold_native(v) == 0xffff, "{v:#x}");
        }
    }

    #[test]
    fn pseudo_header_matches_the_textbook_layout() {
        let v4 = (
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
            IpAddr::V4(Ipv4Addr::new(198, 51, 100, 255)),
        );
        let v6 = (
            IpAddr::V6(Ipv6Addr::new(
                0xfe80, 0, 0, 0, 0xffff, 0xffff, 0xffff, 0xffff,
            )),
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 1, 2, 3, 4, 5, 0xffff)),
        );
        for (src, dst) in [v4, v6] {
            for (proto, len) in [(6u8, 20u32), (17, 0xffff), (58, 0x1_0000), (6, u32::MAX)] {
                let mut p = Vec::new();
                match (src, dst) {
                    (IpAddr::V4(a), IpAddr::V4(b)) => {
                        p.extend_from_slice(&a.octets());
                        p.extend_from_slice(&b.octets());
                    }
                    (IpAddr::V6(a), IpAddr::V6(b)) => {
                        p.extend_from_slice(&a.octets());
                        p.extend_from_slice(&b.octets());
                    }
                    _ => unreachable!(),
                }
                p.extend_from_slice(&len.to_be_bytes());
                p.extend_from_slice(&[0, 0, 0, proto]);
                assert_eq!(
                    fold(pseudo_header(src, dst, proto, len)),
                    reference(0, &p),
                    "{src} {dst} {proto} {len}"
                );
            }
        }
    }

    #[test]
    fn verifies_accepts_exactly_a_correct_checksum() {
        let mut b = noise(1500, 3);
        b[16] = 0;
        b[17] = 0;
        let start = 0x1234_5678u64;
        let c = !fold(sum(start, &b));
        b[16..18].copy_from_slice(&c.to_be_bytes());
        assert!(verifies(start, &b));
        b[700] ^= 1;
        assert!(!verifies(start, &b));
    }

    #[test]
    fn twenty_byte_headers_verify_as_any_buffer() {
        let mut b = noise(20 * 2000, 11);
        // Some valid ones too, and extremes.
        for (i, h) in b.chunks_exact_mut(20).enumerate() {
            match i % 4 {
                0 => {
                    h[10] = 0;
                    h[11] = 0;
                    let c = compute(h);
                    h[10..12].copy_from_slice(&c.to_be_bytes());
                }
                1 if i % 8 == 1 => h.fill(0xff),
                1 => h.fill(0),
                _ => {}
            }
        }
        let mut valid = 0;
        for h in b.chunks_exact(20) {
            let h: &[u8; 20] = h.try_into().unwrap();
            assert_eq!(verifies_20(h), verifies(0, h), "{h:?}");
            assert_eq!(verifies_20(h), reference(0, h) == 0xffff, "{h:?}");
            valid += usize::from(verifies_20(h));
        }
        assert!(valid >= 500, "{valid}");
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(fold(sum(0, &[0x12, 0x34, 0x56])), 0x1234 + 0x5600);
    }
}
