//! Authentication of the lisp-crypto key exchange inside a peer group (RFC 8061 §12.2 leaves
//! the exchange open to a man in the middle and points at LISP-SEC; in LISP-Decent every
//! member already holds the site key, so the exchange is signed with it).
//!
//! An RLOC-probe that offers a key, and the probe reply that carries the ETR's key, end with
//! a trailer after the LISP message:
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |      'L'      |      'D'      |      'K'      |      'X'      |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |        HMAC-SHA-256 (32 bytes) over the message and the magic  |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! keyed with `K = HMAC-SHA-256(site key, "lisp-decent key exchange 1")`, so the site key is
//! never used directly for a second purpose. The HMAC covers the whole Map-Request (nonce,
//! ITR-RLOCs with the Security Key LCAF, the probed prefix) or Map-Reply (echoed nonce,
//! records with the ETR's key). The Map-Request and Map-Reply formats count their fields
//! (RFC 9301 §5.2, §5.4), so a receiver that does not know the trailer reads the message and
//! ignores the 36 bytes after it: lispers.net does (its decoders stop at the counts); OOR
//! is never sent a Security Key LCAF, nor so a trailer.

use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};

type HmacSha256 = Hmac<sha2::Sha256>;

/// The trailer's first four bytes.
pub const MAGIC: [u8; 4] = *b"LDKX";
/// Bytes the trailer adds.
pub const TRAILER_LEN: usize = 4 + 32;

/// The key that signs key exchanges, derived from the site key.
#[derive(Clone, PartialEq, Eq)]
pub struct KxKey([u8; 32]);

impl std::fmt::Debug for KxKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KxKey(<redacted>)")
    }
}

impl KxKey {
    pub fn from_site_key(secret: &[u8]) -> Self {
        let mut mac =
            <HmacSha256 as KeyInit>::new_from_slice(secret).expect("HMAC takes any key length");
        mac.update(b"lisp-decent key exchange 1");
        KxKey(mac.finalize().into_bytes().into())
    }

    fn mac(&self, message: &[u8]) -> HmacSha256 {
        let mut mac =
            <HmacSha256 as KeyInit>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(message);
        mac.update(&MAGIC);
        mac
    }

    /// Appends the trailer that signs `message` (the bytes already in it).
    pub fn sign(&self, message: &mut Vec<u8>) {
        let tag = self.mac(message).finalize().into_bytes();
        message.extend_from_slice(&MAGIC);
        message.extend_from_slice(&tag);
    }

    /// Whether `signed` is a message followed by a trailer that this key made.
    pub fn verify(&self, signed: &[u8]) -> bool {
        let Some((message, tag)) = split(signed) else {
            return false;
        };
        self.mac(message).verify_slice(tag).is_ok()
    }
}

/// The message and the HMAC of a datagram that ends with a trailer; `None` when it has none.
pub fn split(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let at = bytes.len().checked_sub(TRAILER_LEN)?;
    let (message, trailer) = bytes.split_at(at);
    (trailer[..4] == MAGIC).then(|| (message, &trailer[4..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_and_tamper() {
        let k = KxKey::from_site_key(b"site-key");
        let mut m = b"a map-request".to_vec();
        k.sign(&mut m);
        assert_eq!(m.len(), 13 + TRAILER_LEN);
        assert!(k.verify(&m));
        assert_eq!(split(&m).unwrap().0, b"a map-request");
        for i in [0, 12, 13, m.len() - 1] {
            let mut t = m.clone();
            t[i] ^= 1;
            assert!(!k.verify(&t), "byte {i}");
        }
        assert!(!KxKey::from_site_key(b"other key").verify(&m));
        assert!(!k.verify(b"a map-request"), "no trailer");
        assert!(!k.verify(&m[..20]));
        assert!(split(b"short").is_none());
    }
}
