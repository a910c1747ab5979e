//! Damaged captures for tests: a reproducible random source and a mutator
//! that breaks a capture the ways files get broken (shared by the capture
//! tests through `mod common;`).

/// xorshift64*: a fixed sequence, so failures reproduce.
pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Damages a capture: flipped bits, odd bytes, cuts, insertions, and
/// overwritten 32-bit fields (lengths, interface numbers, types).
pub fn mutate(seed: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut b = seed.to_vec();
    for _ in 0..1 + rng.below(6) {
        match rng.below(7) {
            0 | 1 => {
                let i = rng.below(b.len());
                if let Some(x) = b.get_mut(i) {
                    *x ^= 1 << rng.below(8);
                }
            }
            2 => {
                let i = rng.below(b.len());
                if let Some(x) = b.get_mut(i) {
                    *x = [0, 0xff, 0x7f, 0x80, 1][rng.below(5)];
                }
            }
            3 => {
                let cut = rng.below(b.len() + 1);
                b.truncate(cut);
            }
            4 => {
                let i = rng.below(b.len() + 1);
                let v = rng.next() as u8;
                b.insert(i, v);
            }
            5 => {
                // A small value in a 32-bit field: plausible lengths.
                let i = rng.below(b.len() / 4) * 4;
                let v = [0u32, 1, 4, 12, 16, 20, 28, 32, 0x1a2b_3c4d][rng.below(9)];
                if i + 4 <= b.len() {
                    b[i..i + 4].copy_from_slice(&v.to_le_bytes());
                }
            }
            _ => {
                let i = rng.below(b.len() / 4) * 4;
                let v = rng.next() as u32;
                if i + 4 <= b.len() {
                    b[i..i + 4].copy_from_slice(&v.to_le_bytes());
                }
            }
        }
    }
    b
}
