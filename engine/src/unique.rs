//! Random bytes for names that must differ between runs and processes (part files of the
//! filesystem sink, savepoint directories), not be reproducible: a ChaCha8 generator seeded by
//! the clock, the process id and a caller's salt.

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// `N` random bytes.
pub fn random_bytes<const N: usize>(salt: &str) -> [u8; N] {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut seed = [0u8; 32];
    seed[..16].copy_from_slice(&nanos.to_le_bytes());
    seed[16..20].copy_from_slice(&std::process::id().to_le_bytes());
    for (i, b) in salt.bytes().enumerate() {
        seed[20 + i % 12] ^= b;
    }
    let mut out = [0u8; N];
    ChaCha8Rng::from_seed(seed).fill_bytes(&mut out);
    out
}

/// Lower-case hex digits of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_differ_and_print_as_hex() {
        let a: [u8; 8] = random_bytes("x");
        let b: [u8; 8] = random_bytes("x");
        assert_ne!(a, b, "two draws in a row differ");
        assert_eq!(hex(&[0x0a, 0xff]), "0aff");
    }
}
