//! The Internet checksum (RFC 1071) used by IPv4, TCP, UDP, ICMP and ICMPv6.
//!
//! The sum is accumulated eight bytes at a time in a 64-bit register and
//! folded at the end; the benchmark generator checksums close to a gigabyte
//! per second of payload, so the byte-pair loop of the RFC would dominate.

/// A running one's-complement sum. Feed the pseudo-header and the segment in
/// any split, as long as every piece but the last has an even length.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sum(u64);

impl Sum {
    pub fn new() -> Self {
        Sum(0)
    }

    /// Adds `data`, read as big-endian 16-bit words (an odd trailing byte is
    /// padded with zero, as the RFC prescribes for the end of the data).
    #[inline]
    pub fn add_bytes(mut self, data: &[u8]) -> Self {
        let mut acc: u64 = self.0;
        let mut chunks = data.chunks_exact(8);
        for c in &mut chunks {
            // Four 16-bit words at once: sum the two 32-bit halves; carries
            // out of 32 bits stay in the upper part of `acc` and are folded
            // later, which one's-complement arithmetic allows.
            let v = u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
            acc += v >> 32;
            acc += v & 0xffff_ffff;
        }
        let rest = chunks.remainder();
        let mut pairs = rest.chunks_exact(2);
        for p in &mut pairs {
            acc += u16::from_be_bytes([p[0], p[1]]) as u64;
        }
        if let [last] = pairs.remainder() {
            acc += (*last as u64) << 8;
        }
        self.0 = acc;
        self
    }

    /// Adds a sum computed elsewhere (say by [`SliceSums`]) for data that
    /// starts at an even offset of the checksummed region.
    #[inline]
    pub fn add_sum(mut self, other: Sum) -> Self {
        self.0 += other.0;
        self
    }

    #[inline]
    pub fn add_u16(mut self, v: u16) -> Self {
        self.0 += v as u64;
        self
    }

    #[inline]
    pub fn add_u32(mut self, v: u32) -> Self {
        self.0 += (v >> 16) as u64 + (v & 0xffff) as u64;
        self
    }

    /// The folded, complemented 16-bit checksum to store in a header.
    #[inline]
    pub fn finish(self) -> u16 {
        let mut s = self.0;
        while s >> 16 != 0 {
            s = (s & 0xffff) + (s >> 16);
        }
        !(s as u16)
    }
}

/// Prefix sums over a fixed buffer, so the sum of any slice of it that
/// starts at an even offset costs O(1). The benchmark generator cuts every
/// payload out of one shared pattern; with this its checksums no longer read
/// the payload at all.
#[derive(Debug, Clone)]
pub struct SliceSums {
    /// `prefix[k]` is the sum of the first `k` big-endian words.
    prefix: Vec<u64>,
}

impl SliceSums {
    pub fn new(data: &[u8]) -> Self {
        let mut prefix = Vec::with_capacity(data.len() / 2 + 1);
        let mut acc = 0u64;
        prefix.push(0);
        for w in data.chunks_exact(2) {
            acc += u16::from_be_bytes([w[0], w[1]]) as u64;
            prefix.push(acc);
        }
        SliceSums { prefix }
    }

    /// The sum of `data[off..off + len]`, where `data` is the buffer this
    /// was built from. `None` for an odd `off` or a range outside the buffer.
    #[inline]
    pub fn slice_sum(&self, data: &[u8], off: usize, len: usize) -> Option<Sum> {
        if !off.is_multiple_of(2) || off + len > data.len() {
            return None;
        }
        let (a, b) = (off / 2, (off + len) / 2);
        let mut s = self.prefix.get(b)? - self.prefix.get(a)?;
        if !len.is_multiple_of(2) {
            s += (data[off + len - 1] as u64) << 8;
        }
        Some(Sum(s))
    }
}

/// Checksum of one contiguous buffer (e.g. an IPv4 header with its checksum
/// field zeroed, or an ICMPv4 message).
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    Sum::new().add_bytes(data).finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The RFC's definition, one 16-bit word at a time.
    fn reference(data: &[u8]) -> u16 {
        let mut s: u32 = 0;
        for p in data.chunks(2) {
            let w = if p.len() == 2 {
                u16::from_be_bytes([p[0], p[1]])
            } else {
                (p[0] as u16) << 8
            };
            s += w as u32;
            s = (s & 0xffff) + (s >> 16);
        }
        !(s as u16)
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: words 0001 f203 f4f5 f6f7 sum to ddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(checksum(&data), !0xddf2);
    }

    #[test]
    fn matches_reference_for_all_lengths() {
        let mut bytes = [0u8; 300];
        let mut r = crate::synth::rng::Rng::new(3);
        r.fill(&mut bytes);
        for len in 0..bytes.len() {
            assert_eq!(
                checksum(&bytes[..len]),
                reference(&bytes[..len]),
                "len {len}"
            );
        }
        let all_ff = [0xffu8; 64];
        assert_eq!(checksum(&all_ff), reference(&all_ff));
    }

    #[test]
    fn slice_sums_equal_direct_sums() {
        let mut data = vec![0u8; 4096];
        crate::synth::rng::Rng::new(9).fill(&mut data);
        let ss = SliceSums::new(&data);
        for (off, len) in [
            (0, 0),
            (0, 1),
            (2, 1447),
            (100, 1448),
            (4094, 2),
            (4000, 95),
        ] {
            let want = Sum::new().add_bytes(&data[off..off + len]).finish();
            assert_eq!(
                ss.slice_sum(&data, off, len).unwrap().finish(),
                want,
                "{off}+{len}"
            );
        }
        assert!(ss.slice_sum(&data, 1, 4).is_none());
        assert!(ss.slice_sum(&data, 4094, 3).is_none());
    }

    #[test]
    fn split_feeding_equals_whole() {
        let data: Vec<u8> = (0..101u32).map(|i| (i * 37 % 251) as u8).collect();
        let whole = checksum(&data);
        let split = Sum::new()
            .add_bytes(&data[..40])
            .add_bytes(&data[40..])
            .finish();
        assert_eq!(whole, split);
    }
}
