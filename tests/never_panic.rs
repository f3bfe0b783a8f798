//! Never panic: arbitrary bytes, and mutations of the real captured packets, through every
//! parser entry point. Whatever parses must also re-emit and parse back to itself.

use std::path::Path;

use lisp_decent::crypto::auth;
use lisp_decent::crypto::lisp_crypto::{CipherSuite, RecvKey};
use lisp_decent::present::capture::{FrameItem, read_capture};
use lisp_decent::present::describe;
use lisp_decent::wire::*;
use proptest::prelude::*;

/// Every entry point a packet from the network can reach.
fn all_parsers(bytes: &[u8]) {
    if let Ok(m) = ControlMessage::parse(bytes) {
        let again = m.to_bytes().expect("a parsed message emits");
        assert_eq!(ControlMessage::parse(&again).expect("re-parse"), m);
        let _ = describe::message_json(&m);
    }
    let _ = ControlMessage::parse_from(&mut Reader::new(bytes));
    let _ = DataHeader::parse(bytes);
    let _ = describe::data_json(bytes);
    let _ = Address::parse(&mut Reader::new(bytes), 0);
    let _ = IpUdp::parse(&mut Reader::new(bytes));
    let _ = auth::verify(bytes, b"k");
    let _ = auth::auth_field(bytes);
    let _ = lisp_decent::dataplane::FlowKey::of(bytes);
    data_plane(bytes);
    for suite in [
        CipherSuite::Aes128Gcm,
        CipherSuite::ChaCha20Poly1305,
        CipherSuite::LispersCs6,
    ] {
        let mut rx = RecvKey::new(suite, (bytes.first().copied().unwrap_or(0)) & 3, &[9u8; 32]);
        let _ = rx.open(&mut bytes.to_vec());
        let mut keys = lisp_decent::dataplane::keys::RecvKeys::new();
        let itr = std::net::IpAddr::from([192, 0, 2, 1]);
        for id in 1..=3 {
            keys.install(std::time::Duration::ZERO, itr, suite, id, [id; 32]);
        }
        let _ = keys.open(std::time::Duration::ZERO, itr, &mut bytes.to_vec());
    }
    let _ = lisp_decent::crypto::kx_auth::split(bytes);
    let _ = lisp_decent::crypto::kx_auth::KxKey::from_site_key(b"k").verify(bytes);
}

/// The data plane, ETR and ITR side, with keys for every key-id of the sender, clear data
/// refused and accepted, and a mapping for 10/8.
fn data_plane(bytes: &[u8]) {
    use lisp_decent::dataplane::{KeyEvent, Xtr, XtrConfig};
    use lisp_decent::mapping::{EidPrefix, MapCache};
    use std::time::Duration;
    let from: std::net::SocketAddr = "192.0.2.1:61000".parse().unwrap();
    let eid = EidPrefix::new(0, "10.0.0.0/8".parse().unwrap());
    let mut cache = MapCache::new();
    cache.insert(lisp_decent::sim::cache_entry(
        eid,
        &[from.ip()],
        Duration::from_secs(60),
    ));
    for (encryption, allow_clear) in [(None, false), (Some(CipherSuite::Aes128Gcm), true)] {
        let mut x = Xtr::new(XtrConfig {
            database: vec![eid],
            rlocs: vec![from.ip()],
            encryption,
            allow_clear,
            underlay_mtu: 1500,
            rekey_packets: 4,
            rng_seed: 1,
        });
        for key_id in 1..=3 {
            x.handle_key_event(
                Duration::ZERO,
                KeyEvent::Recv {
                    itr: from.ip(),
                    suite: CipherSuite::ChaCha20Poly1305,
                    key_id,
                    key: [key_id; 32],
                },
            );
        }
        let _ = x.decapsulate(Duration::ZERO, from, &mut bytes.to_vec());
        let _ = x.encapsulate(Duration::ZERO, 0, bytes, &cache);
        let mut buf = Vec::new();
        while x.poll_transmit(&mut buf).is_some() {}
        let _ = lisp_decent::wire::ip::IpPacket::new_checked(bytes).map(|ip| {
            (
                ip.source(),
                ip.destination(),
                ip.ports(),
                ip.tos(),
                ip.ttl(),
                ip.is_icmp_error(),
            )
        });
    }
}

fn vectors() -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let mut v = Vec::new();
    for f in std::fs::read_dir(dir).unwrap() {
        let path = f.unwrap().path();
        if path.extension().is_some_and(|e| e == "pcap") {
            for item in read_capture(&path).unwrap() {
                if let FrameItem::Lisp(d) = item {
                    v.push(d.payload);
                }
            }
        }
    }
    v
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        all_parsers(&bytes);
    }

    /// Arbitrary bytes behind a valid message type nibble, so every parser body is reached.
    #[test]
    fn arbitrary_bodies(t in 1u8..=8, bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut b = bytes;
        b.insert(0, t << 4);
        all_parsers(&b);
    }

    #[test]
    fn mutated_vectors(idx in any::<prop::sample::Index>(), edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6), cut in any::<prop::sample::Index>(), extend in proptest::collection::vec(any::<u8>(), 0..8)) {
        let vs = vectors_cached();
        let mut b = vs[idx.index(vs.len())].clone();
        for (at, val) in edits {
            let i = at.index(b.len());
            b[i] = val;
        }
        all_parsers(&b);
        let c = cut.index(b.len() + 1);
        all_parsers(&b[..c]);
        b.extend_from_slice(&extend);
        all_parsers(&b);
    }
}

fn vectors_cached() -> &'static Vec<Vec<u8>> {
    static V: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
    V.get_or_init(vectors)
}

#[test]
fn deep_nesting_is_refused_not_followed() {
    // 64 AFI-List LCAFs nested in each other, each with the right length.
    let mut inner = vec![0x00, 0x01, 10, 0, 0, 1];
    for _ in 0..64 {
        let mut l = vec![0x40, 0x03, 0, 0, 1, 0];
        l.extend_from_slice(&(inner.len() as u16).to_be_bytes());
        l.extend_from_slice(&inner);
        inner = l;
    }
    let e = Address::parse(&mut Reader::new(&inner), 0).unwrap_err();
    assert!(matches!(e, WireError::TooDeep { .. }), "{e}");
}

#[test]
fn huge_counts_do_not_allocate_or_loop() {
    // A Map-Reply claiming 255 records, each claiming 255 locators, with 20 bytes of body.
    let mut b = vec![0x20, 0, 0, 0xff, 1, 2, 3, 4, 5, 6, 7, 8];
    b.extend_from_slice(&[
        0, 0, 0, 1, 0xff, 32, 0, 0, 0, 0, 0, 1, 10, 0, 0, 0, 1, 2, 3, 4,
    ]);
    let e = ControlMessage::parse(&b).unwrap_err();
    assert!(matches!(e, WireError::Truncated { .. }), "{e}");
    // A Security Key LCAF that claims 255 keys of 65535 bytes.
    let k = [
        0x40, 0x03, 0, 0, 11, 0, 0, 8, 0xff, 0, 5, 0, 0xff, 0xff, 0, 0,
    ];
    assert!(Address::parse(&mut Reader::new(&k), 0).is_err());
}

#[test]
fn errors_name_field_and_offset() {
    // A Map-Register cut inside its Authentication Data.
    let b = hex::decode("3200080101dfdfdfddccbbaa01020020b9660d46").unwrap();
    let e = ControlMessage::parse(&b).unwrap_err();
    assert_eq!(e.field(), "Authentication Data");
    assert_eq!(e.offset(), Some(16));
    assert!(e.to_string().contains("offset 16"), "{e}");
    // An LCAF whose Length runs past the message.
    let b = hex::decode("200000011122334455667788000000010100100000004003000001000050").unwrap();
    let e = ControlMessage::parse(&b).unwrap_err();
    assert_eq!((e.field(), e.offset()), ("LCAF payload", Some(30)));
}
