//! Resume and file contents. Nothing is stored: the bytes of a file are a pure function
//! of `(file_seed, file id)`, generated when downloaded, so a scenario with thousands
//! of resumes costs no memory for them and a test recomputes the expected sha256.

use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};

const MIN_SIZE: f64 = 8.0 * 1024.0;
const MAX_SIZE: f64 = 400.0 * 1024.0;

/// FNV-1a: a stable 64-bit key for a string id.
pub(crate) fn fnv(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn file_rng(seed: u64, id: &str) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed ^ fnv(id).wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// Size in bytes of file `id`: 8 KB to 400 KB, skewed to the small end.
pub fn file_size(seed: u64, id: &str) -> usize {
    let u: f64 = file_rng(seed, id).random::<f64>();
    (MIN_SIZE * (MAX_SIZE / MIN_SIZE).powf(u.powf(1.6))).round() as usize
}

/// The bytes of file `id`: a PDF-like document (header, a text stream, trailer).
pub fn file_bytes(seed: u64, id: &str) -> Vec<u8> {
    let size = file_size(seed, id);
    let mut rng = file_rng(seed, id);
    let _ = rng.random::<f64>(); // in step with file_size
    let head = format!(
        "%PDF-1.4\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n\
         2 0 obj\n<< /Length {size} /File ({id}) >>\nstream\n"
    );
    let tail = b"\nendstream\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n";
    let mut out = Vec::with_capacity(size.max(head.len() + tail.len()));
    out.extend_from_slice(head.as_bytes());
    let start = out.len();
    out.resize(start + size.saturating_sub(head.len() + tail.len()), 0);
    rng.fill_bytes(&mut out[start..]);
    const ALPHABET: &[u8; 64] =
        b"etaoinshrdlucmfwypvbgkqjxz ETAOINSHRDLU etaoinshr \n.,0123456789 ";
    for b in &mut out[start..] {
        *b = ALPHABET[(*b & 63) as usize];
    }
    out.extend_from_slice(tail);
    out
}

/// Hex sha256 of the bytes of file `id`.
pub fn file_sha256(seed: u64, id: &str) -> String {
    hex::encode(Sha256::digest(file_bytes(seed, id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_bytes_are_deterministic_and_of_the_announced_size() {
        for id in ["a", "b", "9f0c2d1e-0000-4000-8000-000000000001"] {
            let a = file_bytes(7, id);
            assert_eq!(a, file_bytes(7, id));
            assert_eq!(a.len(), file_size(7, id));
            assert!(a.len() >= 8 * 1024 && a.len() <= 400 * 1024);
            assert!(a.starts_with(b"%PDF-1.4") && a.ends_with(b"%%EOF\n"));
        }
        assert_ne!(file_bytes(7, "a"), file_bytes(8, "a"));
        assert_ne!(file_sha256(7, "a"), file_sha256(7, "b"));
    }
}
