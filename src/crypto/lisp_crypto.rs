//! lisp-crypto (RFC 8061): X25519 key exchange, key derivation, and AEAD encryption of LISP
//! data packets with ring; and the lispers.net suite-6 variant ([`super::lispers`]) behind
//! the same `SendKey` / `RecvKey`, for peers configured to speak it.
//!
//! The RFC profile, as written (RFC 8061 §6 suites, §7 KDF, §8 framing, §9 procedures):
//! - Suites 5, LISP_256_EC25519_AES128_GCM (the default), and 6,
//!   LISP_256_EC25519_CHACHA20_POLY1305 (for CPUs without AES instructions).
//! - KDF (§7): `key-material = HMAC-SHA-256(key = the raw X25519 shared secret,
//!   message = 0x0001 || "lisp-crypto" 0x00 || the ITR's Map-Request nonce (8 bytes) ||
//!   0x0100)`: one call, L = 256 for both suites. The null-terminated string is the §7
//!   bullet's; the RFC's example line leaves the NUL out, and we follow the bullet. Suite 5's
//!   AES-128 key is the first 16 bytes ("the most significant" bits), suite 6's
//!   ChaCha20-Poly1305 key all 32.
//! - Framing (§8): `LISP header (K bits = key-id 1-3) || IV || ciphertext || 16-byte tag`;
//!   the AEAD's associated data is the LISP header **and the IV** (§9 step 2), so the ICV
//!   covers header, IV and ciphertext, and it is checked before anything is decrypted.
//! - IV (§9 step 1): a counter that starts at 1 for every key and grows by one per packet.
//!   Suite 5: the 12-byte IV is that counter, big-endian; the GCM nonce is the IV.
//!   Suite 6: §6 gives the suite an 8-byte IV while §9 describes "an 8-byte random value
//!   appended to a 4-byte counter" (12 bytes): the RFC contradicts itself. We implement the
//!   §6 reading: an 8-byte IV = the big-endian counter, and the RFC 8439 nonce is 4 zero
//!   bytes || IV. A fresh key per exchange makes the counter alone a unique nonce.
//!
//! The counter only grows, so an IV never repeats under a key; the receiver's anti-replay
//! window runs on it.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use ring::aead::{AES_128_GCM, Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
use thiserror::Error;
use x25519_dalek::{PublicKey, StaticSecret};

use super::lispers::{self, Cs6Key};
use super::replay::ReplayWindow;
use crate::wire::DataHeader;

/// The AEAD tag length of both RFC suites (and lispers' Poly1305-AES ICV).
pub const TAG_LEN: usize = 16;

/// The cipher suites we implement: RFC 8061 §6 suites 5 and 6, and lispers.net's own
/// variant of suite 6 (sent as suite 6 on the wire; only toward configured lispers peers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CipherSuite {
    Aes128Gcm,
    ChaCha20Poly1305,
    LispersCs6,
}

impl CipherSuite {
    /// An RFC 8061 suite by its registry value (lispers-cs6 is never chosen by number).
    pub fn from_id(id: u8) -> Option<Self> {
        match id {
            5 => Some(CipherSuite::Aes128Gcm),
            6 => Some(CipherSuite::ChaCha20Poly1305),
            _ => None,
        }
    }

    /// The Cipher Suite value on the wire (RFC 8061 §6).
    pub fn id(self) -> u8 {
        match self {
            CipherSuite::Aes128Gcm => 5,
            CipherSuite::ChaCha20Poly1305 | CipherSuite::LispersCs6 => 6,
        }
    }

    /// The name used in configuration and in the API.
    pub fn name(self) -> &'static str {
        match self {
            CipherSuite::Aes128Gcm => "aes128-gcm",
            CipherSuite::ChaCha20Poly1305 => "chacha20-poly1305",
            CipherSuite::LispersCs6 => "lispers-cs6",
        }
    }

    /// Bytes of IV on the wire.
    pub fn iv_len(self) -> usize {
        match self {
            CipherSuite::Aes128Gcm => 12,
            CipherSuite::ChaCha20Poly1305 | CipherSuite::LispersCs6 => 8,
        }
    }

    fn algorithm(self) -> &'static ring::aead::Algorithm {
        match self {
            CipherSuite::Aes128Gcm => &AES_128_GCM,
            CipherSuite::ChaCha20Poly1305 | CipherSuite::LispersCs6 => &CHACHA20_POLY1305,
        }
    }

    /// The most bytes a packet grows by: IV, tag, and lispers' padding to 16 bytes.
    pub fn overhead(self) -> usize {
        let pad = if self == CipherSuite::LispersCs6 {
            15
        } else {
            0
        };
        self.iv_len() + TAG_LEN + pad
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
    /// A fresh ephemeral key pair from the system's random numbers.
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

    /// The raw X25519 shared secret with a peer's public key; an all-zero result (a
    /// low-order peer key) is refused.
    pub fn shared_secret(&self, peer: &[u8; 32]) -> Result<[u8; 32], CryptoError> {
        let s = self.secret.diffie_hellman(&PublicKey::from(*peer));
        if !s.was_contributory() {
            return Err(CryptoError::WeakPeerKey);
        }
        Ok(s.to_bytes())
    }

    /// The 32 bytes of key material this pair agrees with `peer` for `suite`: RFC 8061 §7
    /// with the nonce of the ITR's Map-Request that carried the ITR's key, or lispers'
    /// derivation (which takes no nonce).
    pub fn key_material(
        &self,
        suite: CipherSuite,
        peer: &[u8; 32],
        itr_nonce: &crate::wire::Nonce,
    ) -> Result<[u8; 32], CryptoError> {
        let z = self.shared_secret(peer)?;
        Ok(match suite {
            CipherSuite::LispersCs6 => lispers::key_material(&z, &self.public, peer),
            _ => derive_key(&z, itr_nonce),
        })
    }
}

/// Key derivation, RFC 8061 §7 (NIST SP 800-108 counter mode with HMAC-SHA-256), for the
/// AEAD suites 5 and 6 (L = 256 bits, one call):
///
/// ```text
/// key-material = HMAC-SHA-256(key = Z, the raw X25519 shared secret,
///                             message = 0x0001 || "lisp-crypto" 0x00 || itr-nonce || 0x0100)
/// ```
pub fn derive_key(shared: &[u8; 32], itr_nonce: &crate::wire::Nonce) -> [u8; 32] {
    let mut mac =
        <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(shared).expect("HMAC takes any key length");
    mac.update(&1u16.to_be_bytes());
    mac.update(b"lisp-crypto\0");
    mac.update(itr_nonce);
    mac.update(&256u16.to_be_bytes());
    mac.finalize().into_bytes().into()
}

/// The key of the other direction of one exchange, for a hop with a Re-encapsulating Tunnel
/// Router (draft-ermagan-lisp-nat-traversal-19 §5.3): a node behind a NAT can be reached
/// only through the binding its own packets opened, so the RTR cannot probe it; the RTR
/// seals what it sends back with this key, which both ends derive from the key material
/// of the node's exchange (NIST SP 800-108 counter mode as in RFC 8061 §7, its own label).
pub fn reverse_key(material: &[u8; 32]) -> [u8; 32] {
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(material)
        .expect("HMAC takes any key length");
    mac.update(&1u16.to_be_bytes());
    mac.update(b"lisp-crypto rtr to etr\0");
    mac.update(&256u16.to_be_bytes());
    mac.finalize().into_bytes().into()
}

/// The cipher behind a key. The RFC suites' key stays inline (the hot path reads it for
/// every packet); lispers' rarer one is boxed.
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
enum Cipher {
    /// An RFC 8061 AEAD suite (ring).
    Aead(LessSafeKey),
    /// lispers.net's suite 6.
    Lispers(Box<Cs6Key>),
}

impl Cipher {
    fn new(suite: CipherSuite, km: &[u8; 32]) -> Self {
        match suite {
            CipherSuite::LispersCs6 => Cipher::Lispers(Box::new(Cs6Key::new(km))),
            CipherSuite::Aes128Gcm => Cipher::Aead(aead_key(suite, &km[..16])),
            CipherSuite::ChaCha20Poly1305 => Cipher::Aead(aead_key(suite, km)),
        }
    }
}

fn aead_key(suite: CipherSuite, key: &[u8]) -> LessSafeKey {
    // The key length always matches the suite: Cipher::new cuts it so.
    LessSafeKey::new(UnboundKey::new(suite.algorithm(), key).expect("key length fits the suite"))
}

fn nonce(suite: CipherSuite, iv: &[u8]) -> Nonce {
    let mut n = [0u8; 12];
    match suite {
        CipherSuite::Aes128Gcm => n.copy_from_slice(&iv[..12]),
        _ => n[4..].copy_from_slice(&iv[..8]),
    }
    Nonce::assume_unique_for_key(n)
}

/// The IV counter of a send key (RFC 8061 §9: it only grows, so an IV never repeats under a
/// key). A node whose data plane runs on several workers shares one counter between the
/// workers' copies of a key: each packet takes the next value atomically, so no two workers
/// ever seal under the same IV.
enum Counter {
    Own(u64),
    Shared(Arc<AtomicU64>),
}

/// Counters this close to the end count as exhausted (a shared counter may be taken past
/// the last value by several workers at once).
const COUNTER_END: u64 = u64::MAX - (1 << 32);

impl Counter {
    fn current(&self) -> u64 {
        match self {
            Counter::Own(c) => *c,
            Counter::Shared(c) => c.load(Ordering::Relaxed),
        }
    }

    fn take(&mut self) -> Result<u64, CryptoError> {
        let seq = match self {
            Counter::Own(c) => {
                let seq = *c;
                *c = c.saturating_add(1);
                seq
            }
            Counter::Shared(c) => c.fetch_add(1, Ordering::Relaxed),
        };
        if seq >= COUNTER_END {
            return Err(CryptoError::Exhausted);
        }
        Ok(seq)
    }
}

/// The ITR's key toward one ETR RLOC.
pub struct SendKey {
    pub suite: CipherSuite,
    /// 1-3, carried in the K bits.
    pub key_id: u8,
    /// The address of ours the peer's ETR holds this key for (it keys by the ITR's
    /// address, §9): what is sealed under it leaves from there. Set by the data plane.
    pub source: Option<std::net::IpAddr>,
    cipher: Cipher,
    /// The next IV counter.
    counter: Counter,
    /// The first IV counter (packets sealed = counter - first).
    first: u64,
}

impl SendKey {
    /// A key from the 32 bytes of key material of an exchange.
    pub fn new(suite: CipherSuite, key_id: u8, km: &[u8; 32]) -> Self {
        // RFC 8061 §9: from 1; lispers.net: from a random 64-bit value.
        let first = match suite {
            CipherSuite::LispersCs6 => rand::random::<u64>() >> 1,
            _ => 1,
        };
        SendKey {
            suite,
            key_id: key_id & 3,
            source: None,
            cipher: Cipher::new(suite, km),
            counter: Counter::Own(first),
            first,
        }
    }

    /// Packets sealed so far under this key (for the rekey budget), by every copy of it.
    pub fn packets(&self) -> u64 {
        self.counter.current().saturating_sub(self.first)
    }

    /// A second handle on this key for another worker: both take their IVs from one
    /// counter from now on.
    pub fn share(&mut self) -> SendKey {
        if let Counter::Own(c) = self.counter {
            self.counter = Counter::Shared(Arc::new(AtomicU64::new(c)));
        }
        let Counter::Shared(c) = &self.counter else {
            unreachable!("made shared above")
        };
        SendKey {
            suite: self.suite,
            key_id: self.key_id,
            source: self.source,
            cipher: self.cipher.clone(),
            counter: Counter::Shared(c.clone()),
            first: self.first,
        }
    }

    /// Writes `header` (its K bits set to our key-id) || IV || sealed `plaintext` || tag
    /// into `out`, replacing what it held.
    pub fn seal(
        &mut self,
        header: DataHeader,
        plaintext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), CryptoError> {
        out.clear();
        self.seal_append(header, plaintext, out)
    }

    /// Bytes [`seal_in_place`](Self::seal_in_place) writes before the plaintext: the LISP
    /// header and the IV (RFC 8061 §6); `None` for lispers.net's padded suite, which is
    /// only sealed by [`seal_append`](Self::seal_append).
    pub fn head_len(&self) -> Option<usize> {
        match self.cipher {
            Cipher::Aead(_) => Some(DataHeader::LEN + self.suite.iv_len()),
            Cipher::Lispers(_) => None,
        }
    }

    /// Seals the plaintext `buf[packet]` where it lies (RFC 8061 §6: LISP header || IV ||
    /// ciphertext || tag, the header and IV the associated data): `header` (its K bits set to
    /// our key-id) and the IV go into the [`head_len`](Self::head_len) bytes before it, the
    /// tag into the [`TAG_LEN`] bytes after it. Returns the datagram's range in `buf`. The
    /// ITR seals the packets of a TUN read in the read's own buffers, so nothing is copied in
    /// user space between the TUN device and the socket. Fails, touching nothing, without
    /// that room or with lispers.net's padded suite.
    pub fn seal_in_place(
        &mut self,
        mut header: DataHeader,
        buf: &mut [u8],
        packet: Range<usize>,
    ) -> Result<Range<usize>, CryptoError> {
        let Cipher::Aead(key) = &self.cipher else {
            return Err(CryptoError::BadLength);
        };
        let iv_len = self.suite.iv_len();
        let head = DataHeader::LEN + iv_len;
        let (Some(start), Some(end)) = (
            packet.start.checked_sub(head),
            packet.end.checked_add(TAG_LEN),
        ) else {
            return Err(CryptoError::BadLength);
        };
        if packet.start > packet.end || end > buf.len() {
            return Err(CryptoError::BadLength);
        }
        let seq = self.counter.take()?;
        header.key_id = self.key_id;
        // Header and IV built in registers and written at once (the IV is the counter in
        // its last 8 bytes), and the nonce made from the counter, not read back.
        let mut h = [0u8; DataHeader::LEN + 12];
        header
            .emit(&mut h[..DataHeader::LEN])
            .map_err(|_| CryptoError::BadLength)?;
        h[head - 8..head].copy_from_slice(&seq.to_be_bytes());
        let (aad, rest) = buf[start..end].split_at_mut(head);
        aad.copy_from_slice(&h[..head]);
        let (data, tail) = rest.split_at_mut(packet.len());
        let mut n = [0u8; 12];
        n[4..].copy_from_slice(&seq.to_be_bytes());
        let n = Nonce::assume_unique_for_key(n);
        let tag = key
            .seal_in_place_separate_tag(n, Aad::from(&aad[..]), data)
            .map_err(|_| CryptoError::Icv)?;
        tail.copy_from_slice(tag.as_ref());
        Ok(start..end)
    }

    /// [`seal`](Self::seal), appending the datagram after what `out` holds (the data plane
    /// seals each datagram of a GSO batch straight into the batch's buffer).
    pub fn seal_append(
        &mut self,
        mut header: DataHeader,
        plaintext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), CryptoError> {
        let seq = self.counter.take()?;
        header.key_id = self.key_id;
        let start = out.len();
        match &self.cipher {
            Cipher::Aead(key) => {
                // LISP header and IV (AES-GCM: 12 bytes, the counter in the last 8;
                // ChaCha20-Poly1305: the 8-byte counter) written at once, one reservation
                // for the whole datagram.
                let iv_len = self.suite.iv_len();
                let mut head = [0u8; DataHeader::LEN + 12];
                header
                    .emit(&mut head[..DataHeader::LEN])
                    .map_err(|_| CryptoError::BadLength)?;
                let iv_end = DataHeader::LEN + iv_len;
                head[iv_end - 8..iv_end].copy_from_slice(&seq.to_be_bytes());
                out.reserve(iv_end + plaintext.len() + TAG_LEN);
                out.extend_from_slice(&head[..iv_end]);
                out.extend_from_slice(plaintext);
                let n = nonce(self.suite, &head[DataHeader::LEN..iv_end]);
                let (aad, data) = out[start..].split_at_mut(iv_end);
                let tag = key
                    .seal_in_place_separate_tag(n, Aad::from(&aad[..]), data)
                    .map_err(|_| CryptoError::Icv)?;
                out.extend_from_slice(tag.as_ref());
            }
            Cipher::Lispers(key) => {
                let mut h = [0u8; DataHeader::LEN];
                header.emit(&mut h).map_err(|_| CryptoError::BadLength)?;
                out.extend_from_slice(&h);
                let iv = seq.to_le_bytes();
                out.extend_from_slice(&iv);
                let body = out.len();
                out.extend_from_slice(plaintext);
                out.resize(body + plaintext.len().div_ceil(16) * 16, b' ');
                key.apply_keystream(&iv, &mut out[body..]);
                let icv = key.icv(&iv, &out[start..]);
                out.extend_from_slice(&icv);
            }
        }
        Ok(())
    }
}

/// The anti-replay window of a receive key: the workers of one node share it, so a packet
/// replayed toward another worker (another outer source port) is refused all the same.
// The window stays inline for the one-worker hot path (no pointer to follow per packet).
#[allow(clippy::large_enum_variant)]
enum Window {
    Own(ReplayWindow),
    Shared(Arc<Mutex<ReplayWindow>>),
}

impl Window {
    fn accept(&mut self, seq: u64) -> bool {
        match self {
            Window::Own(w) => w.accept(seq),
            Window::Shared(w) => w.lock().unwrap_or_else(|p| p.into_inner()).accept(seq),
        }
    }
}

/// The ETR's key for one ITR RLOC and key-id, with its anti-replay window.
pub struct RecvKey {
    pub suite: CipherSuite,
    pub key_id: u8,
    cipher: Cipher,
    window: Window,
}

impl RecvKey {
    pub fn new(suite: CipherSuite, key_id: u8, km: &[u8; 32]) -> Self {
        RecvKey {
            suite,
            key_id: key_id & 3,
            cipher: Cipher::new(suite, km),
            window: Window::Own(ReplayWindow::new()),
        }
    }

    /// A second handle on this key for another worker: both record what they accept in one
    /// anti-replay window from now on.
    pub fn share(&mut self) -> RecvKey {
        if let Window::Own(w) = &self.window {
            self.window = Window::Shared(Arc::new(Mutex::new(w.clone())));
        }
        let Window::Shared(w) = &self.window else {
            unreachable!("made shared above")
        };
        RecvKey {
            suite: self.suite,
            key_id: self.key_id,
            cipher: self.cipher.clone(),
            window: Window::Shared(w.clone()),
        }
    }

    /// Checks and decrypts a packet (LISP header included) in place; returns the inner
    /// packet. Order (RFC 8061 §9): length and key-id, then the ICV before anything else,
    /// then the anti-replay window, which records the counter of an authentic packet. On an
    /// ICV failure the packet may have been overwritten (ring leaves it unspecified).
    pub fn open<'a>(&mut self, packet: &'a mut [u8]) -> Result<&'a [u8], CryptoError> {
        let r = self.open_range(packet)?;
        Ok(&packet[r])
    }

    /// [`open`](Self::open), returning where the inner packet lies in `packet`.
    pub fn open_range(&mut self, packet: &mut [u8]) -> Result<std::ops::Range<usize>, CryptoError> {
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
        match &self.cipher {
            Cipher::Aead(key) => {
                let seq = u64::from_be_bytes(seq);
                let n = nonce(self.suite, &packet[DataHeader::LEN..iv_end]);
                let (head, data) = packet.split_at_mut(iv_end);
                let plain = key
                    .open_in_place(n, Aad::from(&head[..]), data)
                    .map_err(|_| CryptoError::Icv)?
                    .len();
                if !self.window.accept(seq) {
                    return Err(CryptoError::Replay);
                }
                Ok(iv_end..iv_end + plain)
            }
            Cipher::Lispers(key) => {
                let iv = seq;
                let icv_at = packet.len() - TAG_LEN;
                let want = key.icv(&iv, &packet[..icv_at]);
                if !constant_time_eq(&want, &packet[icv_at..]) {
                    return Err(CryptoError::Icv);
                }
                if !self.window.accept(u64::from_le_bytes(iv)) {
                    return Err(CryptoError::Replay);
                }
                let body = &mut packet[iv_end..icv_at];
                key.apply_keystream(&iv, body);
                // lispers pads with spaces to 16 bytes: the inner header says where it ends.
                let len = lispers::inner_length(body)
                    .filter(|l| *l <= body.len())
                    .ok_or(CryptoError::BadLength)?;
                Ok(iv_end..iv_end + len)
            }
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
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

    /// RFC 8061 §7 as written, computed independently (Python's hmac): PROTOCOL.md §5.1's
    /// vector and one more nonce, from RFC 7748's Alice / Bob shared secret.
    #[test]
    fn kdf_rfc8061_section7_vectors() {
        let z = h("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
        assert_eq!(
            hex::encode(derive_key(&z, &[1, 2, 3, 4, 5, 6, 7, 8])),
            "a1cf2f312721b813a544c7d13087a9e8e7d342b7bae388fc3c7e4fc988273711"
        );
        assert_eq!(
            hex::encode(derive_key(
                &z,
                &[0xf0, 0xe1, 0xd2, 0xc3, 0xb4, 0xa5, 0x96, 0x87]
            )),
            "6f12d216e57ea6ba9f8812af6f9c21384c7f424adcdeac79401245ae4a91fdc4"
        );
        // Both ends of a real exchange get it from their own pair and the other's public key.
        let alice = KeyPair::from_secret(h(
            "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
        ));
        let bob = KeyPair::from_secret(h(
            "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb",
        ));
        let n = [1, 2, 3, 4, 5, 6, 7, 8];
        for suite in [CipherSuite::Aes128Gcm, CipherSuite::ChaCha20Poly1305] {
            assert_eq!(
                hex::encode(alice.key_material(suite, &bob.public(), &n).unwrap()),
                "a1cf2f312721b813a544c7d13087a9e8e7d342b7bae388fc3c7e4fc988273711"
            );
        }
    }

    /// The first packet under a key, in both RFC suites, against Python's `cryptography`
    /// (AES-GCM and RFC 8439 ChaCha20-Poly1305) with AD = LISP header || IV and IV = 1.
    #[test]
    fn first_packet_matches_an_independent_aead() {
        let km = h("6f12d216e57ea6ba9f8812af6f9c21384c7f424adcdeac79401245ae4a91fdc4");
        let hdr = DataHeader::with_instance(0xabcd, 0x123456, 0);
        let pt = b"inner packet, RFC 8061 vector";
        let cases = [
            (
                CipherSuite::Aes128Gcm,
                "8a12345600abcd00000000000000000000000001",
                "274dc135b996ab126844cb45d8ceac8cf0a60f0c9dfc717864278fa6dc978b8c882e8a8de93da6134fc0f255eb",
            ),
            (
                CipherSuite::ChaCha20Poly1305,
                "8a12345600abcd000000000000000001",
                "baf52566984e7dfdf118a70f5693d7d3de1d5d9e78ee31f0ca1399602d56a061182ea9e31a5fbd141c1e221a03",
            ),
        ];
        for (suite, head, sealed) in cases {
            let mut tx = SendKey::new(suite, 2, &km);
            let mut out = Vec::new();
            tx.seal(hdr, pt, &mut out).unwrap();
            assert_eq!(hex::encode(&out[..head.len() / 2]), head, "{suite:?}");
            assert_eq!(hex::encode(&out[head.len() / 2..]), sealed, "{suite:?}");
            let mut rx = RecvKey::new(suite, 2, &km);
            assert_eq!(rx.open(&mut out).unwrap(), pt);
        }
    }

    /// Sealing where the packet lies writes the same datagram as sealing into a new buffer
    /// (whose bytes the known-answer test above pins), consumes the same IVs, and refuses,
    /// touching nothing, without room for the header and IV or the tag.
    #[test]
    fn seal_in_place_writes_what_seal_writes() {
        let km = [7u8; 32];
        let hdr = DataHeader::with_instance(0x123456, 0xabcd, 0);
        let pt = ipv4(61);
        for suite in [CipherSuite::Aes128Gcm, CipherSuite::ChaCha20Poly1305] {
            let mut a = SendKey::new(suite, 2, &km);
            let mut b = SendKey::new(suite, 2, &km);
            let head = b.head_len().unwrap();
            assert_eq!(head, 8 + suite.iv_len());
            for _ in 0..3 {
                let mut want = Vec::new();
                a.seal(hdr, &pt, &mut want).unwrap();
                // Room around the packet beyond what is needed, left untouched.
                let mut buf = vec![0xeeu8; 5 + head + pt.len() + TAG_LEN + 3];
                let at = 5 + head;
                buf[at..at + pt.len()].copy_from_slice(&pt);
                let r = b.seal_in_place(hdr, &mut buf, at..at + pt.len()).unwrap();
                assert_eq!(r, 5..5 + want.len(), "{suite:?}");
                assert_eq!(&buf[r.clone()], &want[..], "{suite:?}");
                assert!(buf[..5].iter().chain(&buf[r.end..]).all(|&x| x == 0xee));
                let mut rx = RecvKey::new(suite, 2, &km);
                assert_eq!(rx.open(&mut buf[r]).unwrap(), &pt[..]);
            }
            let packets = b.packets();
            let mut short_head = vec![0u8; head - 1 + pt.len() + TAG_LEN];
            let p = head - 1..head - 1 + pt.len();
            assert!(b.seal_in_place(hdr, &mut short_head, p).is_err());
            let mut short_tail = vec![0u8; head + pt.len() + TAG_LEN - 1];
            let p = head..head + pt.len();
            assert!(b.seal_in_place(hdr, &mut short_tail, p).is_err());
            assert!(short_head.iter().chain(&short_tail).all(|&x| x == 0));
            assert_eq!(b.packets(), packets, "a refused seal takes no IV");
        }
        let mut cs6 = SendKey::new(CipherSuite::LispersCs6, 1, &km);
        assert_eq!(cs6.head_len(), None);
        let mut buf = vec![0u8; 200];
        assert!(cs6.seal_in_place(hdr, &mut buf, 40..100).is_err());
    }

    fn pair(suite: CipherSuite) -> (SendKey, RecvKey) {
        let itr = KeyPair::generate();
        let etr = KeyPair::generate();
        let nonce = [9u8; 8];
        let k_itr = itr.key_material(suite, &etr.public(), &nonce).unwrap();
        let k_etr = etr.key_material(suite, &itr.public(), &nonce).unwrap();
        assert_eq!(k_itr, k_etr, "both ends derive the same key");
        (
            SendKey::new(suite, 2, &k_itr),
            RecvKey::new(suite, 2, &k_etr),
        )
    }

    const ALL: [CipherSuite; 3] = [
        CipherSuite::Aes128Gcm,
        CipherSuite::ChaCha20Poly1305,
        CipherSuite::LispersCs6,
    ];

    /// An IPv4 packet of `n` bytes (its Total Length says so: lispers trims by it).
    fn ipv4(n: usize) -> Vec<u8> {
        let mut p = vec![0u8; n];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&(n as u16).to_be_bytes());
        p[20..]
            .iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b = i as u8);
        p
    }

    #[test]
    fn seal_open_tamper_replay_in_every_suite() {
        for suite in ALL {
            let (mut tx, mut rx) = pair(suite);
            let hdr = DataHeader::with_instance(0, 0x123456, 0);
            let inner = ipv4(37);
            let mut out = Vec::new();
            tx.seal(hdr, &inner, &mut out).unwrap();
            let pad = if suite == CipherSuite::LispersCs6 {
                48 - 37
            } else {
                0
            };
            assert_eq!(out.len(), 8 + suite.iv_len() + TAG_LEN + 37 + pad);
            assert!(out.len() <= 8 + suite.overhead() + 37);
            assert_eq!(out[0] & 3, 2, "key-id in the K bits");
            let first = out.clone();
            assert_eq!(rx.open(&mut out.clone()).unwrap(), &inner[..]);
            assert_eq!(
                rx.open(&mut first.clone()),
                Err(CryptoError::Replay),
                "{suite:?}"
            );
            // Any changed byte fails the ICV: header, IV (it is associated data), ciphertext,
            // tag.
            tx.seal(hdr, &inner, &mut out).unwrap();
            for i in [
                1,
                5,
                9,
                8 + suite.iv_len() - 1,
                out.len() - 20,
                out.len() - 1,
            ] {
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
            tx.seal(hdr, &inner, &mut a).unwrap();
            tx.seal(hdr, &inner, &mut b).unwrap();
            assert_ne!(a[8..8 + suite.iv_len()], b[8..8 + suite.iv_len()]);
            assert_ne!(a, b);
            assert_eq!(tx.packets(), 4);
        }
    }

    /// The IV counter starts at 1 (RFC 8061 §9) and counts up, big-endian; lispers' counter
    /// starts anywhere and goes out little-endian.
    #[test]
    fn iv_counts_from_one() {
        let km = [3u8; 32];
        let hdr = DataHeader::with_instance(0, 1, 0);
        for (suite, ivs) in [
            (
                CipherSuite::Aes128Gcm,
                ["000000000000000000000001", "000000000000000000000002"],
            ),
            (
                CipherSuite::ChaCha20Poly1305,
                ["0000000000000001", "0000000000000002"],
            ),
        ] {
            let mut tx = SendKey::new(suite, 1, &km);
            for iv in ivs {
                let mut out = Vec::new();
                tx.seal(hdr, b"x", &mut out).unwrap();
                assert_eq!(hex::encode(&out[8..8 + suite.iv_len()]), iv);
            }
        }
        let mut tx = SendKey::new(CipherSuite::LispersCs6, 1, &km);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        tx.seal(hdr, &ipv4(28), &mut a).unwrap();
        tx.seal(hdr, &ipv4(28), &mut b).unwrap();
        let iv = |p: &[u8]| u64::from_le_bytes(p[8..16].try_into().unwrap());
        assert_eq!(iv(&b), iv(&a) + 1);
    }

    /// Workers' copies of one key: sealing on two threads at once never repeats an IV (RFC
    /// 8061 §9), every packet opens once under either receive copy, and a packet replayed
    /// to the other copy (another worker) is refused.
    #[test]
    fn shared_copies_never_repeat_an_iv_and_share_the_replay_window() {
        for suite in ALL {
            let (mut tx, mut rx) = pair(suite);
            let hdr = DataHeader::with_instance(0, 1, 0);
            let inner = ipv4(40);
            let mut tx2 = tx.share();
            let seal_many = |mut k: SendKey| {
                std::thread::spawn(move || {
                    (0..500)
                        .map(|_| {
                            let mut out = Vec::new();
                            k.seal(hdr, &ipv4(40), &mut out).unwrap();
                            out
                        })
                        .collect::<Vec<_>>()
                })
            };
            let mut tx3 = tx2.share();
            let a = seal_many(tx2);
            let b = seal_many(tx3.share());
            let mut all = a.join().unwrap();
            all.extend(b.join().unwrap());
            let mut ivs: Vec<Vec<u8>> = all
                .iter()
                .map(|p| p[8..8 + suite.iv_len()].to_vec())
                .collect();
            ivs.sort();
            ivs.dedup();
            assert_eq!(ivs.len(), 1000, "{suite:?}: an IV was used twice");
            assert_eq!(tx.packets(), 1000, "every copy counts every packet");
            assert_eq!(tx3.packets(), 1000);
            let mut rx2 = rx.share();
            for (i, p) in all.iter().enumerate() {
                let (first, second) = if i % 2 == 0 {
                    (&mut rx, &mut rx2)
                } else {
                    (&mut rx2, &mut rx)
                };
                assert_eq!(first.open(&mut p.clone()).unwrap(), &inner[..], "{suite:?}");
                assert_eq!(
                    second.open(&mut p.clone()),
                    Err(CryptoError::Replay),
                    "{suite:?}: replayed toward the other worker"
                );
            }
        }
    }

    #[test]
    fn kdf_depends_on_the_nonce_and_the_secret() {
        let z = [7u8; 32];
        let a = derive_key(&z, &[1; 8]);
        assert_ne!(a, derive_key(&z, &[2; 8]));
        assert_ne!(a, derive_key(&[8u8; 32], &[1; 8]));
    }
}
