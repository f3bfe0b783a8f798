//! Data-plane per-packet work on one core: lisp-crypto encapsulate + seal and open +
//! decapsulate of a 1400-byte inner packet in each suite (ring), ring's raw AEAD on the same
//! bytes as the baseline they are measured against (`scripts/bench-crypto-ratio.sh` prints
//! the ratio), and the clear encapsulation with flow hash and RLOC choice.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use lisp_decent::crypto::lisp_crypto::{CipherSuite, KeyPair, RecvKey, SendKey};
use lisp_decent::dataplane::{Decapsulated, FlowKey, decapsulate_inner, encapsulate, select};
use lisp_decent::mapping::{CachedRloc, EidPrefix, PrefixTable, RlocState};
use lisp_decent::wire::{Address, DataHeader, RlocRecord};

fn packet() -> Vec<u8> {
    let mut p = hex::decode("45000578000040004011000a0a0100010a030001").expect("hex");
    p.extend_from_slice(&[0x13, 0x88, 0x13, 0x89, 0x05, 0x64, 0, 0]);
    p.resize(1400, 0xab);
    p
}

fn crypto(c: &mut Criterion) {
    let inner = packet();
    let mut g = c.benchmark_group("lisp-crypto 1400 B");
    g.throughput(Throughput::Bytes(inner.len() as u64));
    for suite in [
        CipherSuite::Aes128Gcm,
        CipherSuite::ChaCha20Poly1305,
        CipherSuite::LispersCs6,
    ] {
        let (a, b) = (KeyPair::generate(), KeyPair::generate());
        let key = a.key_material(suite, &b.public(), &[1; 8]).expect("x25519");
        let mut tx = SendKey::new(suite, 1, &key);
        let hdr = DataHeader::with_instance(0, 1, 0);
        let mut out = Vec::with_capacity(1500);
        g.bench_function(format!("encap+seal {suite:?}"), |bn| {
            bn.iter(|| tx.seal(hdr, black_box(&inner), &mut out).expect("seal"))
        });
        // Open genuine packets in order, copying the sealed bytes in each time (open works
        // in place).
        let mut rx = RecvKey::new(suite, 1, &key);
        let sealed: Vec<Vec<u8>> = (0..4096)
            .map(|_| {
                let mut o = Vec::new();
                tx.seal(hdr, &inner, &mut o).expect("seal");
                o
            })
            .collect();
        let mut ours = PrefixTable::new();
        ours.insert(
            EidPrefix::new(0, "10.3.0.0/16".parse().expect("prefix")),
            (),
        );
        let mut buf = Vec::with_capacity(1500);
        let mut i = 0usize;
        g.bench_function(format!("open+decap {suite:?}"), |bn| {
            bn.iter(|| {
                let k = i % sealed.len();
                i += 1;
                // Each counter opens once per window: start a new window on every pass.
                if k == 0 {
                    rx = RecvKey::new(suite, 1, &key);
                }
                buf.clear();
                buf.extend_from_slice(&sealed[k]);
                let delivered = match rx.open(&mut buf) {
                    Ok(p) => matches!(
                        decapsulate_inner(&hdr, p, &ours),
                        Decapsulated::Deliver { .. }
                    ),
                    Err(_) => false,
                };
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
    let rlocs: Vec<CachedRloc> = (1..=4u8)
        .map(|k| CachedRloc {
            record: RlocRecord {
                priority: 1,
                weight: 25,
                m_priority: 255,
                m_weight: 0,
                flags: 1,
                locator: Address::Ipv4([192, 0, 2, k].into()),
            },
            state: RlocState::Up,
            rtt: None,
        })
        .collect();
    let mut out = Vec::with_capacity(1500);
    c.bench_function("flow hash + RLOC choice + encapsulate 1400 B", |b| {
        b.iter(|| {
            let f = FlowKey::of(black_box(&inner)).expect("ipv4");
            let i = select::choose(&rlocs, f.hash64());
            encapsulate(&mut out, 0, 7, 0, &inner);
            black_box((i, &out));
        })
    });
}

criterion_group!(benches, crypto, clear_path);
criterion_main!(benches);
