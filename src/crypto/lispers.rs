//! The lispers.net variant of lisp-crypto suite 6 (`lispers-cs6`; PROTOCOL.md §5.2, vectors
//! §5.3), spoken only to peers the configuration names as lispers.net. It is **not**
//! RFC 8061: the RFC profile is in [`super::lisp_crypto`] and nothing here weakens it.
//!
//! What differs from RFC 8061 §7-§9, exactly as lispers.net does it on the wire:
//! - shared secret `S = SHA-256("curve25519-shared:" || X25519(ours, theirs))`;
//! - context = ASCII `"0001" "lisp-crypto" hex(A xor B) "0100"` (A, B the public keys as
//!   big-endian integers, lowercase hex without leading zeros) and
//!   `KM = HMAC-SHA-256(key = context, message = S)`: the arguments swapped;
//! - `ek` / `ik` = the lowercase hex of `KM[0..16]` / `KM[16..32]`, used as ASCII bytes;
//! - cipher: Bernstein's original ChaCha with **8 rounds**, the 32 ASCII bytes of `ek` as
//!   key, a 64-bit block counter from 0 and the 8 IV bytes as its 64-bit nonce;
//! - ICV: Poly1305-AES over `LISP header || IV || ciphertext`, with `r` = the ASCII `ik` read
//!   as a 256-bit little-endian integer (not clamped) and the pad = AES-256(key = ASCII `ek`,
//!   block = the 16 ASCII hex digits of the IV bytes);
//! - IV: a 64-bit counter from a random start, sent as 8 little-endian bytes;
//! - the inner packet is padded with ASCII spaces to a multiple of 16 bytes; the receiver
//!   trims it by the inner IP header's length;
//! - key-id 1 always.
//!
//! No crate offers ChaCha8 with the 64-bit "djb" nonce or Poly1305 with an unclamped `r`,
//! so both are written out below and checked against PROTOCOL.md §5.3's vectors.

use aes::cipher::{BlockEncrypt, KeyInit as _};
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// Bytes of IV and of ICV in a lispers-cs6 packet.
pub const IV_LEN: usize = 8;
pub const ICV_LEN: usize = 16;

/// The key material (`KM`, 32 bytes) of the lispers variant, from the raw X25519 output
/// and both public keys (the order of the keys does not matter: the context XORs them).
pub fn key_material(raw_shared: &[u8; 32], pub_a: &[u8; 32], pub_b: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"curve25519-shared:");
    h.update(raw_shared);
    let s = h.finalize();
    let mut x = [0u8; 32];
    for (o, (a, b)) in x.iter_mut().zip(pub_a.iter().zip(pub_b)) {
        *o = a ^ b;
    }
    let hex_x = hex::encode(x);
    let trimmed = hex_x.trim_start_matches('0');
    let digits = if trimmed.is_empty() { "0" } else { trimmed };
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(
        format!("0001lisp-crypto{digits}0100").as_bytes(),
    )
    .expect("HMAC takes any key length");
    mac.update(&s);
    mac.finalize().into_bytes().into()
}

/// The keys of one lispers-cs6 session, derived from its key material.
#[derive(Clone)]
pub struct Cs6Key {
    /// ASCII hex of `KM[0..16]`: the ChaCha8 key and the AES-256 key of the Poly1305 pad.
    ek: [u8; 32],
    aes: aes::Aes256,
    /// `r` reduced modulo 2^130 - 5, in five 26-bit limbs.
    r: [u32; 5],
}

impl Cs6Key {
    pub fn new(km: &[u8; 32]) -> Self {
        let mut ek = [0u8; 32];
        let mut ik = [0u8; 32];
        hex::encode_to_slice(&km[..16], &mut ek).expect("16 bytes fill 32 hex digits");
        hex::encode_to_slice(&km[16..], &mut ik).expect("16 bytes fill 32 hex digits");
        Cs6Key {
            aes: aes::Aes256::new(&ek.into()),
            ek,
            r: reduce_256(&ik),
        }
    }

    /// The ASCII encryption and ICV keys (`ek`, `ik` of PROTOCOL.md §5.3), for tests.
    #[cfg(test)]
    fn ek(&self) -> &[u8; 32] {
        &self.ek
    }

    /// XORs ChaCha8's keystream for `iv` into `data`.
    pub fn apply_keystream(&self, iv: &[u8; IV_LEN], data: &mut [u8]) {
        chacha8_xor(&self.ek, iv, data);
    }

    /// Poly1305-AES over `msg` with the pad of `iv`.
    pub fn icv(&self, iv: &[u8; IV_LEN], msg: &[u8]) -> [u8; ICV_LEN] {
        let mut nonce = [0u8; 16];
        hex::encode_to_slice(iv, &mut nonce).expect("8 bytes fill 16 hex digits");
        let mut block = nonce.into();
        self.aes.encrypt_block(&mut block);
        let s = u128::from_le_bytes(block.into());
        poly1305(&self.r, msg).wrapping_add(s).to_le_bytes()
    }
}

const MASK26: u32 = (1 << 26) - 1;

/// A little-endian number of up to 260 bits (`bytes`) modulo 2^130 - 5, in 26-bit limbs.
fn reduce_256(bytes: &[u8; 32]) -> [u32; 5] {
    let mut wide = [0u64; 10];
    for (i, w) in wide.iter_mut().enumerate() {
        let bit = i * 26;
        let mut v: u64 = 0;
        for k in 0..5 {
            let byte = bit / 8 + k;
            if byte < 32 {
                v |= u64::from(bytes[byte]) << (8 * k);
            }
        }
        *w = (v >> (bit % 8)) & u64::from(MASK26);
    }
    // 2^130 = 5 (mod p): fold limbs 5-9 into 0-4.
    let mut l = [0u64; 5];
    for i in 0..5 {
        l[i] = wide[i] + 5 * wide[i + 5];
    }
    let mut out = [0u32; 5];
    for _ in 0..3 {
        let mut c = 0u64;
        for x in l.iter_mut() {
            *x += c;
            c = *x >> 26;
            *x &= u64::from(MASK26);
        }
        l[0] += 5 * c;
    }
    for (o, x) in out.iter_mut().zip(l) {
        *o = x as u32;
    }
    out
}

/// Poly1305's polynomial (before the pad is added) of `msg` under `r`, modulo 2^128.
fn poly1305(r: &[u32; 5], msg: &[u8]) -> u128 {
    let r: [u64; 5] = r.map(u64::from);
    let s: [u64; 5] = r.map(|x| x * 5);
    let mut h = [0u64; 5];
    for chunk in msg.chunks(16) {
        let mut b = [0u8; 17];
        b[..chunk.len()].copy_from_slice(chunk);
        b[chunk.len()] = 1;
        let le32 = |i: usize| u64::from(u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]));
        let m = u64::from(MASK26);
        h[0] += le32(0) & m;
        h[1] += (le32(3) >> 2) & m;
        h[2] += (le32(6) >> 4) & m;
        h[3] += (le32(9) >> 6) & m;
        h[4] += (le32(12) >> 8) | (u64::from(b[16]) << 24);
        let d = [
            h[0] * r[0] + h[1] * s[4] + h[2] * s[3] + h[3] * s[2] + h[4] * s[1],
            h[0] * r[1] + h[1] * r[0] + h[2] * s[4] + h[3] * s[3] + h[4] * s[2],
            h[0] * r[2] + h[1] * r[1] + h[2] * r[0] + h[3] * s[4] + h[4] * s[3],
            h[0] * r[3] + h[1] * r[2] + h[2] * r[1] + h[3] * r[0] + h[4] * s[4],
            h[0] * r[4] + h[1] * r[3] + h[2] * r[2] + h[3] * r[1] + h[4] * r[0],
        ];
        let mut c = 0u64;
        for (hi, di) in h.iter_mut().zip(d) {
            let v = di + c;
            *hi = v & m;
            c = v >> 26;
        }
        h[0] += c * 5;
        c = h[0] >> 26;
        h[0] &= m;
        h[1] += c;
    }
    // Full reduction: carry through, then subtract p if h >= p.
    let m = u64::from(MASK26);
    let mut c;
    for _ in 0..2 {
        c = 0;
        for x in h.iter_mut() {
            *x += c;
            c = *x >> 26;
            *x &= m;
        }
        h[0] += c * 5;
    }
    let mut g = [0u64; 5];
    c = 5;
    for (gi, hi) in g.iter_mut().zip(h) {
        let v = hi + c;
        *gi = v & m;
        c = v >> 26;
    }
    // c is 1 exactly when h + 5 >= 2^130, i.e. h >= p.
    if c == 1 {
        h = g;
    }
    let v: u128 = u128::from(h[0])
        | (u128::from(h[1]) << 26)
        | (u128::from(h[2]) << 52)
        | (u128::from(h[3]) << 78)
        | (u128::from(h[4]) << 104);
    v
}

/// ChaCha with 8 rounds in its original form: "expand 32-byte k", 8 key words, a 64-bit
/// block counter from 0 (words 12-13) and a 64-bit nonce (words 14-15).
fn chacha8_xor(key: &[u8; 32], nonce: &[u8; 8], data: &mut [u8]) {
    const C: [u32; 4] = [0x6170_7865, 0x3320_646e, 0x7962_2d32, 0x6b20_6574];
    let word = |b: &[u8], i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    let mut init = [0u32; 16];
    init[..4].copy_from_slice(&C);
    for i in 0..8 {
        init[4 + i] = word(key, 4 * i);
    }
    init[14] = word(nonce, 0);
    init[15] = word(nonce, 4);
    fn qr(x: &mut [u32; 16], a: usize, b: usize, c: usize, d: usize) {
        x[a] = x[a].wrapping_add(x[b]);
        x[d] = (x[d] ^ x[a]).rotate_left(16);
        x[c] = x[c].wrapping_add(x[d]);
        x[b] = (x[b] ^ x[c]).rotate_left(12);
        x[a] = x[a].wrapping_add(x[b]);
        x[d] = (x[d] ^ x[a]).rotate_left(8);
        x[c] = x[c].wrapping_add(x[d]);
        x[b] = (x[b] ^ x[c]).rotate_left(7);
    }
    for (counter, chunk) in data.chunks_mut(64).enumerate() {
        let counter = counter as u64;
        let mut st = init;
        st[12] = counter as u32;
        st[13] = (counter >> 32) as u32;
        let mut x = st;
        for _ in 0..4 {
            qr(&mut x, 0, 4, 8, 12);
            qr(&mut x, 1, 5, 9, 13);
            qr(&mut x, 2, 6, 10, 14);
            qr(&mut x, 3, 7, 11, 15);
            qr(&mut x, 0, 5, 10, 15);
            qr(&mut x, 1, 6, 11, 12);
            qr(&mut x, 2, 7, 8, 13);
            qr(&mut x, 3, 4, 9, 14);
        }
        let mut ks = [0u8; 64];
        for i in 0..16 {
            ks[4 * i..4 * i + 4].copy_from_slice(&x[i].wrapping_add(st[i]).to_le_bytes());
        }
        for (d, k) in chunk.iter_mut().zip(ks) {
            *d ^= k;
        }
    }
}

/// The inner packet's own length, from its IPv4 Total Length or IPv6 Payload Length (the
/// receiver trims lispers' space padding with it); `None` when the header is not there.
pub fn inner_length(packet: &[u8]) -> Option<usize> {
    match packet.first()? >> 4 {
        4 => Some(usize::from(u16::from_be_bytes([
            *packet.get(2)?,
            *packet.get(3)?,
        ]))),
        6 => Some(40 + usize::from(u16::from_be_bytes([*packet.get(4)?, *packet.get(5)?]))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::lisp_crypto::KeyPair;

    fn scalar(ascii: &str) -> KeyPair {
        KeyPair::from_secret(ascii.as_bytes().try_into().unwrap())
    }

    /// PROTOCOL.md §5.3, vectors A and B: public keys, key material and the encryption of a
    /// 20-byte packet, byte for byte.
    #[test]
    fn lispers_cs6_vectors() {
        let etr = scalar("fedcba9876543210fedcba9876543210");
        assert_eq!(
            hex::encode(etr.public()),
            "dbfca07744d1aa20b5b1e6ebe9568ccf15309ea27d666a3df07c09a680938512"
        );
        let cases = [
            (
                "0123456789abcdef0123456789abcdef",
                "86517bc0c39fe876b7646cb5e34ee03daf71ccbad67450c16a970ad8cbc03e7e",
                "12cae506429f05127292b72d2c5fb7de",
                "f54324804a9082dd88997bedce3e5549",
                "b2a85ac9aee621c8ed8869a4a857ba0606845389d44946a4229cccf448b4e5a8\
                 06a9419b3621fad3883034865e308825",
            ),
            (
                "0123456789abcdef0123456789abcdf9",
                "dbae8569df9b9783ebce24f7903a06cf746e9d34912ad26766a29781a44a5470",
                "3bd7ba7fd1761d255eead7c2c8a90546",
                "2c4db46f860a15f96cec297b58ad320c",
                "cfdfe10caf9edd2d5c2c53f529be219ee4dbde79994e2d572e65d902ec1856e2\
                 6324b71f53b02b701edcee733ceab066",
            ),
        ];
        for (itr_scalar, itr_pub, ek, ik, ct_icv) in cases {
            let itr = scalar(itr_scalar);
            assert_eq!(hex::encode(itr.public()), itr_pub);
            let raw = itr.shared_secret(&etr.public()).unwrap();
            let km = key_material(&raw, &itr.public(), &etr.public());
            // Both ends derive the same material.
            let raw2 = etr.shared_secret(&itr.public()).unwrap();
            assert_eq!(km, key_material(&raw2, &etr.public(), &itr.public()));
            assert_eq!(hex::encode(&km[..16]), ek);
            assert_eq!(hex::encode(&km[16..]), ik);
            let k = Cs6Key::new(&km);
            assert_eq!(k.ek(), ek.as_bytes());
            let mut body: Vec<u8> = (0u8..20).collect();
            body.resize(32, b' ');
            let iv = 0x1122_3344_5566_7788u64.to_le_bytes();
            k.apply_keystream(&iv, &mut body);
            let mut msg = hex::decode("8156576e00000000").unwrap();
            msg.extend_from_slice(&iv);
            msg.extend_from_slice(&body);
            let icv = k.icv(&iv, &msg);
            let mut got = body.clone();
            got.extend_from_slice(&icv);
            assert_eq!(hex::encode(got), ct_icv.replace(' ', ""));
        }
    }

    /// With `r` clamped and a known pad, the polynomial is RFC 8439's Poly1305: its §2.5.2
    /// example.
    #[test]
    fn poly1305_matches_rfc8439_when_r_is_clamped() {
        let key = hex::decode("85d6be7857556d337f4452fe42d506a80103808afb0db2fd4abff6af4149f51b")
            .unwrap();
        let mut r = [0u8; 32];
        r[..16].copy_from_slice(&key[..16]);
        let clamp = [
            0xff, 0xff, 0xff, 0x0f, 0xfc, 0xff, 0xff, 0x0f, 0xfc, 0xff, 0xff, 0x0f, 0xfc, 0xff,
            0xff, 0x0f,
        ];
        for (x, c) in r.iter_mut().zip(clamp) {
            *x &= c;
        }
        let s = u128::from_le_bytes(key[16..].try_into().unwrap());
        let tag = poly1305(&reduce_256(&r), b"Cryptographic Forum Research Group").wrapping_add(s);
        assert_eq!(
            hex::encode(tag.to_le_bytes()),
            "a8061dc1305136c6c22b8baf0c0127a9"
        );
    }

    #[test]
    fn inner_length_reads_both_families() {
        let mut v4 = vec![0x45, 0, 0, 28];
        v4.resize(32, b' ');
        assert_eq!(inner_length(&v4), Some(28));
        let mut v6 = vec![0x60, 0, 0, 0, 0, 8];
        v6.resize(48, 0);
        assert_eq!(inner_length(&v6), Some(48));
        assert_eq!(inner_length(&[0x45, 0]), None);
        assert_eq!(inner_length(&[0x15, 0, 0, 0]), None);
    }
}
