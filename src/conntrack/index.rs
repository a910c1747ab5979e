//! The tuple index of the connection table: which slab slot and direction
//! a tuple names.
//!
//! An open-addressing table of 8-byte buckets (32 bits of the tuple's hash,
//! and the slot with its direction), probed linearly and kept at most half
//! full, so a lookup nearly always reads one cache line of the index and
//! then the entry itself, where the tuple is compared. A bucket's home is
//! derived from the stored hash bits, so deletion shifts later buckets back
//! without tombstones and without reading any entry.
//!
//! The position of a tuple's bucket is known from its hash alone, which is
//! what lets the pipeline prefetch it packets ahead ([`TupleIndex::prefetch`]).
//! What it does not do: know what a tuple is. Callers pass the hash and an
//! equality test against the entry an index value points to.

/// An index value: `slot << 1 | direction`.
pub type Packed = u32;

/// Empty bucket. A packed value is stored plus one, so 0 is free.
const EMPTY: u64 = 0;

#[derive(Debug)]
pub struct TupleIndex {
    buckets: Vec<u64>,
    /// `64 - log2(buckets.len())`: the home bucket is the hash's top bits.
    shift: u32,
    len: usize,
}

impl Default for TupleIndex {
    fn default() -> Self {
        TupleIndex::with_bits(10)
    }
}

#[inline]
fn tag(hash: u64) -> u64 {
    hash >> 32
}

impl TupleIndex {
    fn with_bits(bits: u32) -> TupleIndex {
        TupleIndex {
            buckets: vec![EMPTY; 1 << bits],
            shift: 64 - bits,
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    fn mask(&self) -> usize {
        self.buckets.len() - 1
    }

    /// The home bucket of a stored tag (the tag is the hash's top 32 bits,
    /// and the table never has more than 2^32 buckets).
    #[inline]
    fn home_of_tag(&self, t: u64) -> usize {
        ((t << 32) >> self.shift) as usize
    }

    #[inline]
    fn home(&self, hash: u64) -> usize {
        (hash >> self.shift) as usize
    }

    /// The value stored under `hash` for which `eq` holds.
    #[inline]
    pub fn find(&self, hash: u64, eq: impl FnMut(Packed) -> bool) -> Option<Packed> {
        self.position(hash, eq)
            .map(|i| (self.buckets[i] as u32).wrapping_sub(1))
    }

    /// Every value stored under `hash` (hash-equal candidates), for a caller
    /// that wants to prefetch what they point to.
    #[inline]
    pub fn candidates(&self, hash: u64, mut each: impl FnMut(Packed)) {
        let (mask, t) = (self.mask(), tag(hash));
        let mut i = self.home(hash);
        loop {
            let b = self.buckets[i];
            if b == EMPTY {
                return;
            }
            if b >> 32 == t {
                each((b as u32).wrapping_sub(1));
            }
            i = (i + 1) & mask;
        }
    }

    /// Stores `v` under `hash`; a value for which `eq` holds is replaced
    /// (and returned).
    pub fn insert(
        &mut self,
        hash: u64,
        v: Packed,
        mut eq: impl FnMut(Packed) -> bool,
    ) -> Option<Packed> {
        if let Some(i) = self.position(hash, &mut eq) {
            let old = (self.buckets[i] as u32).wrapping_sub(1);
            self.buckets[i] = tag(hash) << 32 | u64::from(v.wrapping_add(1));
            return Some(old);
        }
        if (self.len + 1) * 2 > self.buckets.len() {
            self.grow();
        }
        let mask = self.mask();
        let mut i = self.home(hash);
        while self.buckets[i] != EMPTY {
            i = (i + 1) & mask;
        }
        self.buckets[i] = tag(hash) << 32 | u64::from(v.wrapping_add(1));
        self.len += 1;
        None
    }

    /// Removes the value `v` stored under `hash`; false when absent.
    pub fn remove(&mut self, hash: u64, v: Packed) -> bool {
        let Some(mut hole) = self.position(hash, |p| p == v) else {
            return false;
        };
        self.len -= 1;
        // Backward-shift deletion: move later buckets of the run into the
        // hole when their home is not between the hole and them.
        let mask = self.mask();
        let mut i = hole;
        loop {
            i = (i + 1) & mask;
            let b = self.buckets[i];
            if b == EMPTY {
                break;
            }
            let home = self.home_of_tag(b >> 32);
            // Distance from home to i, and from home to the hole, along the ring.
            if (i.wrapping_sub(home) & mask) >= (i.wrapping_sub(hole) & mask) {
                self.buckets[hole] = b;
                hole = i;
            }
        }
        self.buckets[hole] = EMPTY;
        true
    }

    #[inline]
    fn position(&self, hash: u64, mut eq: impl FnMut(Packed) -> bool) -> Option<usize> {
        let (mask, t) = (self.mask(), tag(hash));
        let mut i = self.home(hash);
        loop {
            let b = self.buckets[i];
            if b == EMPTY {
                return None;
            }
            if b >> 32 == t && eq((b as u32).wrapping_sub(1)) {
                return Some(i);
            }
            i = (i + 1) & mask;
        }
    }

    fn grow(&mut self) {
        let bits = 64 - self.shift + 1;
        let old = std::mem::replace(self, TupleIndex::with_bits(bits));
        let mask = self.mask();
        for b in old.buckets.into_iter().filter(|&b| b != EMPTY) {
            let mut i = self.home_of_tag(b >> 32);
            while self.buckets[i] != EMPTY {
                i = (i + 1) & mask;
            }
            self.buckets[i] = b;
        }
        self.len = old.len;
    }

    /// Asks the CPU to start loading the bucket `hash` starts at.
    #[inline]
    pub fn prefetch(&self, hash: u64) {
        prefetch_line(&self.buckets[self.home(hash)] as *const u64 as *const u8);
    }
}

/// A hint to load the cache line holding `p`; no effect on results.
#[inline(always)]
pub fn prefetch_line(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetch never faults and does not dereference for Rust's
    // purposes; any address is allowed.
    unsafe {
        std::arch::x86_64::_mm_prefetch(p as *const i8, std::arch::x86_64::_MM_HINT_T0);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Against a std map, under random inserts, replacements and removals
    /// with deliberately colliding hashes (few distinct home buckets).
    #[test]
    fn agrees_with_a_map() {
        let mut idx = TupleIndex::default();
        let mut model: HashMap<u64, Packed> = HashMap::new(); // key -> value
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        // Keys are their own equality; the hash keeps few bits of the key
        // so that runs form and wrap around.
        let hash_of = |k: u64| (k.wrapping_mul(0xff51_afd7_ed55_8ccd) & 0xfff0_0000_0000_0000) | k;
        let mut value_key: HashMap<Packed, u64> = HashMap::new();
        for step in 0..200_000u32 {
            let k = rnd() % 5000;
            let h = hash_of(k);
            match rnd() % 3 {
                0 | 1 => {
                    let v = step;
                    let old = idx.insert(h, v, |p| value_key[&p] == k);
                    assert_eq!(old, model.get(&k).copied());
                    if let Some(o) = old {
                        value_key.remove(&o);
                    }
                    model.insert(k, v);
                    value_key.insert(v, k);
                }
                _ => {
                    if let Some(v) = model.remove(&k) {
                        assert!(idx.remove(h, v));
                        value_key.remove(&v);
                    } else {
                        assert!(!idx.remove(h, step));
                    }
                }
            }
            if step % 997 == 0 {
                for (&k, &v) in &model {
                    assert_eq!(idx.find(hash_of(k), |p| value_key[&p] == k), Some(v));
                }
            }
            assert_eq!(idx.len(), model.len());
        }
    }
}
