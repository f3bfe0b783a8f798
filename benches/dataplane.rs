//! Data-plane per-packet work on one core, through the real sans-IO path: `Xtr::encapsulate`
//! (lookup, flow hash, RLOC choice, encapsulation and seal) and `Xtr::decapsulate` (key,
//! ICV, replay window, decryption, our-EID check) of a 1400-byte inner packet in each suite
//! (ring), ring's raw AEAD on the same bytes as the baseline they are measured against
//! (`scripts/bench-crypto-ratio.sh` prints the ratio), and the clear encapsulation.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use lisp_decent::crypto::lisp_crypto::{CipherSuite, KeyPair};
use lisp_decent::dataplane::{Decapsulated, Encapsulated, KeyEvent, Xtr, XtrConfig};
use lisp_decent::mapping::{EidPrefix, MapCache};
use lisp_decent::sim;

fn packet() -> Vec<u8> {
    let mut p = hex::decode("45000578000040004011000a0a0100010a030001").expect("hex");
    p.extend_from_slice(&[0x13, 0x88, 0x13, 0x89, 0x05, 0x64, 0, 0]);
    p.resize(1400, 0xab);
    p
}

const ITR: [u8; 4] = [192, 0, 2, 1];
const ETR: [u8; 4] = [192, 0, 2, 2];

fn xtr(rloc: [u8; 4], database: &str, encryption: Option<CipherSuite>) -> Xtr {
    Xtr::new(XtrConfig {
        database: vec![EidPrefix::new(0, database.parse().expect("prefix"))],
        rlocs: vec![IpAddr::from(rloc)],
        encryption,
        allow_clear: false,
        underlay_mtu: 1500,
        rekey_packets: u64::MAX,
        rng_seed: 1,
    })
}

/// The ITR's map-cache: 10.3.0.0/16 at the ETR.
fn cache() -> MapCache {
    let mut c = MapCache::new();
    c.insert(sim::cache_entry(
        EidPrefix::new(0, "10.3.0.0/16".parse().expect("prefix")),
        &[IpAddr::from(ETR)],
        Duration::from_secs(3600),
    ));
    c
}

fn crypto(c: &mut Criterion) {
    let inner = packet();
    let now = Duration::from_secs(1);
    let mut g = c.benchmark_group("lisp-crypto 1400 B");
    g.throughput(Throughput::Bytes(inner.len() as u64));
    for suite in [
        CipherSuite::Aes128Gcm,
        CipherSuite::ChaCha20Poly1305,
        CipherSuite::LispersCs6,
    ] {
        let (a, b) = (KeyPair::generate(), KeyPair::generate());
        let key = a.key_material(suite, &b.public(), &[1; 8]).expect("x25519");
        let cache = cache();
        let mut itr = xtr(ITR, "10.1.0.0/16", Some(suite));
        itr.handle_key_event(
            now,
            KeyEvent::Send {
                rloc: IpAddr::from(ETR),
                suite,
                key_id: 1,
                key,
            },
        );
        let mut out = Vec::with_capacity(65536);
        let mut n = 0u32;
        g.bench_function(format!("encap+seal {suite:?}"), |bn| {
            bn.iter(|| {
                let r = itr.encapsulate(now, 0, black_box(&inner), &cache);
                assert_eq!(r, Encapsulated::Staged);
                n += 1;
                if n.is_multiple_of(32) {
                    while itr.poll_transmit(&mut out).is_some() {}
                }
            })
        });
        while itr.poll_transmit(&mut out).is_some() {}
        // Open genuine datagrams in order, copying each in (decapsulation works in place);
        // a fresh ETR per pass, as each counter opens once per replay window.
        let sealed: Vec<Vec<u8>> = (0..4096)
            .map(|_| {
                itr.encapsulate(now, 0, &inner, &cache);
                let mut o = Vec::new();
                itr.poll_transmit(&mut o).expect("one datagram");
                o
            })
            .collect();
        let etr = || {
            let mut x = xtr(ETR, "10.3.0.0/16", Some(suite));
            x.handle_key_event(
                now,
                KeyEvent::Recv {
                    itr: IpAddr::from(ITR),
                    suite,
                    key_id: 1,
                    key,
                },
            );
            x
        };
        let mut rx = etr();
        let from = SocketAddr::new(IpAddr::from(ITR), 61000);
        let mut buf = Vec::with_capacity(1500);
        let mut i = 0usize;
        g.bench_function(format!("open+decap {suite:?}"), |bn| {
            bn.iter(|| {
                let k = i % sealed.len();
                i += 1;
                if k == 0 {
                    rx = etr();
                }
                buf.clear();
                buf.extend_from_slice(&sealed[k]);
                let delivered = matches!(
                    rx.decapsulate(now, from, &mut buf),
                    Decapsulated::Deliver { .. }
                );
                assert!(
                    delivered,
                    "every benchmarked packet must open and be delivered"
                );
                black_box(delivered)
            })
        });
        if suite != CipherSuite::LispersCs6 {
            raw_ring(&mut g, suite, &key, &inner);
        }
    }
    g.finish();
}

/// ring's AEAD alone on the same key, the same 1400 bytes and the same 8-byte header as AAD:
/// seal in place, and open a copy of one of 4096 sealed packets (the copy is made in the
/// lisp-crypto open benchmark too), so the two differ only by what lisp-crypto adds.
fn raw_ring(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    suite: CipherSuite,
    key: &[u8; 32],
    inner: &[u8],
) {
    use ring::aead::{AES_128_GCM, Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
    let (alg, key, aad_len) = match suite {
        CipherSuite::Aes128Gcm => (&AES_128_GCM, &key[..16], 8 + 12),
        _ => (&CHACHA20_POLY1305, &key[..], 8 + 8),
    };
    let k = LessSafeKey::new(UnboundKey::new(alg, key).expect("key length"));
    let aad_buf = [0u8; 20];
    let aad: &[u8] = &aad_buf[..aad_len];
    let nonce = |n: u64| {
        let mut b = [0u8; 12];
        b[4..].copy_from_slice(&n.to_be_bytes());
        Nonce::assume_unique_for_key(b)
    };
    let mut data = inner.to_vec();
    let mut n = 0u64;
    g.bench_function(format!("ring raw seal {suite:?}"), |bn| {
        bn.iter(|| {
            n += 1;
            let tag = k
                .seal_in_place_separate_tag(nonce(n), Aad::from(aad), black_box(&mut data))
                .expect("seal");
            black_box(tag)
        })
    });
    // As many distinct sealed packets as the lisp-crypto open benchmark cycles through, so
    // that both read the same amount of memory.
    let sealed: Vec<Vec<u8>> = (0..4096u64)
        .map(|n| {
            let mut p = inner.to_vec();
            let tag = k
                .seal_in_place_separate_tag(nonce(n), Aad::from(aad), &mut p)
                .expect("seal");
            p.extend_from_slice(tag.as_ref());
            p
        })
        .collect();
    let mut buf = Vec::with_capacity(1500);
    let mut i = 0usize;
    g.bench_function(format!("ring raw open {suite:?}"), |bn| {
        bn.iter(|| {
            let j = i % sealed.len();
            i += 1;
            buf.clear();
            buf.extend_from_slice(&sealed[j]);
            let ok = k
                .open_in_place(nonce(j as u64), Aad::from(aad), &mut buf)
                .is_ok();
            assert!(ok, "every benchmarked packet must open");
            black_box(ok)
        })
    });
}

fn clear_path(c: &mut Criterion) {
    let inner = packet();
    let now = Duration::from_secs(1);
    let mut cache = MapCache::new();
    let four: Vec<IpAddr> = (1..=4u8).map(|k| IpAddr::from([192, 0, 2, k])).collect();
    cache.insert(sim::cache_entry(
        EidPrefix::new(0, "10.3.0.0/16".parse().expect("prefix")),
        &four,
        Duration::from_secs(3600),
    ));
    let mut itr = xtr(ITR, "10.1.0.0/16", None);
    let mut out = Vec::with_capacity(65536);
    let mut n = 0u32;
    c.bench_function(
        "Xtr::encapsulate clear 1400 B (lookup, flow hash, RLOC choice)",
        |b| {
            b.iter(|| {
                let r = itr.encapsulate(now, 0, black_box(&inner), &cache);
                n += 1;
                if n.is_multiple_of(32) {
                    while itr.poll_transmit(&mut out).is_some() {}
                }
                black_box(r)
            })
        },
    );
}

criterion_group!(benches, crypto, clear_path);
criterion_main!(benches);
