//! Wire-layer throughput on one core (the README quotes these figures):
//! - parse and authenticate a one-record Map-Register with HMAC-SHA-256 (goal >= 1,000,000/s);
//! - parse a Map-Request and emit its Map-Reply (goal >= 2,000,000/s);
//! - parse and emit the LISP data header (goal <= 5 ns each).

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use lisp_decent::crypto::auth::{AuthKey, KeyRing};
use lisp_decent::wire::*;

/// lispers.net's Map-Register (PROTOCOL.md test vector 1): one record, AFI-List locator,
/// xTR-ID trailer, key-id 1, HMAC-SHA-256 over 113 bytes.
const REGISTER: &str = concat!(
    "32000801 01dfdfdf ddccbbaa 01020020 b9660d46 4e076235 3a00af9b 066c8946",
    "e1f00488 e5bcc608 705a9426 4e00788d 00000003 01101000 00000001 0a020000",
    "0000ff00 00054003 00000100 000b0001 c0000202 0011766d 00000000 00000000",
    "00726edc a4224c01 3e000000 00000000 00"
);

/// lispers.net test capture: plain Map-Request for 10.1.1.5/32 from 192.0.2.100.
const REQUEST: &str = "100000 01ccdb88e815d78e28 0000 0001c0000264 0020 00010a010105";

fn bytes(h: &str) -> Vec<u8> {
    hex::decode(h.replace(' ', "")).expect("benchmark vector is hex")
}

fn map_register(c: &mut Criterion) {
    let msg = bytes(REGISTER);
    let ring = KeyRing::new(vec![AuthKey::new(Some(1), "interop-key")]);
    assert!(ring.verify(&msg).is_ok());
    let mut g = c.benchmark_group("map-register");
    g.throughput(Throughput::Elements(1));
    g.bench_function("parse+hmac-sha256-verify", |b| {
        b.iter(|| {
            let m = ControlMessage::parse(black_box(&msg)).expect("parses");
            let k = ring.verify(black_box(&msg)).expect("authenticates");
            black_box((m, k))
        })
    });
    g.finish();
}

fn request_reply(c: &mut Criterion) {
    let req = bytes(REQUEST);
    let record = EidRecord {
        authoritative: false,
        ..EidRecord::new(
            Address::Ipv4("10.1.1.0".parse().expect("ip")),
            24,
            1440,
            vec![RlocRecord {
                priority: 1,
                weight: 100,
                m_priority: 255,
                m_weight: 0,
                flags: RlocRecord::REACHABLE,
                locator: Address::Ipv4("192.0.2.1".parse().expect("ip")),
            }],
        )
    };
    let mut out = Vec::with_capacity(256);
    let mut g = c.benchmark_group("map-request");
    g.throughput(Throughput::Elements(1));
    g.bench_function("parse+emit-map-reply", |b| {
        b.iter(|| {
            let ControlMessage::MapRequest(q) =
                ControlMessage::parse(black_box(&req)).expect("parses")
            else {
                unreachable!()
            };
            let reply = MapReply::new(q.nonce, vec![record.clone()]);
            out.clear();
            reply.emit(&mut out).expect("emits");
            black_box(&out);
        })
    });
    g.finish();
}

fn data_header(c: &mut Criterion) {
    let pkt = [0x88u8, 0x12, 0x34, 0x56, 0x00, 0x00, 0x07, 0x00];
    let h = DataHeader::parse(&pkt).expect("parses");
    let mut buf = [0u8; 8];
    let mut g = c.benchmark_group("data-header");
    g.bench_function("parse", |b| {
        b.iter(|| black_box(DataHeader::parse(black_box(&pkt))))
    });
    g.bench_function("emit", |b| {
        b.iter(|| black_box(black_box(&h).emit(black_box(&mut buf))))
    });
    g.finish();
}

criterion_group!(benches, map_register, request_reply, data_header);
criterion_main!(benches);
