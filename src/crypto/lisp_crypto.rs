//! lisp-crypto (RFC 8061): X25519 key exchange, key derivation, and AEAD encryption of LISP
//! data packets with ring.
//!
//! Suites: 5, LISP_256_EC25519_AES128_GCM (the default; RFC 8061 defines it without
//! ambiguity), and 6, LISP_256_EC25519_CHACHA20_POLY1305 (for CPUs without AES
//! instructions). lispers.net's own suite-6 variant (ASCII keys, ChaCha8, Poly1305-AES) is
//! not this and is not implemented here.
//!
//! Packet framing (both suites):
//! ```text
//! LISP header (8; K bits = key-id 1-3) || IV || ciphertext || 16-byte AEAD tag
//! ```
//! The AEAD's associated data is the LISP header, so the tag (the ICV) covers header, IV
//! and ciphertext, and it is checked before anything is decrypted (RFC 8061 §6).
//! - Suite 5: IV = 12 bytes = 4-byte per-key salt || 8-byte big-endian packet counter; the
//!   GCM nonce is the IV.
//! - Suite 6: IV = 8 bytes = the big-endian packet counter (RFC 8061 gives this suite an
//!   8-byte IV); the ChaCha20-Poly1305 (RFC 8439) nonce is 4 zero bytes || IV.
//!
//! The counter starts at 0 for every key and only grows, so an IV never repeats under a key;
//! the receiver's anti-replay window runs on it.

use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use ring::aead::{AES_128_GCM, Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
use thiserror::Error;
use x25519_dalek::{PublicKey, StaticSecret};

use super::replay::ReplayWindow;
use crate::wire::DataHeader;

/// The AEAD tag length of both suites.
pub const TAG_LEN: usize = 16;

/// The cipher suites we implement (RFC 8061 §6 registry values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CipherSuite {
    Aes128Gcm = 5,
    ChaCha20Poly1305 = 6,
}

impl CipherSuite {
    pub fn from_id(id: u8) -> Option<Self> {
        match id {
            5 => Some(CipherSuite::Aes128Gcm),
            6 => Some(CipherSuite::ChaCha20Poly1305),
            _ => None,
        }
    }

    pub fn id(self) -> u8 {
        self as u8
    }

    /// The name used in configuration and in the API.
    pub fn name(self) -> &'static str {
        match self {
            CipherSuite::Aes128Gcm => "aes128-gcm",
            CipherSuite::ChaCha20Poly1305 => "chacha20-poly1305",
        }
    }

    /// Bytes of IV on the wire.
    pub fn iv_len(self) -> usize {
        match self {
            CipherSuite::Aes128Gcm => 12,
            CipherSuite::ChaCha20Poly1305 => 8,
        }
    }

    fn key_len(self) -> usize {
        match self {
            CipherSuite::Aes128Gcm => 16,
            CipherSuite::ChaCha20Poly1305 => 32,
        }
    }

    fn algorithm(self) -> &'static ring::aead::Algorithm {
        match self {
            CipherSuite::Aes128Gcm => &AES_128_GCM,
            CipherSuite::ChaCha20Poly1305 => &CHACHA20_POLY1305,
        }
    }

    /// Bytes a packet grows by: IV and tag.
    pub fn overhead(self) -> usize {
        self.iv_len() + TAG_LEN
    }
}

/// Why a key exchange or a packet failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum CryptoError {
    #[error("the peer's public key gives an all-zero shared secret")]
    WeakPeerKey,
    #[error("packet too short for the suite's IV and tag")]
    BadLength,
    #[error("no key for key-id {0}")]
    NoKey(u8),
    #[error("ICV check failed")]
    Icv,
    #[error("replayed or too old")]
    Replay,
    #[error("the key's packet counter is exhausted")]
    Exhausted,
}

/// An X25519 key pair (RFC 7748) for one key exchange.
pub struct KeyPair {
    secret: StaticSecret,
    public: [u8; 32],
}

impl std::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyPair(public {})", hex::encode(self.public))
    }
}

impl KeyPair {
    /// A fresh ephemeral key pair.
    pub fn generate() -> Self {
        Self::from_secret(rand::random())
    }

    pub fn from_secret(bytes: [u8; 32]) -> Self {
        let secret = StaticSecret::from(bytes);
        let public = PublicKey::from(&secret).to_bytes();
        KeyPair { secret, public }
    }

    pub fn public(&self) -> [u8; 32] {
        self.public
    }

    /// The X25519 shared secret with a peer's public key; an all-zero result (a low-order
    /// peer key) is refused.
    pub fn shared_secret(&self, peer: &[u8; 32]) -> Result<[u8; 32], CryptoError> {
        let s = self.secret.diffie_hellman(&PublicKey::from(*peer));
        if !s.was_contributory() {
            return Err(CryptoError::WeakPeerKey);
        }
        Ok(s.to_bytes())
    }
}

/// Key derivation (RFC 8061 §5, after NIST SP 800-108 in counter mode with HMAC-SHA-256),
/// with exactly these inputs:
///
/// ```text
/// context = ITR-PKEY xor ETR-PKEY            (32 bytes; the same on both sides)
/// K(i)    = HMAC-SHA-256(key = shared secret Z (32 bytes),
///                        message = [i]_16 || "lisp-crypto" || context || [L]_16)
///           [i]_16, [L]_16: 16-bit big-endian; L = output length in bits
/// suite 5: L = 256, one block: encryption key = K(1)[0..16], integrity key = K(1)[16..32]
/// suite 6: L = 512, two blocks: encryption key = K(1) (32 bytes), integrity key = K(2)[0..16]
/// ```
///
/// Both AEAD suites authenticate with their own tag, so the integrity key is derived but
/// not used. RFC 8061's suite 6 needs a 256-bit key that one 256-bit block cannot also
/// share with an integrity key, hence the second block (our reading; PROTOCOL.md §5.1).
pub fn derive_key(
    suite: CipherSuite,
    shared: &[u8; 32],
    itr_pub: &[u8; 32],
    etr_pub: &[u8; 32],
) -> Vec<u8> {
    let mut context = [0u8; 32];
    for (c, (a, b)) in context.iter_mut().zip(itr_pub.iter().zip(etr_pub)) {
        *c = a ^ b;
    }
    let (blocks, l_bits): (u16, u16) = match suite {
        CipherSuite::Aes128Gcm => (1, 256),
        CipherSuite::ChaCha20Poly1305 => (2, 512),
    };
    let mut out = Vec::with_capacity(32 * usize::from(blocks));
    for i in 1..=blocks {
        let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(shared)
            .expect("HMAC takes any key length");
        mac.update(&i.to_be_bytes());
        mac.update(b"lisp-crypto");
        mac.update(&context);
        mac.update(&l_bits.to_be_bytes());
        out.extend_from_slice(&mac.finalize().into_bytes());
    }
    out.truncate(suite.key_len());
    out
}

fn aead_key(suite: CipherSuite, key: &[u8]) -> LessSafeKey {
    // The key length always matches the suite: derive_key cut it so.
    LessSafeKey::new(UnboundKey::new(suite.algorithm(), key).expect("key length fits the suite"))
}

fn nonce(suite: CipherSuite, iv: &[u8]) -> Nonce {
    let mut n = [0u8; 12];
    match suite {
        CipherSuite::Aes128Gcm => n.copy_from_slice(&iv[..12]),
        CipherSuite::ChaCha20Poly1305 => n[4..].copy_from_slice(&iv[..8]),
    }
    Nonce::assume_unique_for_key(n)
}

/// The ITR's key toward one ETR RLOC.
pub struct SendKey {
    pub suite: CipherSuite,
    /// 1-3, carried in the K bits.
    pub key_id: u8,
    key: LessSafeKey,
    salt: [u8; 4],
    counter: u64,
}

impl SendKey {
    pub fn new(suite: CipherSuite, key_id: u8, key: &[u8]) -> Self {
        SendKey {
            suite,
            key_id: key_id & 3,
            key: aead_key(suite, key),
            salt: rand::random(),
            counter: 0,
        }
    }

    /// Packets sealed so far under this key (for the rekey budget).
    pub fn packets(&self) -> u64 {
        self.counter
    }

    /// Appends `header` (its K bits set to our key-id) || IV || sealed `plaintext` || tag to
    /// `out`, replacing what it held.
    pub fn seal(
        &mut self,
        mut header: DataHeader,
        plaintext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), CryptoError> {
        if self.counter == u64::MAX {
            return Err(CryptoError::Exhausted);
        }
        let seq = self.counter;
        self.counter += 1;
        header.key_id = self.key_id;
        let mut h = [0u8; DataHeader::LEN];
        header.emit(&mut h).map_err(|_| CryptoError::BadLength)?;
        out.clear();
        out.extend_from_slice(&h);
        if self.suite == CipherSuite::Aes128Gcm {
            out.extend_from_slice(&self.salt);
        }
        out.extend_from_slice(&seq.to_be_bytes());
        let body = out.len();
        out.extend_from_slice(plaintext);
        let n = nonce(self.suite, &out[DataHeader::LEN..body]);
        let (head, data) = out.split_at_mut(body);
        let tag = self
            .key
            .seal_in_place_separate_tag(n, Aad::from(&head[..DataHeader::LEN]), data)
            .map_err(|_| CryptoError::Icv)?;
        out.extend_from_slice(tag.as_ref());
        Ok(())
    }
}

/// The ETR's key for one ITR RLOC and key-id, with its anti-replay window.
pub struct RecvKey {
    pub suite: CipherSuite,
    pub key_id: u8,
    key: LessSafeKey,
    window: ReplayWindow,
}

impl RecvKey {
    pub fn new(suite: CipherSuite, key_id: u8, key: &[u8]) -> Self {
        RecvKey {
            suite,
            key_id: key_id & 3,
            key: aead_key(suite, key),
            window: ReplayWindow::new(),
        }
    }

    /// Checks and decrypts a packet (LISP header included) in place; returns the inner
    /// packet. Order (RFC 8061 §6): length and key-id, then the ICV before anything else,
    /// then the anti-replay window, which records the counter of an authentic packet.
    pub fn open<'a>(&mut self, packet: &'a mut [u8]) -> Result<&'a [u8], CryptoError> {
        let iv_len = self.suite.iv_len();
        if packet.len() < DataHeader::LEN + iv_len + TAG_LEN {
            return Err(CryptoError::BadLength);
        }
        let key_id = packet[0] & 3;
        if key_id != self.key_id {
            return Err(CryptoError::NoKey(key_id));
        }
        let iv_end = DataHeader::LEN + iv_len;
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&packet[iv_end - 8..iv_end]);
        let seq = u64::from_be_bytes(seq);
        let n = nonce(self.suite, &packet[DataHeader::LEN..iv_end]);
        let (head, data) = packet.split_at_mut(iv_end);
        let plain = self
            .key
            .open_in_place(n, Aad::from(&head[..DataHeader::LEN]), data)
            .map_err(|_| CryptoError::Icv)?;
        if !self.window.accept(seq) {
            return Err(CryptoError::Replay);
        }
        Ok(plain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> [u8; 32] {
        let mut a = [0u8; 32];
        hex::decode_to_slice(s, &mut a).unwrap();
        a
    }

    /// RFC 7748 §6.1: Alice and Bob.
    #[test]
    fn x25519_rfc7748_vector() {
        let alice = KeyPair::from_secret(h(
            "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
        ));
        let bob = KeyPair::from_secret(h(
            "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb",
        ));
        assert_eq!(
            hex::encode(alice.public()),
            "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
        );
        assert_eq!(
            hex::encode(bob.public()),
            "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"
        );
        let shared = "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742";
        assert_eq!(
            hex::encode(alice.shared_secret(&bob.public()).unwrap()),
            shared
        );
        assert_eq!(
            hex::encode(bob.shared_secret(&alice.public()).unwrap()),
            shared
        );
        assert_eq!(alice.shared_secret(&[0; 32]), Err(CryptoError::WeakPeerKey));
    }

    fn pair(suite: CipherSuite) -> (SendKey, RecvKey) {
        let itr = KeyPair::generate();
        let etr = KeyPair::generate();
        let k_itr = derive_key(
            suite,
            &itr.shared_secret(&etr.public()).unwrap(),
            &itr.public(),
            &etr.public(),
        );
        let k_etr = derive_key(
            suite,
            &etr.shared_secret(&itr.public()).unwrap(),
            &itr.public(),
            &etr.public(),
        );
        assert_eq!(k_itr, k_etr, "both ends derive the same key");
        assert_eq!(k_itr.len(), suite.key_len());
        (
            SendKey::new(suite, 2, &k_itr),
            RecvKey::new(suite, 2, &k_etr),
        )
    }

    #[test]
    fn seal_open_tamper_replay_in_both_suites() {
        for suite in [CipherSuite::Aes128Gcm, CipherSuite::ChaCha20Poly1305] {
            let (mut tx, mut rx) = pair(suite);
            let hdr = DataHeader::with_instance(0, 0x123456, 0);
            let mut out = Vec::new();
            tx.seal(hdr, b"inner packet", &mut out).unwrap();
            assert_eq!(out.len(), 8 + suite.overhead() + 12);
            assert_eq!(out[0] & 3, 2, "key-id in the K bits");
            let first = out.clone();
            assert_eq!(rx.open(&mut out.clone()).unwrap(), b"inner packet");
            assert_eq!(
                rx.open(&mut first.clone()),
                Err(CryptoError::Replay),
                "{suite:?}"
            );
            // Any changed byte fails the ICV (header, IV, ciphertext, tag).
            tx.seal(hdr, b"inner packet", &mut out).unwrap();
            for i in [1, 9, out.len() - 20, out.len() - 1] {
                let mut t = out.clone();
                t[i] ^= 0x40;
                assert_eq!(rx.open(&mut t), Err(CryptoError::Icv), "{suite:?} byte {i}");
            }
            // A forged packet did not move the window: the genuine one still opens.
            assert!(rx.open(&mut out.clone()).is_ok());
            let mut wrong_id = out.clone();
            wrong_id[0] = (wrong_id[0] & !3) | 1;
            assert_eq!(rx.open(&mut wrong_id), Err(CryptoError::NoKey(1)));
            assert_eq!(
                rx.open(&mut out[..10].to_vec()),
                Err(CryptoError::BadLength)
            );
            // IVs never repeat under a key.
            let mut a = Vec::new();
            let mut b = Vec::new();
            tx.seal(hdr, b"x", &mut a).unwrap();
            tx.seal(hdr, b"x", &mut b).unwrap();
            assert_ne!(a[8..8 + suite.iv_len()], b[8..8 + suite.iv_len()]);
            assert_ne!(a, b);
        }
    }

    #[test]
    fn kdf_depends_on_both_public_keys_and_the_suite() {
        let z = [7u8; 32];
        let a = derive_key(CipherSuite::Aes128Gcm, &z, &[1; 32], &[2; 32]);
        assert_eq!(
            a,
            derive_key(CipherSuite::Aes128Gcm, &z, &[2; 32], &[1; 32]),
            "xor is symmetric"
        );
        assert_ne!(
            a,
            derive_key(CipherSuite::Aes128Gcm, &z, &[1; 32], &[3; 32])
        );
        let c = derive_key(CipherSuite::ChaCha20Poly1305, &z, &[1; 32], &[2; 32]);
        assert_eq!(c.len(), 32);
        assert_ne!(&c[..16], &a[..], "L is part of the input");
    }
}
