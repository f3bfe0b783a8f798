//! Any bytes on UDP 4341 with the K bits set, from an ITR we hold keys for: the ETR's key
//! table (every suite, candidates and the key in use) checks and opens them in place, and
//! any bytes on 4342 that end like a signed key exchange are split and verified.
#![no_main]

use std::net::IpAddr;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use lisp_decent::crypto::kx_auth::{self, KxKey};
use lisp_decent::crypto::lisp_crypto::CipherSuite;
use lisp_decent::dataplane::keys::RecvKeys;

fuzz_target!(|data: &[u8]| {
    let itr = IpAddr::from([192, 0, 2, 1]);
    for suite in [
        CipherSuite::Aes128Gcm,
        CipherSuite::ChaCha20Poly1305,
        CipherSuite::LispersCs6,
    ] {
        let mut keys = RecvKeys::new();
        for id in 1..=3u8 {
            keys.install(Duration::ZERO, itr, suite, id, [id; 32]);
            keys.install(Duration::ZERO, itr, suite, id, [id + 3; 32]);
        }
        let mut packet = data.to_vec();
        if let Ok(r) = keys.open(Duration::ZERO, itr, &mut packet) {
            assert!(r.end <= packet.len());
        }
    }
    if let Some((message, tag)) = kx_auth::split(data) {
        assert_eq!(message.len() + tag.len() + 4, data.len());
    }
    let _ = KxKey::from_site_key(b"fuzz").verify(data);
});
