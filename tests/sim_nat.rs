//! NAT traversal through an RTR in the deterministic simulator (issue 14,
//! draft-ermagan-lisp-nat-traversal-19 §5.1.1, §5.3): node 1 is the seed and serves as RTR;
//! nodes 2 and 3 sit behind NATs (endpoint-independent masquerade).

use std::net::IpAddr;
use std::time::Duration;

use etherparse::PacketBuilder;
use lisp_decent::control::Delivery;
use lisp_decent::crypto::lisp_crypto::CipherSuite;
use lisp_decent::sim::{self, Sim};

const MS: Duration = Duration::from_millis(1);

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn ping(from: usize, to: usize, seq: u16) -> Vec<u8> {
    let host = |i: usize| [10, (i >> 8) as u8, (i & 0xff) as u8, 1];
    let mut p = Vec::new();
    PacketBuilder::ipv4(host(from), host(to), 64)
        .icmpv4_echo_request(7, seq)
        .write(&mut p, b"lisp-decent simulated payload")
        .expect("a ping fits");
    p
}

/// Node 1 (RTR) and nodes 2, 3 behind the NATs `publics` (the same address twice: one NAT).
fn nat_mesh(publics: [IpAddr; 2], suite: Option<CipherSuite>) -> Sim {
    let mut s = Sim::new(2 * MS, 11);
    s.nat(sim::rloc(2), publics[0]);
    s.nat(sim::rloc(3), publics[1]);
    for i in 1..=3 {
        let mut c = sim::node_config(i, Delivery::Replicate);
        c.encryption = suite;
        c.nat.rtr = i == 1;
        s.add(c);
    }
    s.run_to(secs(10));
    s
}

/// Sends a ping from node `from` to node `to` (1-based) until it arrives, at most `tries`
/// times `gap` apart; returns whether it did.
fn reaches(s: &mut Sim, from: usize, to: usize, seq: &mut u16, tries: u32) -> bool {
    for _ in 0..tries {
        *seq += 1;
        let p = ping(from, to, *seq);
        s.send_packet(from - 1, 0, &p);
        let t = s.now + 50 * MS;
        s.run_to(t);
        if s.tun[to - 1].iter().any(|(_, q)| *q == p) {
            return true;
        }
    }
    false
}

#[test]
fn nodes_behind_nats_reach_everyone_through_the_rtr_encrypted() {
    let a: IpAddr = "203.0.113.1".parse().unwrap();
    let b: IpAddr = "203.0.113.2".parse().unwrap();
    for (case, publics) in [("two NATs", [a, b]), ("one NAT", [a, a])] {
        for suite in [Some(CipherSuite::Aes128Gcm), None] {
            let mut s = nat_mesh(publics, suite);
            for i in [2, 3] {
                let e = s.engine(i - 1).unwrap();
                assert_eq!(
                    e.config().via_rtr,
                    Some(sim::rloc(1)),
                    "{case} {suite:?}: node {i} registers through the RTR"
                );
            }
            assert_eq!(s.engine(0).unwrap().config().via_rtr, None);
            let mut seq = 0;
            for (from, to) in [(1, 2), (2, 1), (1, 3), (3, 1), (2, 3), (3, 2)] {
                assert!(
                    reaches(&mut s, from, to, &mut seq, 10),
                    "{case} {suite:?}: {from} -> {to}"
                );
            }
            let rtr = s.xtr(0).unwrap();
            assert!(rtr.stats().relayed > 0, "{case} {suite:?}");
            assert_eq!(rtr.relay().bound(), 2, "{case} {suite:?}");
            if suite.is_some() {
                for i in 1..3 {
                    let st = s.xtr(i).unwrap().stats();
                    assert!(
                        st.encrypted > 0 && st.decrypted > 0,
                        "{case}: node {}",
                        i + 1
                    );
                }
            }
        }
    }
}

/// The NAT forgets its bindings (restarted, or its entries timed out) while traffic flows:
/// the node behind it notices that nothing comes back (`dataplane::liveness`), probes its
/// RTR from the new binding with its registers, and traffic crosses both ways again within
/// a second, encrypted, by itself.
#[test]
fn a_nat_that_forgets_its_bindings_is_traversed_again_by_itself() {
    let a: IpAddr = "203.0.113.1".parse().unwrap();
    let b: IpAddr = "203.0.113.2".parse().unwrap();
    let mut s = nat_mesh([a, b], Some(CipherSuite::Aes128Gcm));
    let mut seq = 0;
    for (from, to) in [(1, 2), (2, 1), (2, 3), (3, 2)] {
        assert!(reaches(&mut s, from, to, &mut seq, 10), "{from} -> {to}");
    }
    let rebinds = s.engine(0).unwrap().counters().rtr_bindings;
    s.nat_forget();
    let cut = s.now;
    // Pings both ways between nodes 2 and 3 (both behind NATs) every 50 ms until five in a
    // row cross both ways.
    let mut run = 0;
    let mut back = None;
    while run < 5 {
        assert!(s.now - cut < secs(5), "traffic never came back");
        let got = (s.tun[1].len(), s.tun[2].len());
        seq += 1;
        s.send_packet(1, 0, &ping(2, 3, seq));
        s.send_packet(2, 0, &ping(3, 2, seq));
        let t = s.now + 50 * MS;
        s.run_to(t);
        if s.tun[1].len() > got.0 && s.tun[2].len() > got.1 {
            back.get_or_insert(s.now - cut);
            run += 1;
        } else {
            back = None;
            run = 0;
        }
    }
    let took = back.unwrap();
    eprintln!("both ways again {took:?} after the NAT forgot its bindings");
    assert!(took <= secs(1), "{took:?}");
    assert!(s.engine(0).unwrap().counters().rtr_bindings >= rebinds + 2);
}
