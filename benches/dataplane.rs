//! Data-plane per-packet work on one core, through the real sans-IO path:
//! `Xtr::encapsulate_in_place` (lookup, flow hash, RLOC choice, encapsulation and seal where
//! the packet was read) and `Xtr::decapsulate` (key, ICV, replay window, decryption, our-EID
//! check) of a 1400-byte inner packet in each suite (ring), ring's raw AEAD on the same bytes
//! as the baseline they are measured against (`scripts/bench-crypto-ratio.sh` prints the
//! ratio), and the clear encapsulation.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use lisp_decent::crypto::lisp_crypto::{CipherSuite, KeyPair};
use lisp_decent::dataplane::xtr::{PACKET_AT, TAILROOM};
use lisp_decent::dataplane::{Datagrams, Decapsulated, Encapsulated, KeyEvent, Xtr, XtrConfig};
use lisp_decent::mapping::{EidPrefix, MapCache};
use lisp_decent::sim;

fn packet() -> Vec<u8> {
    let mut p = hex::decode("45000578000040004011000a0a0100010a030001").expect("hex");
    p.extend_from_slice(&[0x13, 0x88, 0x13, 0x89, 0x05, 0x64, 0, 0]);
    p.resize(1400, 0xab);
    p
}

const ITR: [u8; 4] = [192, 0, 2, 1];
/// Packets of one TUN read in the encapsulation benchmark.
const READ: usize = 32;
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

/// One suite through the real `Xtr`: an ITR and an ETR sharing a key, each call one packet.
struct Ours {
    now: Duration,
    inner: Vec<u8>,
    cache: MapCache,
    suite: CipherSuite,
    key: [u8; 32],
    itr: Xtr,
    /// A TUN read's buffers: each packet with room for header and IV before it and the tag
    /// after it.
    slots: Vec<Vec<u8>>,
    out: Datagrams,
    n: u32,
    /// Genuine datagrams, opened in order (a fresh ETR per pass, as each counter opens once
    /// per replay window), each copied in first (decapsulation works in place).
    sealed: Vec<Vec<u8>>,
    rx: Xtr,
    buf: Vec<u8>,
    i: usize,
}

impl Ours {
    fn new(suite: CipherSuite) -> Ours {
        let now = Duration::from_secs(1);
        let inner = packet();
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
                source: None,
            },
        );
        let sealed: Vec<Vec<u8>> = (0..4096)
            .map(|_| {
                itr.encapsulate(now, 0, &inner, &cache);
                let mut o = Vec::new();
                itr.poll_transmit(&mut o).expect("one datagram");
                o
            })
            .collect();
        let rx = etr(now, suite, key);
        Ours {
            now,
            inner,
            cache,
            suite,
            key,
            itr,
            slots: vec![vec![0u8; PACKET_AT + 1400 + TAILROOM]; READ],
            out: Datagrams::default(),
            n: 0,
            sealed,
            rx,
            buf: Vec::with_capacity(1500),
            i: 0,
        }
    }

    /// `Xtr::encapsulate_in_place` of one packet of a TUN read into the GSO batch, sealed
    /// where it lies, the batch drained every [`READ`] packets as the worker does after each
    /// read. Sealing turns the packet into ciphertext, so its first 28 bytes (the IPv4 and
    /// UDP headers the look-up reads) are put back before its buffer is used again, as the
    /// next TUN read writes a fresh packet there; ring's raw figure pays no such copy.
    fn encap(&mut self) {
        let k = self.n as usize % READ;
        let len = self.inner.len();
        let buf = &mut self.slots[k];
        buf[PACKET_AT..PACKET_AT + 28].copy_from_slice(&self.inner[..28]);
        let r = self.itr.encapsulate_in_place(
            self.now,
            0,
            k,
            black_box(buf),
            PACKET_AT..PACKET_AT + len,
            &self.cache,
        );
        assert_eq!(r, Encapsulated::Staged);
        self.n += 1;
        if self.n.is_multiple_of(READ as u32) {
            while self.itr.poll_transmit_parts(&mut self.out).is_some() {}
        }
    }

    /// `Xtr::decapsulate` of the next sealed datagram.
    fn decap(&mut self) {
        let k = self.i % self.sealed.len();
        self.i += 1;
        if k == 0 {
            self.rx = etr(self.now, self.suite, self.key);
        }
        self.buf.clear();
        self.buf.extend_from_slice(&self.sealed[k]);
        let from = SocketAddr::new(IpAddr::from(ITR), 61000);
        let delivered = matches!(
            self.rx.decapsulate(self.now, from, &mut self.buf),
            Decapsulated::Deliver { .. }
        );
        assert!(
            delivered,
            "every benchmarked packet must open and be delivered"
        );
        black_box(delivered);
    }
}

fn etr(now: Duration, suite: CipherSuite, key: [u8; 32]) -> Xtr {
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
}

/// ring's AEAD alone on the same key, the same 1400 bytes and the same header as AAD: seal
/// in place, and open a copy of one of 4096 sealed packets (the copy is made in our open
/// too), so the two differ only by what lisp-crypto adds.
struct Raw {
    key: ring::aead::LessSafeKey,
    aad: Vec<u8>,
    /// As many packets as our encapsulation cycles through (one TUN read), sealed in turn,
    /// so that both touch the same amount of memory.
    data: Vec<Vec<u8>>,
    n: u64,
    sealed: Vec<Vec<u8>>,
    buf: Vec<u8>,
    i: usize,
}

fn raw_nonce(n: u64) -> ring::aead::Nonce {
    let mut b = [0u8; 12];
    b[4..].copy_from_slice(&n.to_be_bytes());
    ring::aead::Nonce::assume_unique_for_key(b)
}

impl Raw {
    fn new(suite: CipherSuite, key: &[u8; 32], inner: &[u8]) -> Raw {
        use ring::aead::{AES_128_GCM, Aad, CHACHA20_POLY1305, LessSafeKey, UnboundKey};
        let (alg, key, aad_len) = match suite {
            CipherSuite::Aes128Gcm => (&AES_128_GCM, &key[..16], 8 + 12),
            _ => (&CHACHA20_POLY1305, &key[..], 8 + 8),
        };
        let k = LessSafeKey::new(UnboundKey::new(alg, key).expect("key length"));
        let aad = vec![0u8; aad_len];
        // As many distinct sealed packets as our open cycles through, so that both read the
        // same amount of memory.
        let sealed: Vec<Vec<u8>> = (0..4096u64)
            .map(|n| {
                let mut p = inner.to_vec();
                let tag = k
                    .seal_in_place_separate_tag(raw_nonce(n), Aad::from(&aad[..]), &mut p)
                    .expect("seal");
                p.extend_from_slice(tag.as_ref());
                p
            })
            .collect();
        Raw {
            key: k,
            aad,
            data: vec![inner.to_vec(); READ],
            n: 0,
            sealed,
            buf: Vec::with_capacity(1500),
            i: 0,
        }
    }

    fn seal(&mut self) {
        self.n += 1;
        let k = self.n as usize % READ;
        let tag = self
            .key
            .seal_in_place_separate_tag(
                raw_nonce(self.n),
                ring::aead::Aad::from(&self.aad[..]),
                black_box(&mut self.data[k]),
            )
            .expect("seal");
        let _ = black_box(tag);
    }

    fn open(&mut self) {
        let j = self.i % self.sealed.len();
        self.i += 1;
        self.buf.clear();
        self.buf.extend_from_slice(&self.sealed[j]);
        let ok = self
            .key
            .open_in_place(
                raw_nonce(j as u64),
                ring::aead::Aad::from(&self.aad[..]),
                &mut self.buf,
            )
            .is_ok();
        assert!(ok, "every benchmarked packet must open");
        black_box(ok);
    }
}

fn crypto(c: &mut Criterion) {
    let mut g = c.benchmark_group("lisp-crypto 1400 B");
    g.throughput(Throughput::Bytes(packet().len() as u64));
    for suite in [
        CipherSuite::Aes128Gcm,
        CipherSuite::ChaCha20Poly1305,
        CipherSuite::LispersCs6,
    ] {
        let mut ours = Ours::new(suite);
        g.bench_function(format!("encap+seal {suite:?}"), |bn| {
            bn.iter(|| ours.encap())
        });
        g.bench_function(format!("open+decap {suite:?}"), |bn| {
            bn.iter(|| ours.decap())
        });
        if suite != CipherSuite::LispersCs6 {
            let mut raw = Raw::new(suite, &ours.key, &ours.inner);
            g.bench_function(format!("ring raw seal {suite:?}"), |bn| {
                bn.iter(|| raw.seal())
            });
            g.bench_function(format!("ring raw open {suite:?}"), |bn| {
                bn.iter(|| raw.open())
            });
        }
    }
    g.finish();
}

/// Ours against ring's raw AEAD measured in turns (`--interleaved ROUNDS`): each round times
/// 4,096 packets of ours, then 4,096 of ring's, a few milliseconds each, so the machine's
/// drift between minutes falls on both sides of every ratio alike. Prints, per suite and
/// step, the ratio's min / median / max over the rounds.
fn interleaved(rounds: usize) {
    const CHUNK: usize = 4096;
    let time = |f: &mut dyn FnMut()| {
        let t = std::time::Instant::now();
        for _ in 0..CHUNK {
            f();
        }
        t.elapsed().as_secs_f64()
    };
    println!(
        "suite              step         ratio min / median / max ({rounds} rounds of {CHUNK} packets each way)"
    );
    for suite in [CipherSuite::Aes128Gcm, CipherSuite::ChaCha20Poly1305] {
        let mut ours = Ours::new(suite);
        let mut raw = Raw::new(suite, &ours.key, &ours.inner);
        let mut seal = Vec::with_capacity(rounds);
        let mut open = Vec::with_capacity(rounds);
        // Per packet, each side: its fastest round (the least disturbed by the machine).
        let mut best = [f64::MAX; 4];
        for _ in 0..rounds {
            let t = [
                time(&mut || ours.encap()),
                time(&mut || raw.seal()),
                time(&mut || ours.decap()),
                time(&mut || raw.open()),
            ];
            seal.push(t[1] / t[0]);
            open.push(t[3] / t[2]);
            for (b, t) in best.iter_mut().zip(t) {
                *b = b.min(t / CHUNK as f64 * 1e9);
            }
        }
        for (step, mut v, (ours_ns, ring_ns)) in [
            ("encap+seal", seal, (best[0], best[1])),
            ("open+decap", open, (best[2], best[3])),
        ] {
            v.sort_by(f64::total_cmp);
            println!(
                "{:<18} {step:<11}  {:.0}% / {:.0}% / {:.0}%   fastest round: {ours_ns:.0} ns vs ring {ring_ns:.0} ns a packet ({:.0}%)",
                format!("{suite:?}"),
                v[0] * 100.0,
                v[v.len() / 2] * 100.0,
                v[v.len() - 1] * 100.0,
                ring_ns / ours_ns * 100.0
            );
        }
    }
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

/// 64 decapsulated TCP segments of 1,400 bytes, one flow, as one data batch brings them.
fn segments() -> Vec<Vec<u8>> {
    (0..64u32)
        .map(|i| {
            let b = etherparse::PacketBuilder::ipv4([10, 1, 0, 1], [10, 3, 0, 1], 64)
                .tcp(40000, 5201, 1000 + i * 1360, 512)
                .ack(7);
            let mut p = Vec::new();
            b.write(&mut p, &[i as u8; 1360]).expect("segment");
            p
        })
        .collect()
}

/// Writing what a batch decapsulated into the TUN device, in user space (the system calls
/// are not measured): our coalescer plans super-packets over the batch's own buffers and
/// patches the heads (`dataplane::gro`); tun-rs's `GROTable`, which the ETR used before,
/// needs each packet copied behind a headroom into a buffer of its own with room for a
/// whole super-packet, and copies again while coalescing.
fn tun_gro(c: &mut Criterion) {
    use lisp_decent::dataplane::gro::{Coalescer, Span};
    let mut g = c.benchmark_group("TUN write of 64 x 1400 B TCP segments");
    g.throughput(Throughput::Elements(64));
    let mut batch = segments();
    let fresh = segments();
    let mut plan = Coalescer::new(true);
    g.bench_function("ours: plan and patch in place", |b| {
        b.iter(|| {
            plan.clear();
            for (i, p) in batch.iter().enumerate() {
                let span = Span {
                    buf: i,
                    start: 0,
                    end: p.len(),
                };
                plan.push(span, p);
            }
            for w in plan.writes() {
                let h = w.head();
                w.patch_head(&mut batch[h.buf][h.start..h.end]);
            }
            let writes = black_box(plan.writes().len());
            assert_eq!(writes, 2, "64 segments make two super-packets");
            // The next round starts from the packets as they came.
            for w in plan.writes() {
                let h = w.head().buf;
                batch[h][..40].copy_from_slice(&fresh[h][..40]);
            }
            writes
        })
    });
    let mut gro = tun_rs::GROTable::default();
    let mut bufs: Vec<Vec<u8>> = Vec::new();
    g.bench_function("tun-rs: copy behind headroom, GROTable", |b| {
        b.iter(|| {
            // tun-rs coalesces only into a buffer with room for the whole super-packet.
            bufs.resize_with(fresh.len(), || Vec::with_capacity(65_535 + 20));
            for (b, p) in bufs.iter_mut().zip(&fresh) {
                b.clear();
                b.resize(tun_rs::VIRTIO_NET_HDR_LEN, 0);
                b.extend_from_slice(p);
            }
            gro.apply_gro(&mut bufs, tun_rs::VIRTIO_NET_HDR_LEN, false)
                .expect("gro");
            assert!(bufs[0].len() > 60_000, "tun-rs coalesced the segments");
            black_box(bufs[0].len())
        })
    });
    g.finish();
}

criterion_group!(benches, crypto, clear_path, tun_gro);

fn main() {
    // `cargo bench --bench dataplane -- --interleaved 200`: the turn-taking ratio instead of
    // criterion (scripts/bench-crypto-ratio.sh).
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--interleaved") {
        let rounds = args.get(i + 1).and_then(|r| r.parse().ok()).unwrap_or(200);
        interleaved(rounds);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
