//! The Internet checksum (RFC 1071) over borrowed bytes, without allocation.
//!
//! Bulk summation adds 32-bit words into four independent 64-bit
//! accumulators (sixteen bytes per step, no carry chain, which the compiler
//! can vectorise); folding and the pseudo-header use etherparse's helpers. A
//! buffer is valid when the folded sum of all its 16-bit words, checksum
//! field included, is 0xffff.

use etherparse::checksum::u64_16bit_word;
use std::net::IpAddr;

/// Adds `bytes` (padded with a zero byte if odd) to a running sum.
///
/// A wider word read in native order is, modulo 0xffff, the sum of its
/// native 16-bit words (2^16 is 1 modulo 0xffff), and every fold works
/// modulo 0xffff; so summing 64-bit words exactly, in 128-bit accumulators
/// that cannot overflow, gives the same folded result as summing 16-bit
/// words with end-around carry, at a quarter of the additions. Two
/// accumulators keep the two carry chains independent.
#[inline]
pub(crate) fn sum(start: u64, bytes: &[u8]) -> u64 {
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
    // 2^64 is 1 modulo 0xffff: fold the high half in, with end-around carry
    // so the result stays a ones' complement sum.
    let (s, carry) = (total as u64).overflowing_add((total >> 64) as u64);
    s + u64::from(carry)
}

/// Folds a running sum to 16 bits, in network byte order.
#[inline]
pub(crate) fn fold(sum: u64) -> u16 {
    // `ones_complement` folds and inverts (in native order); undo the
    // inversion and fix the byte order.
    u16::from_be_bytes((!u64_16bit_word::ones_complement(sum)).to_ne_bytes())
}

/// The TCP/UDP/ICMPv6 pseudo-header: addresses, upper-layer length,
/// protocol.
#[inline]
pub(crate) fn pseudo_header(src: IpAddr, dst: IpAddr, proto: u8, len: u32) -> u64 {
    let mut s = 0u64;
    match (src, dst) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            s = u64_16bit_word::add_4bytes(s, a.octets());
            s = u64_16bit_word::add_4bytes(s, b.octets());
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            s = sum(s, &a.octets());
            s = sum(s, &b.octets());
        }
        // Mixed families cannot come out of the decoder.
        _ => {}
    }
    s = u64_16bit_word::add_4bytes(s, len.to_be_bytes());
    u64_16bit_word::add_2bytes(s, [0, proto])
}

/// Checksum to write into a header whose checksum field is zero.
pub(crate) fn compute(bytes: &[u8]) -> u16 {
    !fold(sum(0, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let mut x = 0x1234_5678_9abc_def1u64;
        let data: Vec<u8> = (0..300)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let ones = vec![0xffu8; 300];
        for buf in [&data[..], &ones[..]] {
            for len in 0..buf.len() {
                for start in [0u64, 1, 0xffff, u64::MAX - 3, 0x8000_0000_0000_0000] {
                    let want = fold(u64_16bit_word::add_slice(start, &buf[..len]));
                    assert_eq!(
                        fold(sum(start, &buf[..len])),
                        want,
                        "len {len} start {start}"
                    );
                }
            }
        }
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(fold(sum(0, &[0x12, 0x34, 0x56])), 0x1234 + 0x5600);
    }
}
