//! One engine as Map-Server and Map-Resolver: what it answers, to whom, and what it refuses.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use lisp_decent::control::{Delivery, Engine, Transmit};
use lisp_decent::crypto::auth::{self, alg};
use lisp_decent::sim;
use lisp_decent::wire::*;

fn started() -> Engine {
    let mut e = Engine::new(sim::node_config(1, Delivery::Replicate));
    e.handle_timeout(Duration::ZERO);
    while e.poll_transmit().is_some() {}
    e
}

fn sent(e: &mut Engine) -> Vec<Transmit> {
    std::iter::from_fn(|| e.poll_transmit()).collect()
}

fn reply_of(t: &Transmit) -> MapReply {
    match ControlMessage::parse(&t.payload).unwrap() {
        ControlMessage::MapReply(r) => r,
        other => panic!("not a Map-Reply: {other:?}"),
    }
}

fn a4(s: &str) -> Address {
    Address::Ipv4(s.parse().unwrap())
}

fn request(eid: &str, itr: &str) -> MapRequest {
    MapRequest::new([7; 8], Address::None, a4(itr), a4(eid), 32)
}

const ITR: &str = "192.0.2.100";

/// Asks node 1 of a converged pair for `eid` from the ITR; returns where the reply went and
/// its first record.
fn ask_node_1(eid: &str) -> (SocketAddr, EidRecord) {
    let mut s = sim::Sim::new(Duration::from_millis(1), 5);
    for i in 1..=2 {
        s.add(sim::node_config(i, Delivery::Replicate));
    }
    assert!(s.run_until(Duration::from_secs(5), sim::Sim::converged));
    let now = s.now;
    let e = s.engine_mut(0).unwrap();
    while e.poll_transmit().is_some() {}
    let src = SocketAddr::new(ITR.parse().unwrap(), 40000);
    let q = ControlMessage::MapRequest(request(eid, ITR))
        .to_bytes()
        .unwrap();
    e.handle_datagram(now, src, SocketAddr::new(sim::rloc(1), 4342), &q);
    let out: Vec<Transmit> = std::iter::from_fn(|| e.poll_transmit())
        .filter(|t| t.dst.ip() == src.ip())
        .collect();
    assert_eq!(out.len(), 1);
    let r = reply_of(&out[0]);
    assert_eq!(r.nonce, [7; 8]);
    (out[0].dst, r.records[0].clone())
}

/// A member's prefix is answered by proxy (A clear, L clear: we hold it as the group's
/// Map-Resolver); our own is answered as its ETR, authoritatively with our locators (RFC
/// 9301 §5.4, §8.3), so lig through lispers.net or OOR shows it "auth".
#[test]
fn proxy_reply_for_a_member_and_authoritative_for_our_own() {
    let (dst, rec) = ask_node_1("10.0.2.77");
    assert_eq!(
        dst,
        SocketAddr::new(ITR.parse().unwrap(), 40000),
        "to the ITR-RLOC at the request's source port"
    );
    assert_eq!(rec.eid_text(), "[0]10.0.2.0/24");
    assert!(!rec.authoritative, "proxy reply: A clear");
    assert_eq!(rec.ttl, 1440);
    assert_eq!(rec.rlocs[0].locator.ip(), Some(sim::rloc(2)));
    assert!(!rec.rlocs[0].local(), "L clear in a proxy reply");
    let (_, rec) = ask_node_1("10.0.1.77");
    assert_eq!(rec.eid_text(), "[0]10.0.1.0/24");
    assert!(rec.authoritative, "our own mapping: A set");
    assert_eq!(rec.rlocs[0].locator.ip(), Some(sim::rloc(1)));
    assert!(rec.rlocs[0].local() && rec.rlocs[0].reachable());
}

#[test]
fn ecm_reply_goes_to_the_inner_source_port() {
    let mut e = started();
    let inner = IpUdp::new(
        IpAddr::from([10, 9, 9, 1]),
        IpAddr::from([10, 0, 1, 5]),
        64,
        51111,
        4342,
    )
    .unwrap();
    let ecm = ControlMessage::Ecm(Ecm::new(
        inner,
        ControlMessage::MapRequest(request("10.0.1.5", ITR)),
    ));
    let outer = SocketAddr::new(ITR.parse().unwrap(), 4342);
    e.handle_datagram(
        Duration::from_secs(1),
        outer,
        SocketAddr::new(sim::rloc(1), 4342),
        &ecm.to_bytes().unwrap(),
    );
    let out = sent(&mut e);
    assert_eq!(out[0].dst, SocketAddr::new(ITR.parse().unwrap(), 51111));
}

#[test]
fn negative_replies_cover_the_eid_and_no_registered_prefix() {
    let mut e = started();
    // Registered: 10.0.1.0/24 (ours). Configured: 10.0.0.0/8 with more-specifics.
    let cases = [
        // Inside the configured /8, not registered: widest prefix free of 10.0.1.0/24, 1 min.
        ("10.9.9.9", "[0]10.8.0.0/13", 1),
        ("10.0.2.1", "[0]10.0.2.0/23", 1),
        // Outside anything configured: 15 min, and the prefix stays clear of 10.0.0.0/8.
        ("192.168.1.1", "[0]128.0.0.0/1", 15),
        ("11.1.1.1", "[0]11.0.0.0/8", 15),
    ];
    for (eid, want, ttl) in cases {
        let q = ControlMessage::MapRequest(request(eid, ITR))
            .to_bytes()
            .unwrap();
        e.handle_datagram(
            Duration::from_secs(1),
            SocketAddr::new(ITR.parse().unwrap(), 4342),
            SocketAddr::new(sim::rloc(1), 4342),
            &q,
        );
        let r = reply_of(&sent(&mut e)[0]);
        let rec = &r.records[0];
        assert_eq!((rec.eid_text().as_str(), rec.ttl), (want, ttl), "{eid}");
        assert_eq!(rec.action, action::NATIVELY_FORWARD);
        assert!(rec.rlocs.is_empty());
        let net: ipnet::IpNet = want[3..].parse().unwrap();
        assert!(
            net.contains(&eid.parse::<IpAddr>().unwrap()),
            "covers the EID (OOR's bug)"
        );
    }
    assert_eq!(e.counters().negative_replies_sent, 4);
}

#[test]
fn probe_answered_authoritatively_with_the_probed_locator() {
    let mut e = started();
    let mut q = request("10.0.1.0", ITR);
    q.probe = true;
    q.records[0].mask_len = 24;
    let bytes = ControlMessage::MapRequest(q).to_bytes().unwrap();
    e.handle_datagram(
        Duration::from_secs(1),
        SocketAddr::new(ITR.parse().unwrap(), 4342),
        SocketAddr::new(sim::rloc(1), 4342),
        &bytes,
    );
    let r = reply_of(&sent(&mut e)[0]);
    assert!(r.probe);
    assert!(r.records[0].authoritative);
    let l = &r.records[0].rlocs[0];
    assert!(l.local() && l.probed() && l.reachable());
}

#[test]
fn a_flood_from_one_source_is_rate_limited_and_counted() {
    let mut e = started();
    let q = ControlMessage::MapRequest(request("10.0.1.5", ITR))
        .to_bytes()
        .unwrap();
    let src = SocketAddr::new(ITR.parse().unwrap(), 4342);
    let dst = SocketAddr::new(sim::rloc(1), 4342);
    for _ in 0..1000 {
        e.handle_datagram(Duration::from_secs(1), src, dst, &q);
    }
    let answered = sent(&mut e).len();
    assert_eq!(answered, 200, "bucket depth: twice the 100/s rate");
    assert_eq!(e.counters().map_requests_rate_limited, 800);
    // Another address of the same /24 shares the bucket (spoofing a network gains nothing);
    // another network is not affected; the first refills with time.
    e.handle_datagram(
        Duration::from_secs(1),
        SocketAddr::new("192.0.2.101".parse().unwrap(), 4342),
        dst,
        &q,
    );
    assert_eq!(sent(&mut e).len(), 0, "same /24");
    e.handle_datagram(
        Duration::from_secs(1),
        SocketAddr::new("198.51.100.101".parse().unwrap(), 4342),
        dst,
        &q,
    );
    e.handle_datagram(Duration::from_secs(2), src, dst, &q);
    assert_eq!(sent(&mut e).len(), 2);
}

/// A 10 s flood of 3,000 Map-Requests a second from random sources (issue 12: every distinct ITR-RLOC was
/// remembered for SMRs, lookups slowed from 11 to 69 µs, and one mapping change sent 59,564
/// SMRs to the planted addresses): all of them together are held to 20 times the per-source
/// rate, the ITRs remembered for SMRs are bounded, and a mapping change sends at most 256
/// SMRs for the prefix.
#[test]
fn a_flood_from_random_sources_is_bounded() {
    let mut s = sim::Sim::new(Duration::from_millis(1), 9);
    for i in 1..=2 {
        s.add(sim::node_config(i, Delivery::Replicate));
    }
    assert!(s.run_until(Duration::from_secs(5), sim::Sim::converged));
    let t0 = s.now;
    let dst = SocketAddr::new(sim::rloc(1), 4342);
    let mut x: u32 = 0x1234_5679;
    for k in 0..30_000u32 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let itr = std::net::Ipv4Addr::from(x);
        let q = ControlMessage::MapRequest(request("10.0.2.5", &itr.to_string()))
            .to_bytes()
            .unwrap();
        let now = t0 + Duration::from_micros(u64::from(k) * 333);
        let e = s.engine_mut(0).unwrap();
        e.handle_datagram(now, SocketAddr::new(IpAddr::V4(itr), 4342), dst, &q);
        while e.poll_transmit().is_some() {}
    }
    let e = s.engine(0).unwrap();
    let c = e.counters().clone();
    let answered = c.map_replies_sent;
    // 100/s per source; 2,000/s in all, for 10 s, plus the bucket depths.
    assert!(answered <= 2_000 * 10 + 4_000 + 200, "{answered}");
    assert!(c.map_requests_over_total_rate > 0);
    // A change of node 2's mapping: SMRs to at most 256 of the ITRs that had replies.
    s.run_to(t0 + Duration::from_secs(11));
    let before = s.engine(0).unwrap().counters().smrs_sent;
    let now = s.now;
    s.engine_mut(1).unwrap().set_rlocs(
        now,
        vec![lisp_decent::control::LocalRloc {
            address: sim::rloc(2),
            priority: 2,
            weight: 50,
        }],
    );
    s.run_to(s.now + Duration::from_secs(3));
    let e = s.engine(0).unwrap();
    let smrs = e.counters().smrs_sent - before;
    assert!(smrs > 0 && smrs <= 256, "{smrs}");
    assert!(e.counters().requesters_not_remembered > 0);
}

#[test]
fn map_notify_when_asked_authenticated_with_the_same_key() {
    let mut e = started();
    let rec = EidRecord::new(
        a4("10.0.9.0"),
        24,
        3,
        vec![RlocRecord {
            priority: 1,
            weight: 1,
            m_priority: 255,
            m_weight: 0,
            flags: 5,
            locator: a4("192.0.2.9"),
        }],
    );
    let reg = MapRegister {
        proxy_reply: false,
        security: false,
        eid_notify: false,
        use_ttl: true,
        merge: false,
        want_notify: true,
        reserved: 0,
        nonce: [3; 8],
        auth: Authentication::unsigned(1, alg::HMAC_SHA_256_128),
        records: vec![rec],
        trailer: Some(XtrTrailer {
            xtr_id: [0xab; 16],
            site_id: [0; 8],
        }),
    };
    let mut b = ControlMessage::MapRegister(reg).to_bytes().unwrap();
    auth::sign(&mut b, sim::SIM_KEY.as_bytes()).unwrap();
    let src = SocketAddr::new("192.0.2.9".parse().unwrap(), 4342);
    e.handle_datagram(
        Duration::from_secs(1),
        src,
        SocketAddr::new(sim::rloc(1), 4342),
        &b,
    );
    let out = sent(&mut e);
    let notify = out
        .iter()
        .find(|t| t.dst == src)
        .expect("a Map-Notify back");
    let ControlMessage::MapNotify(n) = ControlMessage::parse(&notify.payload).unwrap() else {
        panic!()
    };
    assert_eq!(n.nonce, [3; 8]);
    assert_eq!(n.records[0].eid_text(), "[0]10.0.9.0/24");
    assert_eq!(
        auth::verify(&notify.payload, sim::SIM_KEY.as_bytes()),
        Ok(())
    );
    // TTL 0 removes the registration.
    let mut reg0 = match ControlMessage::parse(&b).unwrap() {
        ControlMessage::MapRegister(r) => r,
        _ => unreachable!(),
    };
    reg0.records[0].ttl = 0;
    reg0.want_notify = false;
    let mut b0 = ControlMessage::MapRegister(reg0).to_bytes().unwrap();
    auth::sign(&mut b0, sim::SIM_KEY.as_bytes()).unwrap();
    let before = e.site_db().len();
    e.handle_datagram(
        Duration::from_secs(2),
        src,
        SocketAddr::new(sim::rloc(1), 4342),
        &b0,
    );
    assert_eq!(e.site_db().len(), before - 1);
}

/// lispers.net's Map-Notify carries the xTR-ID / site-ID trailer with the I bit clear, its
/// HMAC covering it (shared/vectors/interop cell 1). A node registering with such a
/// Map-Server takes it as the acknowledgement: it stops retrying the seed.
#[test]
fn a_lispers_map_notify_with_an_unflagged_trailer_acknowledges_the_seed() {
    let seed: IpAddr = "192.0.2.21".parse().unwrap();
    let registers_to_seed = |out: &[Transmit]| -> Vec<MapRegister> {
        out.iter()
            .filter(|t| t.dst.ip() == seed)
            .filter_map(|t| match ControlMessage::parse(&t.payload) {
                Ok(ControlMessage::MapRegister(r)) if r.want_notify => Some(r),
                _ => None,
            })
            .collect()
    };
    for answer in [false, true] {
        let mut c = sim::node_config(1, Delivery::Replicate);
        if let lisp_decent::control::MappingSystem::Push(g) = &mut c.mapping_system {
            g.seeds = vec![seed];
        }
        let mut e = Engine::new(c);
        e.handle_timeout(Duration::ZERO);
        let regs = registers_to_seed(&sent(&mut e));
        assert!(!regs.is_empty(), "registers to the seed");
        for reg in regs.iter().filter(|_| answer) {
            let n = MapNotify {
                reserved: 0,
                nonce: reg.nonce,
                auth: Authentication::unsigned(1, alg::HMAC_SHA_256_128),
                records: reg.records.clone(),
                trailer: reg.trailer,
                unflagged_trailer: true,
            };
            let mut bytes = ControlMessage::MapNotify(n).to_bytes().unwrap();
            assert_eq!(
                bytes[0] & 0x08,
                0,
                "the I bit is clear, as lispers sends it"
            );
            auth::sign(&mut bytes, sim::SIM_KEY.as_bytes()).unwrap();
            e.handle_datagram(
                Duration::from_millis(100),
                SocketAddr::new(seed, 4342),
                SocketAddr::new(sim::rloc(1), 4342),
                &bytes,
            );
            assert_eq!(e.counters().map_notify_rejected_auth, 0);
            assert_eq!(e.counters().packets_malformed, 0);
        }
        // Without an acknowledgement the seed is asked again within seconds, doubling.
        let mut retried = false;
        for ms in (200..12000).step_by(100) {
            e.handle_timeout(Duration::from_millis(ms));
            // (The joining repeats, to 3.5 s, go to the seed whatever it answered.)
            let to_seed = registers_to_seed(&sent(&mut e));
            retried |= ms > 4000 && !to_seed.is_empty();
        }
        assert_eq!(retried, !answer, "answered: {answer}");
    }
}
