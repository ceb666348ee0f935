//! Attachment file contents and URL signatures.
//!
//! Files are never stored: the bytes of attachment `id` are a pure function of
//! `(file_seed, id)`, generated on request, so a 100k-candidate scenario costs no memory
//! for its files and a test can recompute the expected sha256 itself.

use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};

const MIN_SIZE: f64 = 30.0 * 1024.0;
const MAX_SIZE: f64 = 2.0 * 1024.0 * 1024.0;

fn file_rng(seed: u64, id: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// Size in bytes of attachment `id`: 30 KB to 2 MB, skewed to the small end like real
/// resumes (most are a few hundred KB, a few are scanned multi-MB PDFs).
pub fn attachment_size(seed: u64, id: u64) -> usize {
    let mut rng = file_rng(seed, id);
    let u: f64 = rng.random::<f64>();
    let size = MIN_SIZE * (MAX_SIZE / MIN_SIZE).powf(u.powf(1.6));
    size.round() as usize
}

/// The PDF-like bytes of attachment `id` (header, objects, a text stream, trailer).
pub fn attachment_bytes(seed: u64, id: u64) -> Vec<u8> {
    let size = attachment_size(seed, id);
    let mut rng = file_rng(seed, id);
    let _ = rng.random::<f64>(); // keep in step with attachment_size
    let head = format!(
        "%PDF-1.4\n%\u{e2}\u{e3}\u{cf}\u{d3}\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n\
         2 0 obj\n<< /Type /Pages /Kids [3 0 R] /Count 1 >>\nendobj\n\
         3 0 obj\n<< /Type /Page /Parent 2 0 R /Contents 4 0 R >>\nendobj\n\
         4 0 obj\n<< /Length {size} /Attachment {id} >>\nstream\n"
    );
    let tail = b"\nendstream\nendobj\ntrailer\n<< /Root 1 0 R /Size 5 >>\n%%EOF\n";
    let mut out = Vec::with_capacity(size.max(head.len() + tail.len()));
    out.extend_from_slice(head.as_bytes());
    let body_len = size.saturating_sub(head.len() + tail.len());
    let start = out.len();
    out.resize(start + body_len, 0);
    rng.fill_bytes(&mut out[start..]);
    // Map the random bytes onto text-like content: letters, spaces and line breaks.
    const ALPHABET: &[u8; 64] =
        b"etaoinshrdlucmfwypvbgkqjxz ETAOINSHRDLU etaoinshr \n.,0123456789 ";
    for b in &mut out[start..] {
        *b = ALPHABET[(*b & 63) as usize];
    }
    out.extend_from_slice(tail);
    out
}

/// Hex sha256 of the bytes of attachment `id`.
pub fn attachment_sha256(seed: u64, id: u64) -> String {
    hex::encode(Sha256::digest(attachment_bytes(seed, id)))
}

/// Keyed hash of a storage path and its expiry (epoch seconds). Not a real HMAC, but
/// unforgeable without the secret, which is all the simulator needs.
pub(crate) fn sign(secret: &[u8], path: &str, expires: i64) -> String {
    let mut h = Sha256::new();
    h.update(secret);
    h.update([0u8]);
    h.update(path.as_bytes());
    h.update([0u8]);
    h.update(expires.to_string().as_bytes());
    h.update(secret);
    hex::encode(&h.finalize()[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_bytes_are_deterministic_pdf_like_and_sized_30kb_to_2mb() {
        for id in 1..40u64 {
            let a = attachment_bytes(7, id);
            assert_eq!(a, attachment_bytes(7, id));
            assert_eq!(a.len(), attachment_size(7, id));
            assert!(a.len() >= 30 * 1024 && a.len() <= 2 * 1024 * 1024);
            assert!(a.starts_with(b"%PDF-1.4"));
            assert!(a.ends_with(b"%%EOF\n"));
        }
        assert_ne!(attachment_bytes(7, 1), attachment_bytes(8, 1));
    }

    #[test]
    fn signature_depends_on_path_expiry_and_secret() {
        let s = sign(b"k", "/files/1", 10);
        assert_ne!(s, sign(b"k", "/files/2", 10));
        assert_ne!(s, sign(b"k", "/files/1", 11));
        assert_ne!(s, sign(b"j", "/files/1", 10));
    }
}
