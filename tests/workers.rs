//! The contract between a node's data-plane workers, without threads or a network: each
//! worker's `Xtr` installs its own share of one prepared key (`KeyEvent::prepare`,
//! `PreparedKey::share`, `Xtr::install_key`), the way node/worker.rs hands keys out, and
//! looks packets up in the same map-cache snapshot. Deterministic.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use lisp_decent::crypto::lisp_crypto::{CipherSuite, KeyPair};
use lisp_decent::dataplane::{
    Decapsulated, Drop, Encapsulated, KeyEvent, PreparedKey, Xtr, XtrConfig,
};
use lisp_decent::mapping::{EidPrefix, MapCache};
use lisp_decent::sim;

const ITR: [u8; 4] = [192, 0, 2, 1];
const ETR: [u8; 4] = [192, 0, 2, 2];

fn xtr(rloc: [u8; 4], database: &str, suite: CipherSuite) -> Xtr {
    Xtr::new(XtrConfig {
        database: vec![EidPrefix::new(0, database.parse().unwrap())],
        rlocs: vec![IpAddr::from(rloc)],
        encryption: Some(suite),
        allow_clear: false,
        underlay_mtu: 1500,
        rekey_packets: u64::MAX,
        rng_seed: u64::from(rloc[3]),
    })
}

/// The map-cache snapshot every ITR worker looks up in: 10.3.0.0/16 at the ETR.
fn cache() -> MapCache {
    let mut c = MapCache::new();
    c.insert(sim::cache_entry(
        EidPrefix::new(0, "10.3.0.0/16".parse().unwrap()),
        &[IpAddr::from(ETR)],
        Duration::from_secs(3600),
    ));
    c
}

/// A UDP packet 10.1.0.1 -> 10.3.0.1 from source port `port` (each port its own flow).
fn packet(port: u16) -> Vec<u8> {
    let mut p = hex::decode("45000064000040004011000a0a0100010a030001").unwrap();
    p.extend_from_slice(&port.to_be_bytes());
    p.extend_from_slice(&[0x13, 0x89, 0x00, 0x50, 0, 0]);
    p.resize(100, 0x5a);
    p
}

/// One prepared key, a share per worker, installed in each.
fn install(now: Duration, e: KeyEvent, workers: &mut [&mut Xtr]) {
    let mut k = e.prepare();
    let mut shares: Vec<PreparedKey> = (1..workers.len()).map(|_| k.share()).collect();
    shares.push(k);
    for (w, s) in workers.iter_mut().zip(shares) {
        w.install_key(now, s);
    }
}

/// Two ITR workers seal 400 packets of 400 flows between them under one key: no IV is used
/// twice, each copy counts every packet sealed (the rekey budget is the key's, not the
/// worker's); two ETR workers each open what reaches them, and a datagram replayed toward
/// the other worker (another socket, another source port) is refused as a replay, in both
/// suites.
#[test]
fn worker_shards_share_one_iv_counter_and_one_replay_window() {
    for suite in [CipherSuite::Aes128Gcm, CipherSuite::ChaCha20Poly1305] {
        let now = Duration::from_secs(1);
        let (a, b) = (KeyPair::from_secret([7; 32]), KeyPair::from_secret([9; 32]));
        let key = a.key_material(suite, &b.public(), &[1; 8]).unwrap();
        let (mut i0, mut i1) = (
            xtr(ITR, "10.1.0.0/16", suite),
            xtr(ITR, "10.1.0.0/16", suite),
        );
        let (mut e0, mut e1) = (
            xtr(ETR, "10.3.0.0/16", suite),
            xtr(ETR, "10.3.0.0/16", suite),
        );
        let send = KeyEvent::Send {
            rloc: IpAddr::from(ETR),
            suite,
            key_id: 1,
            key,
            source: None,
        };
        let recv = KeyEvent::Recv {
            itr: IpAddr::from(ITR),
            suite,
            key_id: 1,
            key,
        };
        install(now, send, &mut [&mut i0, &mut i1]);
        install(now, recv, &mut [&mut e0, &mut e1]);
        let snapshot = std::sync::Arc::new(cache());
        let mut datagrams: Vec<Vec<u8>> = Vec::new();
        let mut buf = Vec::new();
        for port in 0..400u16 {
            let w = if port % 3 == 0 { &mut i1 } else { &mut i0 };
            assert_eq!(
                w.encapsulate(now, 0, &packet(1000 + port), &snapshot),
                Encapsulated::Staged
            );
            while let Some(t) = w.poll_transmit(&mut buf) {
                let seg = t.segment.unwrap_or(buf.len());
                datagrams.extend(buf.chunks(seg).map(<[u8]>::to_vec));
            }
        }
        assert_eq!(datagrams.len(), 400);
        let iv_len = suite.iv_len();
        let mut ivs: Vec<&[u8]> = datagrams.iter().map(|d| &d[8..8 + iv_len]).collect();
        ivs.sort();
        ivs.dedup();
        assert_eq!(ivs.len(), 400, "{suite:?}: an IV was used twice");
        for w in [&i0, &i1] {
            let r = w.report();
            assert_eq!(r.send_keys.len(), 1);
            assert_eq!(
                r.send_keys[0].3, 400,
                "{suite:?}: each copy counts the key's packets"
            );
        }
        let from = SocketAddr::new(IpAddr::from(ITR), 61000);
        for (n, d) in datagrams.iter().enumerate() {
            let (first, other) = if n % 2 == 0 {
                (&mut e0, &mut e1)
            } else {
                (&mut e1, &mut e0)
            };
            let mut copy = d.clone();
            assert!(
                matches!(
                    first.decapsulate(now, from, &mut copy),
                    Decapsulated::Deliver { iid: 0, .. }
                ),
                "{suite:?}: datagram {n} did not open"
            );
            let mut again = d.clone();
            let replayed = SocketAddr::new(IpAddr::from(ITR), 61001);
            assert_eq!(
                other.decapsulate(now, replayed, &mut again),
                Decapsulated::Dropped(Drop::Replayed),
                "{suite:?}: datagram {n} replayed toward the other worker"
            );
        }
        for w in [&mut e0, &mut e1] {
            w.flush_counters();
            assert_eq!(w.stats().decapsulated.packets, 200);
            assert_eq!(w.stats().dropped(Drop::Replayed), 200);
        }
    }
}
