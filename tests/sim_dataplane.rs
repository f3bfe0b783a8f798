//! The data plane in the deterministic simulator: inner packets enter a node's `Xtr` as if
//! read from its TUN device, cross the virtual network as LISP data, and come out of the
//! other node's `Xtr` as if written into its TUN device. What used to be tested only with
//! root in network namespaces (the first packet waits for its key, a rekey loses nothing)
//! runs here in milliseconds, with the same result for the same seed.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use etherparse::PacketBuilder;
use lisp_decent::control::{Delivery, LocalRloc, MappingSystem, PullMode, pull::PullHash};
use lisp_decent::crypto::lisp_crypto::CipherSuite;
use lisp_decent::dataplane::{Drop, Encapsulated};
use lisp_decent::sim::{self, Sim};
use lisp_decent::wire::{DATA_PORT, DataHeader};

const MS: Duration = Duration::from_millis(1);

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// An ICMP echo request from host .1 of node `from`'s EID-prefix to host .1 of node `to`'s
/// (both 1-based, as `sim::eid`), with `seq` in it.
fn ping(from: usize, to: usize, seq: u16) -> Vec<u8> {
    let host = |i: usize| [10, (i >> 8) as u8, (i & 0xff) as u8, 1];
    let mut p = Vec::new();
    PacketBuilder::ipv4(host(from), host(to), 64)
        .icmpv4_echo_request(7, seq)
        .write(&mut p, b"lisp-decent simulated payload")
        .expect("a ping fits");
    p
}

/// `n` nodes in one replicated peer group, each node's configuration changed by `adjust`,
/// run until every node holds every mapping.
fn mesh(n: usize, adjust: impl Fn(usize, &mut lisp_decent::control::EngineConfig)) -> Sim {
    let mut s = Sim::new(2 * MS, 11);
    for i in 1..=n {
        let mut c = sim::node_config(i, Delivery::Replicate);
        adjust(i, &mut c);
        s.add(c);
    }
    assert!(s.run_until(secs(10), Sim::converged), "the mesh converges");
    s
}

/// The packets node `i` (0-based) handed to its TUN devices.
fn delivered(s: &Sim, i: usize) -> Vec<Vec<u8>> {
    s.tun[i].iter().map(|(_, p)| p.clone()).collect()
}

fn drops(s: &Sim, i: usize, d: Drop) -> u64 {
    s.xtr(i).unwrap().stats().dropped(d)
}

#[test]
fn the_first_packet_to_a_new_rloc_waits_for_its_key_and_is_delivered() {
    for suite in [CipherSuite::Aes128Gcm, CipherSuite::ChaCha20Poly1305] {
        let mut s = mesh(2, |_, c| c.encryption = Some(suite));
        let p = ping(1, 2, 1);
        assert_eq!(s.send_packet(0, 0, &p), Some(Encapsulated::Queued));
        let t = s.now;
        assert!(
            s.run_until(t + secs(1), |s| !s.tun[1].is_empty()),
            "{suite:?}"
        );
        assert_eq!(
            delivered(&s, 1),
            vec![p],
            "{suite:?}: the very packet, once"
        );
        let itr = s.xtr(0).unwrap().stats();
        assert_eq!((itr.queued_for_key, itr.encrypted), (1, 1), "{suite:?}");
        assert!(itr.drops.is_empty(), "{suite:?}: {:?}", itr.drops);
        assert_eq!(s.xtr(1).unwrap().stats().decrypted, 1, "{suite:?}");
        // The key is there now: the next packet leaves at once.
        assert_eq!(
            s.send_packet(0, 0, &ping(1, 2, 2)),
            Some(Encapsulated::Staged)
        );
    }
}

#[test]
fn a_rekey_loses_nothing() {
    // A key's budget of 100 packets: 1,000 packets at one every 2 ms go under several keys
    // (key-ids 1, 2, 3, 1, ...) while packets under the old key are still on the way.
    let mut s = mesh(2, |_, c| {
        c.encryption = Some(CipherSuite::Aes128Gcm);
        c.timers.rekey_packets = 100;
    });
    let mut sent = Vec::new();
    for seq in 0..1000u16 {
        let p = ping(1, 2, seq);
        s.send_packet(0, 0, &p);
        sent.push(p);
        let t = s.now + 2 * MS;
        s.run_to(t);
    }
    let t = s.now;
    s.run_to(t + secs(1));
    assert_eq!(delivered(&s, 1), sent, "every packet, in order");
    let keys = s.xtr(1).unwrap().recv_keys().current().next().unwrap().keys;
    assert!(keys >= 5, "the ETR put {keys} keys in use");
    assert!(s.xtr(0).unwrap().stats().drops.is_empty());
    assert!(s.xtr(1).unwrap().stats().drops.is_empty());
}

/// Pings every `gap` both ways between nodes 1 and 2 (0-based 0 and 1) until `streak` in a
/// row have arrived both ways (at most `limit` after the first); returns when the streak's
/// first ping left.
fn ping_until_both_ways(
    s: &mut Sim,
    seq: &mut u16,
    gap: Duration,
    streak: u32,
    limit: Duration,
) -> Duration {
    let begin = s.now;
    let mut run = 0;
    let mut run_began = s.now;
    while run < streak {
        assert!(s.now - begin < limit, "traffic never came back both ways");
        let got = (s.tun[0].len(), s.tun[1].len());
        if run == 0 {
            run_began = s.now;
        }
        s.send_packet(0, 0, &ping(1, 2, *seq));
        s.send_packet(1, 0, &ping(2, 1, *seq));
        *seq += 1;
        let t = s.now + gap;
        s.run_to(t);
        let both = s.tun[0].len() > got.0 && s.tun[1].len() > got.1;
        run = if both { run + 1 } else { 0 };
    }
    run_began
}

/// Multihoming (issue 14): node 2 has a second RLOC of priority 2, used only when the
/// first is down. Pings cross both ways every 20 ms, encrypted; then the path through node
/// 2's first RLOC dies both ways, while nothing tells either node (no interface went
/// down). Both notice that what they send gets no answer (`dataplane::liveness`) and check
/// the RLOC they send to at once: node 1 misses three quick probes to node 2's first RLOC,
/// marks it down and sends to the second; node 2 misses its probe of node 1 from its first
/// RLOC, tries its second, is answered, agrees a key from there (node 1's ETR keys by the
/// ITR's address) and sends from it. Traffic crosses both ways again within a second of
/// the cut, and every packet lost was one counted as sent to or from the dead RLOC. When
/// the path returns, node 1 sends to the first RLOC again (it is probed every second while
/// down).
#[test]
fn a_dead_path_is_left_within_a_second_both_ways_and_taken_again_when_it_returns() {
    let backup: IpAddr = "198.19.0.2".parse().unwrap();
    let mut s = mesh(2, |i, c| {
        c.encryption = Some(CipherSuite::Aes128Gcm);
        if i == 2 {
            c.rlocs.push(LocalRloc {
                address: backup,
                priority: 2,
                weight: 100,
            });
        }
    });
    let primary = sim::rloc(2);
    let gap = 20 * MS;
    let mut seq = 0u16;
    ping_until_both_ways(&mut s, &mut seq, gap, 50, secs(5));
    let sent_to_primary = |s: &Sim| {
        s.xtr(0).unwrap().stats().per_rloc[&primary]
            .encapsulated
            .packets
    };
    let before = sent_to_primary(&s);
    let delivered_before = (s.tun[0].len(), s.tun[1].len());
    let seq_before = seq;
    s.blackhole.insert(primary);
    let cut = s.now;
    let back = ping_until_both_ways(&mut s, &mut seq, gap, 10, secs(10)) - cut;
    eprintln!("traffic crossed both ways again {back:?} after the cut");
    assert!(back <= secs(1), "{back:?} after the cut");
    // Node 1 -> node 2: every packet lost is one sent to the dead RLOC.
    let sent = u64::from(seq - seq_before);
    let lost = sent_to_primary(&s) - before;
    assert_eq!((s.tun[1].len() - delivered_before.1) as u64, sent - lost);
    assert!(
        s.xtr(0).unwrap().stats().per_rloc[&backup]
            .encapsulated
            .packets
            >= 10
    );
    // Node 2 -> node 1 left from the backup, under a key agreed from there.
    assert!(
        s.xtr(0)
            .unwrap()
            .stats()
            .per_rloc
            .get(&backup)
            .is_some_and(|d| d.decapsulated.packets >= 10)
    );
    let e2 = s.engine(1).unwrap();
    let p = &e2.probes()[&sim::rloc(1)];
    assert_eq!(
        p.via,
        Some(backup),
        "node 2 reaches node 1 from its backup RLOC"
    );
    assert!(e2.counters().probe_sources_changed >= 1);
    assert!(s.engine(0).unwrap().counters().path_checks >= 1);
    assert!(s.engine(0).unwrap().counters().rlocs_marked_down >= 1);
    assert!(s.xtr(0).unwrap().stats().path_checks_asked >= 1);
    // The path returns: node 1 sends to the first RLOC again within two seconds.
    s.blackhole.remove(&primary);
    let healed = s.now;
    let mut moved_back = None;
    for _ in 0..200 {
        let before = sent_to_primary(&s);
        ping_until_both_ways(&mut s, &mut seq, gap, 1, secs(2));
        if sent_to_primary(&s) > before {
            moved_back = Some(s.now - healed);
            break;
        }
    }
    let moved_back = moved_back.expect("traffic never went back to the first RLOC");
    assert!(moved_back <= secs(2), "{moved_back:?}");
}

/// Three nodes in pull mode on links of `delay`, node 3 the Map-Server and Map-Resolver of
/// every prefix, run for 3 s.
fn pull_mesh(delay: Duration, encryption: Option<CipherSuite>) -> Sim {
    let pull = PullMode {
        modulus: 1,
        dns_suffix: "map.test".into(),
        hash: PullHash::Draft { mask_len: 10 },
    };
    let mut s = Sim::new(delay, 5);
    for i in 1..=3 {
        let mut c = sim::node_config(i, Delivery::Replicate);
        c.mapping_system = MappingSystem::Pull(pull.clone());
        if encryption.is_some() {
            c.encryption = encryption;
        }
        s.add(c);
    }
    for n in 0..3 {
        let now = s.now;
        s.engine_mut(n)
            .unwrap()
            .set_pull_servers(now, 0, vec![sim::rloc(3)]);
    }
    s.run_to(secs(3));
    s
}

#[test]
fn packets_wait_for_their_mapping_in_pull_mode() {
    let mut s = pull_mesh(20 * MS, None);
    // Node 1 has no mapping for node 2's EID: the first packets wait for the Map-Reply
    // (a round trip of 40 ms) and leave in order; one Map-Request is sent for them.
    let sent: Vec<Vec<u8>> = (0..5).map(|seq| ping(1, 2, seq)).collect();
    for p in &sent {
        assert_eq!(s.send_packet(0, 0, p), Some(Encapsulated::Queued));
    }
    let requests = s.engine(0).unwrap().counters().map_requests_sent;
    assert_eq!(requests, 1, "one Map-Request for five packets");
    let t = s.now;
    assert!(s.run_until(t + secs(1), |s| s.tun[1].len() == 5));
    assert_eq!(delivered(&s, 1), sent);
    assert_eq!(s.xtr(0).unwrap().stats().queued_for_mapping, 5);
    // A destination nobody registered: the Map-Resolver's negative answer drops it.
    let mut stray = ping(1, 2, 9);
    stray[16..20].copy_from_slice(&[10, 9, 9, 9]);
    s.send_packet(0, 0, &stray);
    let t = s.now;
    s.run_to(t + secs(1));
    assert_eq!(drops(&s, 0, Drop::Negative), 1);
    // With the Map-Resolver cut off, packets wait out the bound (3 s) and are counted.
    s.blackhole.insert(sim::rloc(3));
    for seq in 0..3 {
        s.send_packet(0, 0, &ping(1, 3, seq));
    }
    let t = s.now;
    s.run_to(t + lisp_decent::dataplane::waiting::MAX_WAIT - MS);
    assert_eq!(drops(&s, 0, Drop::NoMapping), 0, "still waiting");
    s.run_to(t + lisp_decent::dataplane::waiting::MAX_WAIT);
    assert_eq!(drops(&s, 0, Drop::NoMapping), 3);
    assert_eq!(s.tun[1].len(), 5);
    assert!(s.tun[2].is_empty());
}

#[test]
fn replayed_tampered_and_clear_packets_are_dropped_and_counted() {
    let mut s = mesh(2, |_, c| c.encryption = Some(CipherSuite::ChaCha20Poly1305));
    s.capture = Some(Vec::new());
    let p = ping(1, 2, 1);
    s.send_packet(0, 0, &p);
    let t = s.now;
    s.run_to(t + secs(1));
    assert_eq!(delivered(&s, 1), vec![p.clone()]);
    let frames = s.capture.take().unwrap();
    let (src, dst, sealed) = frames
        .iter()
        .find(|(_, d, b)| d.port() == DATA_PORT && b.first().is_some_and(|f| f & 3 != 0))
        .cloned()
        .expect("an encrypted data packet");
    // Replayed as it was: the replay window refuses it.
    s.inject(src, dst, sealed.clone());
    // One bit flipped in the ciphertext: the ICV fails.
    let mut tampered = sealed.clone();
    let last = tampered.len() - 20;
    tampered[last] ^= 1;
    s.inject(src, dst, tampered);
    // The same inner packet in clear: encryption is on, so it is refused.
    let mut clear = vec![0u8; DataHeader::LEN];
    DataHeader::with_instance(0, 5, 0).emit(&mut clear).unwrap();
    clear.extend_from_slice(&p);
    s.inject(src, dst, clear);
    // From an address no key was agreed with.
    let stranger = SocketAddr::new("198.51.100.7".parse().unwrap(), 61000);
    s.inject(stranger, dst, sealed);
    let t = s.now;
    s.run_to(t + secs(1));
    assert_eq!(delivered(&s, 1), vec![p], "nothing more was delivered");
    for d in [
        Drop::Replayed,
        Drop::IcvFailed,
        Drop::ClearRefused,
        Drop::NoKey,
    ] {
        assert_eq!(drops(&s, 1, d), 1, "{d:?}");
    }
}

#[test]
fn what_the_tunnel_cannot_carry_gets_an_icmp_error_back() {
    let mut s = mesh(2, |_, _| {});
    let mut big = Vec::new();
    PacketBuilder::ipv4([10, 0, 1, 1], [10, 0, 2, 1], 64)
        .udp(1000, 2000)
        .write(&mut big, &[0u8; 1480])
        .unwrap();
    // The first packet resolves the mapping (push mode: at once, from the database).
    s.send_packet(0, 0, &ping(1, 2, 1));
    let t = s.now;
    s.run_to(t + secs(1));
    let Some(Encapsulated::IcmpToTun(error)) = s.send_packet(0, 0, &big) else {
        panic!("no ICMP error")
    };
    // Fragmentation needed, next-hop MTU 1500 - 20 - 8 - 8.
    assert_eq!((error[20], error[21]), (3, 4));
    assert_eq!(u16::from_be_bytes([error[26], error[27]]), 1464);
    assert_eq!(drops(&s, 0, Drop::TooBig), 1);
}

/// One ping from node 1 to node 2 and one back (sequence number `seq`, counted up), then
/// `wait`: whether each arrived.
fn pings_both_ways(s: &mut Sim, seq: &mut u16, wait: Duration) -> (bool, bool) {
    *seq += 1;
    let (there, back) = (ping(1, 2, *seq), ping(2, 1, *seq));
    s.send_packet(0, 0, &there);
    s.send_packet(1, 0, &back);
    let t = s.now + wait;
    s.run_to(t);
    (
        delivered(s, 1).contains(&there),
        delivered(s, 0).contains(&back),
    )
}

/// Moves node 2 to the single RLOC `to`, then pings both ways every `wait` until both
/// arrive (at most `tries` times); how long after the move that was.
fn move_node_2(s: &mut Sim, to: IpAddr, seq: &mut u16, wait: Duration, tries: u32) -> Duration {
    s.move_node(
        1,
        vec![LocalRloc {
            address: to,
            priority: 1,
            weight: 100,
        }],
    );
    let moved = s.now;
    for _ in 0..tries {
        if pings_both_ways(s, seq, wait) == (true, true) {
            return s.now - moved;
        }
    }
    panic!("no traffic both ways {:?} after the move", s.now - moved);
}

/// A node that roams (issue 14): node 2's RLOC changes to another address while pings flow
/// both ways, encrypted. What is sent to the old address is lost; node 2 registers its new
/// RLOC at once and offers fresh keys from it, so within a few round trips node 1 maps node
/// 2's EIDs to the new RLOC, seals to it under a key agreed with it, and opens what node 2
/// now sends from it under a key agreed for that address (an ETR keeps its keys per ITR
/// RLOC, RFC 8061 §9). Pings sent after that all arrive, both ways.
#[test]
fn a_node_that_moves_is_reached_again_within_a_few_round_trips() {
    for suite in [CipherSuite::Aes128Gcm, CipherSuite::ChaCha20Poly1305] {
        let mut s = mesh(2, |_, c| c.encryption = Some(suite));
        let mut seq = 0;
        let before = pings_both_ways(&mut s, &mut seq, 50 * MS);
        assert_eq!(before, (true, true), "{suite:?}: before the move");
        let new: IpAddr = "198.19.7.2".parse().unwrap();
        // Within 200 ms (each try 50 ms apart), traffic crosses both ways again.
        let took = move_node_2(&mut s, new, &mut seq, 50 * MS, 4);
        eprintln!("{suite:?}: traffic both ways again {took:?} after the move");
        for _ in 0..20 {
            let after = pings_both_ways(&mut s, &mut seq, 50 * MS);
            assert_eq!(after, (true, true), "{suite:?}: after {took:?}");
        }
        // Node 1 sends to the new RLOC, and its ETR holds a key for node 2's new address.
        let keys_at_1: Vec<IpAddr> = s
            .xtr(0)
            .unwrap()
            .recv_keys()
            .current()
            .map(|k| k.itr)
            .collect();
        assert!(keys_at_1.contains(&new), "{suite:?}: {keys_at_1:?}");
        let to_new = s.xtr(0).unwrap().stats().per_rloc.get(&new).cloned();
        assert!(
            to_new.is_some_and(|d| d.encapsulated.packets >= 20),
            "{suite:?}: node 1 sent too little to the new RLOC: {to_new:?}"
        );
    }
}

/// Moving between IPv4 and IPv6 underlays (issue 14): nodes 1 and 3 have an IPv4 and an
/// IPv6 RLOC, node 2 only IPv4; the peer group's address is IPv4. Node 2 moves to an
/// IPv6-only underlay: its membership now lists its IPv6 RLOC (it has none of the group's
/// family), it registers with the members at the IPv6 RLOCs they registered (plain
/// Map-Registers: it has no IPv4 address for a replicated copy's inner header), their
/// copies reach it at its IPv6 RLOC, and its ITR leaves their IPv4 RLOCs alone. Pings cross
/// both ways again within a second, encrypted, node 3 holds the new mapping too; then node
/// 2 moves back to IPv4 and the same holds.
#[test]
fn a_node_that_moves_between_ipv4_and_ipv6_is_reached_again() {
    let v6 = |i: u8| -> IpAddr { format!("2001:db8::{i}").parse().unwrap() };
    let mut s = mesh(3, |i, c| {
        c.encryption = Some(CipherSuite::Aes128Gcm);
        if i != 2 {
            c.rlocs.push(LocalRloc {
                address: v6(i as u8),
                priority: 2,
                weight: 100,
            });
        }
    });
    let mut seq = 0;
    assert_eq!(pings_both_ways(&mut s, &mut seq, 50 * MS), (true, true));
    for (to, back) in [(v6(2), "IPv6"), (sim::rloc(2), "IPv4")] {
        let took = move_node_2(&mut s, to, &mut seq, 50 * MS, 20);
        eprintln!("to {back}: traffic both ways again {took:?} after the move");
        assert!(took <= secs(1), "{took:?}");
        for _ in 0..10 {
            assert_eq!(
                pings_both_ways(&mut s, &mut seq, 50 * MS),
                (true, true),
                "{back}"
            );
        }
        // Every member maps node 2's EIDs to its new RLOC only.
        for n in [0, 2] {
            let rlocs = s
                .engine(n)
                .unwrap()
                .site_db()
                .prefixes()
                .get(&sim::eid(2))
                .map(|e| e.rloc_addresses())
                .unwrap_or_default();
            assert_eq!(rlocs, vec![to], "node {} after the move to {back}", n + 1);
        }
    }
    assert!(
        s.engine(1)
            .unwrap()
            .counters()
            .members_unreachable_by_family
            == 0
    );
}

/// Roaming in pull mode (issue 14): node 1 learned node 2's mapping by Map-Request from the
/// Map-Server of its prefix (node 3). Node 2 moves: it registers its new RLOC with node 3 at
/// once, node 3 sends node 1 a Solicit-Map-Request (RFC 9301 §6.1: its answer changed),
/// node 1 asks again and sends to the new RLOC, under a key agreed with it. Pings sent after
/// that all arrive, both ways, encrypted.
#[test]
fn a_node_that_moves_in_pull_mode_is_solicited_and_reached_again() {
    let mut s = pull_mesh(10 * MS, Some(CipherSuite::Aes128Gcm));
    let mut seq = 0;
    // The first pings wait for their mappings and keys.
    pings_both_ways(&mut s, &mut seq, 100 * MS);
    let before = pings_both_ways(&mut s, &mut seq, 100 * MS);
    assert_eq!(before, (true, true), "before the move");
    let smrs_before = s.engine(0).unwrap().counters().smrs_received;
    let new: IpAddr = "198.19.7.2".parse().unwrap();
    let took = move_node_2(&mut s, new, &mut seq, 100 * MS, 10);
    eprintln!("pull mode: traffic both ways again {took:?} after the move");
    for _ in 0..10 {
        let after = pings_both_ways(&mut s, &mut seq, 100 * MS);
        assert_eq!(after, (true, true), "after the move");
    }
    assert!(
        s.engine(0).unwrap().counters().smrs_received > smrs_before,
        "node 1 learned the new RLOC from an SMR"
    );
    let to_new = s.xtr(0).unwrap().stats().per_rloc.get(&new).cloned();
    assert!(to_new.is_some_and(|d| d.encapsulated.packets >= 10));
}

// NAT traversal through an RTR (issue 14, draft-ermagan-lisp-nat-traversal-19 §5.1.1,
// §5.3): node 1 is the seed and serves as RTR; nodes 2 and 3 sit behind NATs
// (endpoint-independent masquerade).

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

/// A direct path between two nodes behind NATs (the simulator's NATs map and filter
/// independently of the destination): once traffic crosses between them through the RTR,
/// the RTR introduces them, they probe each other directly and agree keys, and the traffic
/// stops going through the RTR. When the direct path dies (the two NATs cannot reach each
/// other any more), traffic goes back through the RTR by itself.
#[test]
fn two_nodes_behind_nats_find_a_direct_path_and_fall_back_to_the_rtr() {
    let a: IpAddr = "203.0.113.1".parse().unwrap();
    let b: IpAddr = "203.0.113.2".parse().unwrap();
    let mut s = nat_mesh([a, b], Some(CipherSuite::Aes128Gcm));
    let mut seq = 0;
    assert!(reaches(&mut s, 2, 3, &mut seq, 10));
    assert!(reaches(&mut s, 3, 2, &mut seq, 10));
    // Within a few seconds both go directly.
    let t = s.now;
    s.run_to(t + secs(3));
    for i in [1, 2] {
        let c = s.engine(i).unwrap().counters();
        assert_eq!(c.direct_paths_up, 1, "node {}: {c:?}", i + 1);
    }
    let relayed = s.xtr(0).unwrap().stats().relayed;
    for _ in 0..20 {
        assert!(reaches(&mut s, 2, 3, &mut seq, 1));
        assert!(reaches(&mut s, 3, 2, &mut seq, 1));
    }
    assert_eq!(
        s.xtr(0).unwrap().stats().relayed,
        relayed,
        "the RTR relayed traffic of a direct path"
    );
    assert!(s.engine(0).unwrap().counters().rtr_introductions >= 2);
    // The direct path dies: traffic goes back through the RTR within the probes' misses.
    s.cut(a, b);
    let cut = s.now;
    let mut back = None;
    while back.is_none() && s.now - cut < secs(20) {
        if reaches(&mut s, 2, 3, &mut seq, 1) && reaches(&mut s, 3, 2, &mut seq, 1) {
            back = Some(s.now - cut);
        }
    }
    eprintln!("direct path died: through the RTR again after {back:?}");
    assert!(back.is_some_and(|d| d <= secs(10)), "{back:?}");
    assert!(s.xtr(0).unwrap().stats().relayed > relayed);
}

/// Roaming from behind a NAT to a public address (issue 14): node 2 moves out from behind
/// its NAT; it asks again at once, leaves the RTR, registers its own RLOC and is reached
/// directly (the RTR no longer relays for it), both ways, encrypted.
#[test]
fn a_node_that_roams_from_behind_a_nat_to_a_public_address_is_reached_directly() {
    let a: IpAddr = "203.0.113.1".parse().unwrap();
    let b: IpAddr = "203.0.113.2".parse().unwrap();
    let mut s = nat_mesh([a, b], Some(CipherSuite::Aes128Gcm));
    let mut seq = 0;
    assert!(reaches(&mut s, 1, 2, &mut seq, 10));
    let public: IpAddr = "198.19.7.2".parse().unwrap();
    s.move_node(
        1,
        vec![LocalRloc {
            address: public,
            priority: 1,
            weight: 100,
        }],
    );
    let moved = s.now;
    let mut back = None;
    while back.is_none() && s.now - moved < secs(5) {
        if reaches(&mut s, 1, 2, &mut seq, 1) && reaches(&mut s, 2, 1, &mut seq, 1) {
            back = Some(s.now - moved);
        }
    }
    eprintln!("roamed out of the NAT: both ways again after {back:?}");
    assert!(back.is_some_and(|d| d <= secs(1)), "{back:?}");
    assert_eq!(s.engine(1).unwrap().config().via_rtr, None);
    let relayed = s.xtr(0).unwrap().stats().relayed;
    for _ in 0..10 {
        assert!(reaches(&mut s, 1, 2, &mut seq, 1));
        assert!(reaches(&mut s, 2, 1, &mut seq, 1));
    }
    assert_eq!(s.xtr(0).unwrap().stats().relayed, relayed, "still relayed");
}

/// Introductions are taken only from our RTR's data port and only signed with the site key:
/// one signed with another key, and a genuine one sent from another address (spoofed, or
/// replayed from elsewhere), start nothing; the genuine one from the RTR does (counted).
#[test]
fn only_a_signed_introduction_from_our_rtr_is_taken() {
    use lisp_decent::control::{direct, rtr};
    use lisp_decent::crypto::kx_auth::KxKey;
    use lisp_decent::mapping::EidPrefix;
    let a: IpAddr = "203.0.113.1".parse().unwrap();
    let b: IpAddr = "203.0.113.2".parse().unwrap();
    let mut s = nat_mesh([a, b], Some(CipherSuite::Aes128Gcm));
    let eid = EidPrefix::new(0, "10.3.0.0/16".parse().unwrap());
    let binding: SocketAddr = "203.0.113.2:20001".parse().unwrap();
    let in_data = |key: &[u8]| -> Vec<u8> {
        let kx = KxKey::from_site_key(key);
        let m = direct::introduction(
            &[eid],
            binding,
            sim::rloc(3),
            sim::rloc(1),
            [5; 8],
            Some(&kx),
        )
        .expect("an introduction");
        let pkt = rtr::in_data(sim::rloc(1), sim::rloc(2), 64, 1, &m).expect("carried in data");
        pkt[DataHeader::LEN..].to_vec()
    };
    let rtr_port = SocketAddr::new(sim::rloc(1), DATA_PORT);
    let taken = |s: &Sim| s.engine(1).unwrap().counters().direct_introductions;
    let now = s.now;
    let before = taken(&s);
    let e = s.engine_mut(1).unwrap();
    e.handle_replicated(now, rtr_port, &in_data(b"not the site key"));
    e.handle_replicated(
        now,
        "198.51.100.9:4341".parse().unwrap(),
        &in_data(sim::SIM_KEY.as_bytes()),
    );
    assert_eq!(
        taken(&s),
        before,
        "a forged or spoofed introduction was taken"
    );
    let e = s.engine_mut(1).unwrap();
    e.handle_replicated(now, rtr_port, &in_data(sim::SIM_KEY.as_bytes()));
    assert_eq!(taken(&s), before + 1);
    assert!(s.engine(1).unwrap().direct_paths().contains_key(&binding));
}
