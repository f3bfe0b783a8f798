//! A two-node mesh in the deterministic simulator (smoltcp's fuzz/iface.rs idea), driven by
//! arbitrary input: inner packets into either node's TUN side, datagrams to either node's
//! data or control port from a member or a stranger, and time steps. Nothing may panic,
//! and a node's data plane only ever delivers packets for its own EIDs.
#![no_main]

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use lisp_decent::control::Delivery;
use lisp_decent::crypto::lisp_crypto::CipherSuite;
use lisp_decent::sim::{self, Sim};
use lisp_decent::wire::ip::IpPacket;

/// An ICMP echo from node `from`'s host .1 to node `to`'s (1-based).
fn ping(from: u8, to: u8, seq: u8) -> Vec<u8> {
    vec![
        0x45, 0, 0, 28, 0, seq, 0x40, 0, 64, 1, 0, 0, 10, 0, from, 1, 10, 0, to, 1, 8, 0, 0, 0,
        0, 7, 0, seq,
    ]
}

fuzz_target!(|data: &[u8]| {
    let mut s = Sim::new(Duration::from_millis(2), 1);
    let suite = match data.first().map(|b| b % 3) {
        Some(0) => None,
        Some(1) => Some(CipherSuite::Aes128Gcm),
        _ => Some(CipherSuite::ChaCha20Poly1305),
    };
    for i in 1..=2 {
        let mut c = sim::node_config(i, Delivery::Replicate);
        c.encryption = suite;
        c.timers.rekey_packets = 8;
        s.add(c);
    }
    s.run_to(Duration::from_millis(500));
    let mut rest = data.get(1..).unwrap_or_default();
    while let [op, a, tail @ ..] = rest {
        let node = usize::from(a & 1);
        let take = usize::from(a >> 1).min(tail.len());
        let (bytes, tail) = tail.split_at(take);
        rest = tail;
        match op % 5 {
            0 => {
                let t = s.now + Duration::from_millis(u64::from(*a) * 20);
                s.run_to(t);
            }
            1 => {
                s.send_packet(node, 0, bytes);
            }
            2 | 3 => {
                let port = if op % 5 == 2 { 4341 } else { 4342 };
                let from: IpAddr = if a & 2 == 0 {
                    sim::rloc(2 - node)
                } else {
                    "198.51.100.9".parse().unwrap()
                };
                s.inject(
                    SocketAddr::new(from, 61000),
                    SocketAddr::new(sim::rloc(node + 1), port),
                    bytes.to_vec(),
                );
            }
            _ => {
                let to = if node == 0 { 2 } else { 1 };
                s.send_packet(node, 0, &ping(node as u8 + 1, to, *a));
            }
        }
    }
    let t = s.now + Duration::from_secs(2);
    s.run_to(t);
    for i in 0..2 {
        for (iid, p) in &s.tun[i] {
            let ip = IpPacket::new_checked(&p[..]).expect("only IP packets are delivered");
            let ours = sim::eid(i + 1).prefix.contains(&ip.destination());
            assert!(*iid == 0 && ours, "node {i} got a packet for {}", ip.destination());
        }
    }
});
