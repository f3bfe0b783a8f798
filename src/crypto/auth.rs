//! Authentication of Map-Register, Map-Notify, Map-Notify-Ack and Info messages
//! (RFC 9301 §5.6; alg-ids from the IANA "LISP Algorithm ID Numbers" registry).
//!
//! The Authentication Data is an HMAC, keyed with the raw shared secret, over the whole LISP
//! message — byte 0 through the last byte, the xTR-ID / Site-ID trailer included — with the
//! Authentication Data bytes set to zero and Key ID, Algorithm ID and length left as sent.
//! lispers.net and OOR both compute it this way (recomputed from their captures) and both
//! send the full digest: 20 bytes for alg 1, 32 for alg 2. The RFC names (HMAC-SHA-1-96,
//! HMAC-SHA-256-128) imply 12 and 16 bytes; a receiver takes those truncated lengths only
//! when configured to (`KeyRing::accept_truncated`), and then compares the leftmost bytes in
//! constant time. A key configured with an algorithm verifies only messages of that
//! algorithm: a sha256 key does not accept an HMAC-SHA-1 made with the same secret.

use std::ops::Range;

use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use thiserror::Error;

use crate::wire::map_register::Authentication;
use crate::wire::msg_type;

type HmacSha1 = Hmac<sha1::Sha1>;
type HmacSha256 = Hmac<sha2::Sha256>;

/// Algorithm IDs (RFC 9301 §5.6).
pub mod alg {
    pub const NONE: u8 = 0;
    pub const HMAC_SHA_1_96: u8 = 1;
    pub const HMAC_SHA_256_128: u8 = 2;
}

/// Why a message did not authenticate.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AuthError {
    #[error("message type {0} carries no authentication field")]
    NotAuthenticatedType(u8),
    #[error("message too short for its authentication field ({0} bytes)")]
    Truncated(usize),
    #[error("algorithm 0: the message is not authenticated")]
    Unauthenticated,
    #[error("algorithm {0} is not supported (1 = HMAC-SHA-1, 2 = HMAC-SHA-256)")]
    UnsupportedAlgorithm(u8),
    #[error("algorithm {alg} with {len} bytes of authentication data (accepted: {accepted})")]
    BadLength {
        alg: u8,
        len: usize,
        accepted: &'static str,
    },
    #[error("no key configured for key-id {0}")]
    NoKey(u8),
    #[error("algorithm {alg} is not the one configured for key-id {key_id}")]
    WrongAlgorithm { alg: u8, key_id: u8 },
    #[error("authentication data does not match any configured key")]
    Mismatch,
}

/// A shared secret and the key-id it is configured under.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthKey {
    /// `None` matches any key-id (used by `decent decode --key`).
    pub key_id: Option<u8>,
    pub secret: Vec<u8>,
    /// The only algorithm (alg-id) this key verifies; `None`: any (`decent decode --key`).
    pub alg_id: Option<u8>,
}

impl std::fmt::Debug for AuthKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthKey")
            .field("key_id", &self.key_id)
            .field("alg_id", &self.alg_id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl AuthKey {
    pub fn new(key_id: Option<u8>, secret: impl Into<Vec<u8>>) -> Self {
        AuthKey {
            key_id,
            secret: secret.into(),
            alg_id: None,
        }
    }

    /// The key, verifying only messages of algorithm `alg_id`.
    pub fn with_algorithm(mut self, alg_id: u8) -> Self {
        self.alg_id = Some(alg_id);
        self
    }

    /// Reads the lispers.net syntax: `[n]secret` is the secret under key-id n; a secret with
    /// no brackets matches any key-id.
    pub fn parse_lispers(text: &str) -> Self {
        if let Some(rest) = text.strip_prefix('[')
            && let Some((id, secret)) = rest.split_once(']')
            && let Ok(id) = id.parse::<u8>()
        {
            return AuthKey::new(Some(id), secret.as_bytes());
        }
        AuthKey::new(None, text.as_bytes())
    }
}

/// Key ID, Algorithm ID and the byte range of the Authentication Data of an authenticated
/// message, read straight from its bytes.
pub fn auth_field(msg: &[u8]) -> Result<(u8, u8, Range<usize>), AuthError> {
    let t = msg.first().map_or(0, |b| b >> 4);
    if !matches!(
        t,
        msg_type::MAP_REGISTER | msg_type::MAP_NOTIFY | msg_type::MAP_NOTIFY_ACK | msg_type::INFO
    ) {
        return Err(AuthError::NotAuthenticatedType(t));
    }
    let start = Authentication::DATA_OFFSET;
    let Some(h) = msg.get(12..start) else {
        return Err(AuthError::Truncated(msg.len()));
    };
    let len = usize::from(u16::from_be_bytes([h[2], h[3]]));
    if msg.len() < start + len {
        return Err(AuthError::Truncated(msg.len()));
    }
    Ok((h[0], h[1], start..start + len))
}

/// Checks an algorithm / length pair: the full digest, or with `truncated` also the RFC's
/// truncated length.
fn check_length(alg_id: u8, len: usize, truncated: bool) -> Result<(), AuthError> {
    let (full, short) = match alg_id {
        alg::NONE => return Err(AuthError::Unauthenticated),
        alg::HMAC_SHA_1_96 => (20, 12),
        alg::HMAC_SHA_256_128 => (32, 16),
        other => return Err(AuthError::UnsupportedAlgorithm(other)),
    };
    let accepted = match (alg_id, truncated) {
        (alg::HMAC_SHA_1_96, true) => "20 or 12",
        (alg::HMAC_SHA_1_96, false) => "20",
        (_, true) => "32 or 16",
        (_, false) => "32",
    };
    if len == full || (truncated && len == short) {
        Ok(())
    } else {
        Err(AuthError::BadLength {
            alg: alg_id,
            len,
            accepted,
        })
    }
}

/// Feeds the message to the MAC with the authentication data replaced by zeros, without
/// copying it.
fn feed<M: Mac>(mut mac: M, msg: &[u8], field: &Range<usize>) -> M {
    const ZEROS: [u8; 64] = [0; 64];
    mac.update(&msg[..field.start]);
    let mut left = field.len();
    while left > 0 {
        let n = left.min(ZEROS.len());
        mac.update(&ZEROS[..n]);
        left -= n;
    }
    mac.update(&msg[field.end..]);
    mac
}

/// Constant-time comparison of the leftmost `field.len()` bytes of the HMAC with the field.
fn matches(alg_id: u8, secret: &[u8], msg: &[u8], field: &Range<usize>) -> bool {
    let tag = &msg[field.clone()];
    // An HMAC accepts keys of any length, so `new_from_slice` cannot fail here.
    match alg_id {
        alg::HMAC_SHA_1_96 => HmacSha1::new_from_slice(secret)
            .map(|m| feed(m, msg, field).verify_truncated_left(tag).is_ok())
            .unwrap_or(false),
        alg::HMAC_SHA_256_128 => HmacSha256::new_from_slice(secret)
            .map(|m| feed(m, msg, field).verify_truncated_left(tag).is_ok())
            .unwrap_or(false),
        _ => false,
    }
}

/// Fills in the Authentication Data of an emitted message, using the algorithm and length it
/// declares (the leftmost bytes of the HMAC when the length is a truncated one).
pub fn sign(msg: &mut [u8], secret: &[u8]) -> Result<(), AuthError> {
    let (_, alg_id, field) = auth_field(msg)?;
    check_length(alg_id, field.len(), true)?;
    msg[field.clone()].fill(0);
    let digest: Vec<u8> = match alg_id {
        alg::HMAC_SHA_1_96 => HmacSha1::new_from_slice(secret)
            .map_err(|_| AuthError::UnsupportedAlgorithm(alg_id))?
            .chain_update(&*msg)
            .finalize()
            .into_bytes()
            .to_vec(),
        _ => HmacSha256::new_from_slice(secret)
            .map_err(|_| AuthError::UnsupportedAlgorithm(alg_id))?
            .chain_update(&*msg)
            .finalize()
            .into_bytes()
            .to_vec(),
    };
    let n = field.len();
    msg[field].copy_from_slice(&digest[..n]);
    Ok(())
}

/// The keys a receiver accepts, and whether it takes truncated authentication data.
#[derive(Debug, Clone, Default)]
pub struct KeyRing {
    pub keys: Vec<AuthKey>,
    /// Accept the RFC's truncated lengths (12 bytes for HMAC-SHA-1, 16 for HMAC-SHA-256)
    /// besides the full digests; off by default.
    pub accept_truncated: bool,
}

impl KeyRing {
    pub fn new(keys: Vec<AuthKey>) -> Self {
        KeyRing {
            keys,
            accept_truncated: false,
        }
    }

    /// Verifies `msg` and returns the index of the key that authenticated it. Only keys
    /// configured under the message's key-id (or under no key-id), and for its algorithm
    /// (or for any), are tried.
    pub fn verify(&self, msg: &[u8]) -> Result<usize, AuthError> {
        let (key_id, alg_id, field) = auth_field(msg)?;
        check_length(alg_id, field.len(), self.accept_truncated)?;
        let mut tried = false;
        let mut other_alg = false;
        for (i, k) in self.keys.iter().enumerate() {
            if k.key_id.is_some_and(|id| id != key_id) {
                continue;
            }
            if k.alg_id.is_some_and(|a| a != alg_id) {
                other_alg = true;
                continue;
            }
            tried = true;
            if matches(alg_id, &k.secret, msg, &field) {
                return Ok(i);
            }
        }
        Err(match (tried, other_alg) {
            (true, _) => AuthError::Mismatch,
            (false, true) => AuthError::WrongAlgorithm {
                alg: alg_id,
                key_id,
            },
            (false, false) => AuthError::NoKey(key_id),
        })
    }
}

/// Verifies `msg` with one secret, whatever its key-id and algorithm, truncated lengths
/// accepted (for tools and tests).
pub fn verify(msg: &[u8], secret: &[u8]) -> Result<(), AuthError> {
    let mut ring = KeyRing::new(vec![AuthKey::new(None, secret)]);
    ring.accept_truncated = true;
    ring.verify(msg).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn register(alg_id: u8, len: usize) -> Vec<u8> {
        let mut m = vec![0x30, 0, 1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 1, alg_id];
        m.extend_from_slice(&(len as u16).to_be_bytes());
        m.extend(std::iter::repeat_n(0xaa, len));
        m.extend_from_slice(&[9, 9, 9]);
        m
    }

    #[test]
    fn sign_then_verify_every_length() {
        for (a, len) in [(1, 20), (1, 12), (2, 32), (2, 16)] {
            let mut m = register(a, len);
            sign(&mut m, b"secret").unwrap();
            assert_eq!(verify(&m, b"secret"), Ok(()), "alg {a} len {len}");
            assert_eq!(verify(&m, b"wrong"), Err(AuthError::Mismatch));
            let last = m.len() - 1;
            m[last] ^= 1;
            assert_eq!(
                verify(&m, b"secret"),
                Err(AuthError::Mismatch),
                "tamper alg {a}"
            );
        }
    }

    #[test]
    fn refuses_alg_zero_odd_lengths_and_short_messages() {
        assert_eq!(
            verify(&register(0, 0), b"k"),
            Err(AuthError::Unauthenticated)
        );
        assert!(matches!(
            verify(&register(2, 20), b"k"),
            Err(AuthError::BadLength { .. })
        ));
        assert!(matches!(
            verify(&register(1, 32), b"k"),
            Err(AuthError::BadLength { .. })
        ));
        assert_eq!(
            verify(&register(3, 32), b"k"),
            Err(AuthError::UnsupportedAlgorithm(3))
        );
        let m = register(2, 32);
        assert_eq!(verify(&m[..20], b"k"), Err(AuthError::Truncated(20)));
        assert_eq!(
            verify(&[0x10, 0, 0, 0], b"k"),
            Err(AuthError::NotAuthenticatedType(1))
        );
        // A ring takes only the full digest unless told to take the truncated lengths.
        let mut ring = KeyRing::new(vec![AuthKey::new(None, "k")]);
        for (a, len) in [(1, 12), (2, 16)] {
            let mut short = register(a, len);
            sign(&mut short, b"k").unwrap();
            assert!(matches!(
                ring.verify(&short),
                Err(AuthError::BadLength { .. })
            ));
            ring.accept_truncated = true;
            assert_eq!(ring.verify(&short), Ok(0));
            ring.accept_truncated = false;
        }
    }

    /// A key configured for sha256 does not take an HMAC-SHA-1 made with the same secret.
    #[test]
    fn the_configured_algorithm_is_enforced() {
        let ring = KeyRing::new(vec![
            AuthKey::new(Some(1), "k").with_algorithm(alg::HMAC_SHA_256_128),
        ]);
        let mut sha1 = register(alg::HMAC_SHA_1_96, 20);
        sign(&mut sha1, b"k").unwrap();
        assert_eq!(
            ring.verify(&sha1),
            Err(AuthError::WrongAlgorithm { alg: 1, key_id: 1 })
        );
        let mut sha256 = register(alg::HMAC_SHA_256_128, 32);
        sign(&mut sha256, b"k").unwrap();
        assert_eq!(ring.verify(&sha256), Ok(0));
    }

    #[test]
    fn key_chosen_by_key_id() {
        let mut m = register(2, 32); // key-id 1
        sign(&mut m, b"one").unwrap();
        let ring = KeyRing::new(vec![
            AuthKey::new(Some(0), "one"),
            AuthKey::new(Some(1), "one"),
        ]);
        assert_eq!(ring.verify(&m), Ok(1));
        let ring = KeyRing::new(vec![AuthKey::new(Some(0), "one")]);
        assert_eq!(ring.verify(&m), Err(AuthError::NoKey(1)));
        let ring = KeyRing::new(vec![
            AuthKey::new(Some(1), "two"),
            AuthKey::new(None, "one"),
        ]);
        assert_eq!(ring.verify(&m), Ok(1));
    }

    #[test]
    fn lispers_key_syntax() {
        assert_eq!(
            AuthKey::parse_lispers("[3]abc"),
            AuthKey::new(Some(3), "abc")
        );
        assert_eq!(AuthKey::parse_lispers("abc"), AuthKey::new(None, "abc"));
        assert_eq!(
            AuthKey::parse_lispers("[x]abc"),
            AuthKey::new(None, "[x]abc")
        );
    }
}
