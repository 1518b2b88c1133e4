//! A Bloom filter of the keys a [`super::KeyedState`] holds only in its store (evicted from the
//! hot map, or left there by a restore), as RocksDB keeps one per file: a key the filter has never
//! seen is certainly not in the store, so a miss of the hot map for a new key costs no store read.
//!
//! The filter grows in layers (each twice the keys of the one before, about 10 bits per key and 4
//! probes: about 1% false positives per layer), since the number of keys is not known in advance.
//! It never forgets a key: a key removed from the store later only costs a read that finds
//! nothing.

/// Bits per key of each layer.
const BITS_PER_KEY: usize = 10;
/// Probes per key.
const PROBES: u32 = 4;
/// Keys of the first layer.
const FIRST_LAYER_KEYS: usize = 1 << 14;

/// One fixed-size Bloom filter.
#[derive(Debug)]
struct Layer {
    bits: Vec<u64>,
    keys: usize,
    capacity: usize,
}

impl Layer {
    fn new(capacity: usize) -> Self {
        let words = (capacity * BITS_PER_KEY).div_ceil(64).max(1);
        Layer {
            bits: vec![0; words],
            keys: 0,
            capacity,
        }
    }

    /// Bit `i` of the probes of `hash` (double hashing of its two halves).
    fn position(&self, hash: u64, i: u32) -> usize {
        let m = (self.bits.len() * 64) as u64;
        let step = hash.rotate_left(32) | 1;
        (hash.wrapping_add(u64::from(i).wrapping_mul(step)) % m) as usize
    }

    fn insert(&mut self, hash: u64) {
        for i in 0..PROBES {
            let p = self.position(hash, i);
            self.bits[p / 64] |= 1 << (p % 64);
        }
        self.keys += 1;
    }

    fn may_contain(&self, hash: u64) -> bool {
        (0..PROBES).all(|i| {
            let p = self.position(hash, i);
            self.bits[p / 64] & (1 << (p % 64)) != 0
        })
    }
}

/// The filter: layers of growing size, the newest taking the inserts.
#[derive(Debug, Default)]
pub(crate) struct KeyFilter {
    layers: Vec<Layer>,
}

impl KeyFilter {
    /// Records that the key with this hash may be in the store.
    pub(crate) fn insert(&mut self, hash: u64) {
        let full = self.layers.last().is_none_or(|l| l.keys >= l.capacity);
        if full {
            let capacity = self
                .layers
                .last()
                .map_or(FIRST_LAYER_KEYS, |l| l.capacity * 2);
            self.layers.push(Layer::new(capacity));
        }
        if let Some(layer) = self.layers.last_mut() {
            layer.insert(hash);
        }
    }

    /// False only when the key with this hash was never inserted.
    pub(crate) fn may_contain(&self, hash: u64) -> bool {
        self.layers.iter().any(|l| l.may_contain(hash))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn inserted_keys_are_always_found_and_others_rarely() {
        let hasher = std::collections::hash_map::RandomState::new();
        let mut f = KeyFilter::default();
        assert!(!f.may_contain(hasher.hash_one(1u64)));
        let n = 100_000u64;
        for k in 0..n {
            f.insert(hasher.hash_one(k));
        }
        assert!((0..n).all(|k| f.may_contain(hasher.hash_one(k))));
        let false_positives = (n..2 * n)
            .filter(|k| f.may_contain(hasher.hash_one(*k)))
            .count();
        // About 1% per layer, over the few layers 100 K keys take.
        assert!(false_positives < (n / 20) as usize, "{false_positives}");
    }
}
