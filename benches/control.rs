//! Control-plane throughput on one core (figures in the README):
//! - Map-Register processing: authenticate, merge, store (goal >= 300,000/s);
//! - Map-Request to Map-Reply from a database of 1,000,000 EID-prefixes (goal >= 500,000/s);
//! - longest-prefix match among 1,000,000 prefixes (goal <= 150 ns);
//! - memory per registered prefix, counted by a wrapping allocator (printed).

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use lisp_decent::control::{AllowedPrefix, Delivery, Engine};
use lisp_decent::mapping::{EidPrefix, PrefixTable};
use lisp_decent::sim;
use lisp_decent::wire::*;

/// Counts live heap bytes, for the memory figure.
struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as isize - l.size() as isize, Ordering::Relaxed);
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const SRC: [u8; 4] = [198, 51, 100, 1];

/// The i-th /24 of 1.0.0.0 onward.
fn prefix(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(0x0100_0000 + (i << 8))
}

/// An engine that accepts any IPv4 prefix and does not rate-limit.
fn engine() -> Engine {
    let mut cfg = sim::node_config(1, Delivery::Replicate);
    cfg.site.allowed = vec![AllowedPrefix {
        eid: EidPrefix::new(0, "0.0.0.0/0".parse().expect("prefix")),
        accept_more_specifics: true,
    }];
    cfg.timers.requests_per_second = u32::MAX;
    let mut e = Engine::new(cfg);
    e.handle_timeout(Duration::ZERO);
    while e.poll_transmit().is_some() {}
    e
}

/// Signed Map-Registers, `per` records each, for prefixes `first..first + count`.
fn registers(first: u32, count: u32, per: u32) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut i = first;
    while i < first + count {
        let n = per.min(first + count - i);
        let records = (i..i + n)
            .map(|k| {
                let rloc = Ipv4Addr::from(0xc000_0200 + (k & 0xff));
                sim::one_rloc_record(Address::Ipv4(prefix(k)), 24, 3, rloc.into())
            })
            .collect();
        let mut xtr_id = [0u8; 16];
        xtr_id[12..].copy_from_slice(&i.to_be_bytes());
        let b = sim::signed_register(records, xtr_id, [1; 8], sim::SIM_KEY.as_bytes());
        out.push(b);
        i += n;
    }
    out
}

fn map_register(c: &mut Criterion) {
    let mut e = engine();
    let regs = registers(0, 10_000, 1);
    let src = SocketAddr::new(IpAddr::from(SRC), 4342);
    let dst = SocketAddr::new(sim::rloc(1), 4342);
    let mut i = 0;
    let mut g = c.benchmark_group("map-server");
    g.throughput(Throughput::Elements(1));
    g.bench_function("map-register authenticate+merge+store", |b| {
        b.iter(|| {
            e.handle_datagram(
                Duration::from_secs(1),
                src,
                dst,
                black_box(&regs[i % regs.len()]),
            );
            i += 1;
            while e.poll_transmit().is_some() {}
        })
    });
    g.finish();
}

fn request_reply_million(c: &mut Criterion) {
    const N: u32 = 1_000_000;
    let before = LIVE.load(Ordering::Relaxed);
    let mut e = engine();
    let src = SocketAddr::new(IpAddr::from(SRC), 4342);
    let dst = SocketAddr::new(sim::rloc(1), 4342);
    for r in registers(0, N, 40) {
        e.handle_datagram(Duration::from_secs(1), src, dst, &r);
        while e.poll_transmit().is_some() {}
    }
    let used = LIVE.load(Ordering::Relaxed) - before;
    assert!(e.site_db().len() >= N as usize);
    eprintln!(
        "memory: {} registered prefixes (one RLOC each) hold {:.1} MiB: {} bytes per prefix",
        e.site_db().len(),
        used as f64 / (1 << 20) as f64,
        used / e.site_db().len() as isize
    );
    let requests: Vec<Vec<u8>> = (0..4096u32)
        .map(|k| {
            let eid = Ipv4Addr::from(u32::from(prefix((k * 2654435761) % N)) + 7);
            let q = MapRequest::new(
                [2; 8],
                Address::None,
                Address::Ipv4(SRC.into()),
                Address::Ipv4(eid),
                32,
            );
            ControlMessage::MapRequest(q).to_bytes().expect("emits")
        })
        .collect();
    let mut i = 0;
    let mut g = c.benchmark_group("map-resolver");
    g.throughput(Throughput::Elements(1));
    g.bench_function("map-request to map-reply, 1M prefixes", |b| {
        b.iter(|| {
            e.handle_datagram(
                Duration::from_secs(2),
                src,
                dst,
                black_box(&requests[i % requests.len()]),
            );
            i += 1;
            black_box(e.poll_transmit());
        })
    });
    g.finish();
}

fn lpm_million(c: &mut Criterion) {
    let mut t = PrefixTable::new();
    let mut x: u32 = 0x1234_5678;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x
    };
    while t.len() < 1_000_000 {
        let len = 8 + (next() % 25) as u8;
        let net = ipnet::Ipv4Net::new(Ipv4Addr::from(next()), len)
            .expect("len <= 32")
            .trunc();
        t.insert(EidPrefix::new(0, net.into()), t.len() as u32);
    }
    let addrs: Vec<IpAddr> = (0..4096)
        .map(|_| IpAddr::V4(Ipv4Addr::from(next())))
        .collect();
    let mut i = 0;
    c.bench_function("longest-prefix match, 1M prefixes", |b| {
        b.iter(|| {
            i += 1;
            black_box(t.lookup(0, black_box(addrs[i % addrs.len()])))
        })
    });
}

criterion_group!(benches, map_register, request_reply_million, lpm_million);
criterion_main!(benches);
