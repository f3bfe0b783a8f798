//! Any sequence of packets as what an ETR decapsulated in one batch, planned for the TUN
//! device by `dataplane::gro`. Packets that parse as IPv4 / IPv6 TCP get their lengths and
//! checksums made right first, so the fuzzer explores the coalescing rules and not the
//! checksum gate. Checked: every packet is written exactly once, and every super-packet,
//! once the kernel completes its checksum, is one valid TCP segment whose payload is the
//! payloads of the packets it carries, in order.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lisp_decent::dataplane::gro::{Coalescer, Span};

fn sum(data: &[u8], mut acc: u64) -> u64 {
    for (i, b) in data.iter().enumerate() {
        acc += u64::from(*b) << if i % 2 == 0 { 8 } else { 0 };
    }
    acc
}

fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// Where the TCP header starts, for a packet that claims to be TCP over IPv4 / IPv6.
fn tcp_at(p: &[u8]) -> Option<usize> {
    match p.first()? >> 4 {
        4 => {
            let ihl = usize::from(p[0] & 0x0f) * 4;
            (ihl >= 20 && p.len() >= ihl + 20 && p[9] == 6).then_some(ihl)
        }
        6 => (p.len() >= 60 && p[6] == 6).then_some(40),
        _ => None,
    }
}

/// The pseudo-header sum of a TCP packet whose TCP header starts at `t`.
fn pseudo(p: &[u8], t: usize) -> u64 {
    let len = (p.len() - t) as u64;
    if p[0] >> 4 == 4 {
        sum(&p[12..20], 6 + len)
    } else {
        sum(&p[8..40], 6 + len)
    }
}

/// Lengths and checksums made right.
fn fix(p: &mut [u8]) {
    let Some(t) = tcp_at(p) else { return };
    let len = p.len() as u16;
    if p[0] >> 4 == 4 {
        p[2..4].copy_from_slice(&len.to_be_bytes());
        p[10..12].fill(0);
        let c = !fold(sum(&p[..t], 0));
        p[10..12].copy_from_slice(&c.to_be_bytes());
    } else {
        p[4..6].copy_from_slice(&(len - 40).to_be_bytes());
    }
    p[t + 16..t + 18].fill(0);
    let c = !fold(sum(&p[t..], pseudo(p, t)));
    p[t + 16..t + 18].copy_from_slice(&c.to_be_bytes());
}

fuzz_target!(|data: &[u8]| {
    // Packets: a length byte (times 8) then that many bytes; templates repeat the last
    // packet with its sequence number moved on by its payload, so runs of segments appear.
    let mut bufs: Vec<Vec<u8>> = Vec::new();
    let mut rest = data;
    while let Some((&n, tail)) = rest.split_first() {
        if n == 0 && let Some(last) = bufs.last() {
            let mut p = last.clone();
            if let Some(t) = tcp_at(&p) {
                let hl = usize::from(p[t + 12] >> 4) * 4;
                let payload = p.len().saturating_sub(t + hl) as u32;
                let seq = u32::from_be_bytes([p[t + 4], p[t + 5], p[t + 6], p[t + 7]]);
                p[t + 4..t + 8].copy_from_slice(&seq.wrapping_add(payload).to_be_bytes());
            }
            bufs.push(p);
            rest = tail;
            continue;
        }
        let len = (usize::from(n) * 8).min(tail.len());
        let mut p = tail[..len].to_vec();
        fix(&mut p);
        bufs.push(p);
        rest = &tail[len..];
    }
    for p in bufs.iter_mut() {
        fix(p);
    }
    let mut c = Coalescer::new(true);
    for (i, p) in bufs.iter().enumerate() {
        c.push(Span { buf: i, start: 0, end: p.len() }, p);
    }
    let mut seen = vec![0u32; bufs.len()];
    for w in c.writes() {
        let h = w.head();
        seen[h.buf] += 1;
        let mut out = bufs[h.buf][h.start..h.end].to_vec();
        w.patch_head(&mut out);
        let mut payload = Vec::new();
        for s in w.payloads() {
            seen[s.buf] += 1;
            assert_eq!(s.end, bufs[s.buf].len());
            out.extend_from_slice(&bufs[s.buf][s.start..s.end]);
            payload.extend_from_slice(&bufs[s.buf][s.start..s.end]);
        }
        let hdr = w.virtio_header();
        if w.packets() == 1 {
            assert_eq!(hdr, [0; 10]);
            assert_eq!(out, bufs[h.buf]);
            continue;
        }
        assert!(out.len() <= 65_535);
        let t = tcp_at(&out).expect("a super-packet is TCP");
        assert_eq!(usize::from(u16::from_ne_bytes([hdr[6], hdr[7]])), t);
        // The kernel completes the checksum from the pseudo-header sum in the field.
        let c = !fold(sum(&out[t..], 0));
        out[t + 16..t + 18].copy_from_slice(&c.to_be_bytes());
        assert_eq!(fold(sum(&out[t..], pseudo(&out, t))), 0xffff);
        if out[0] >> 4 == 4 {
            assert_eq!(usize::from(u16::from_be_bytes([out[2], out[3]])), out.len());
            assert_eq!(fold(sum(&out[..t], 0)), 0xffff);
        } else {
            assert_eq!(usize::from(u16::from_be_bytes([out[4], out[5]])), out.len() - 40);
        }
        assert!(out.ends_with(&payload));
    }
    assert!(seen.iter().all(|&n| n == 1));
});
