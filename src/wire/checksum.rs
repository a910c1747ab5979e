//! The Internet checksum (RFC 1071) over borrowed bytes, without allocation.
//!
//! Summation is etherparse's 64-bit one (eight bytes per step). A buffer is
//! valid when the folded sum of all its 16-bit words, checksum field
//! included, is 0xffff.

use etherparse::checksum::u64_16bit_word;
use std::net::IpAddr;

/// Adds `bytes` (padded with a zero byte if odd) to a running sum.
#[inline]
pub(crate) fn sum(start: u64, bytes: &[u8]) -> u64 {
    u64_16bit_word::add_slice(start, bytes)
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
    fn odd_length_pads_with_zero() {
        assert_eq!(fold(sum(0, &[0x12, 0x34, 0x56])), 0x1234 + 0x5600);
    }
}
