//! The lisp-crypto key exchange (RFC 8061 §5-§10) in the deterministic simulator: keys agreed
//! and renewed through RLOC-probes, suites, the lispers.net profile, and a hostile network:
//! forged, spoofed and replayed probes and replies.
//!
//! Each node's data plane is modelled by its key tables ([`Keys`]): what the engines' key
//! events install, so a test can seal a packet at one end and see whether the other opens it.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use lisp_decent::control::{CryptoPeer, CryptoProfile, Delivery, KeyEvent};
use lisp_decent::crypto::kx_auth;
use lisp_decent::crypto::lisp_crypto::{CipherSuite, CryptoError, SendKey};
use lisp_decent::dataplane::keys::RecvKeys;
use lisp_decent::sim::{self, Sim};
use lisp_decent::wire::*;

const MS: Duration = Duration::from_millis(1);

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// One node's data-plane keys, fed from its engine's key events.
#[derive(Default)]
struct Keys {
    send: HashMap<IpAddr, SendKey>,
    recv: RecvKeys,
    /// Every event, in order.
    events: Vec<KeyEvent>,
}

impl Keys {
    fn pump(&mut self, s: &mut Sim, n: usize) {
        let now = s.now;
        for e in s.take_key_events(n) {
            match &e {
                KeyEvent::Send {
                    rloc,
                    suite,
                    key_id,
                    key,
                    ..
                } => {
                    self.send.insert(*rloc, SendKey::new(*suite, *key_id, key));
                }
                KeyEvent::Recv {
                    itr,
                    suite,
                    key_id,
                    key,
                    ..
                } => {
                    self.recv.install(now, *itr, *suite, *key_id, *key);
                }
                KeyEvent::NoKey { .. }
                | KeyEvent::Source { .. }
                | KeyEvent::ViaRtr { .. }
                | KeyEvent::Binding { .. }
                | KeyEvent::Bind { .. }
                | KeyEvent::Direct { .. } => {}
            }
            self.events.push(e);
        }
    }

    /// The distinct keys the ETR side was given for `itr`, in order.
    fn recv_keys_from(&self, itr: IpAddr) -> Vec<(u8, [u8; 32])> {
        let mut out: Vec<(u8, [u8; 32])> = Vec::new();
        for e in &self.events {
            if let KeyEvent::Recv {
                itr: i,
                key_id,
                key,
                ..
            } = e
                && *i == itr
                && !out.iter().any(|(_, k)| k == key)
            {
                out.push((*key_id, *key));
            }
        }
        out
    }

    fn sends_to(&self, rloc: IpAddr) -> Vec<(CipherSuite, u8, [u8; 32])> {
        self.events
            .iter()
            .filter_map(|e| match e {
                KeyEvent::Send {
                    rloc: r,
                    suite,
                    key_id,
                    key,
                    ..
                } if *r == rloc => Some((*suite, *key_id, *key)),
                _ => None,
            })
            .collect()
    }
}

/// Runs the simulator to `t`, pumping every node's key events into its tables.
fn run(s: &mut Sim, keys: &mut [Keys], t: Duration) {
    while s.now < t {
        let step = (s.now + 100 * MS).min(t);
        s.run_to(step);
        for (n, k) in keys.iter_mut().enumerate() {
            k.pump(s, n);
        }
    }
}

/// Seals a packet at node `from` toward node `to` and opens it at `to`.
fn deliver(
    keys: &mut [Keys],
    now: Duration,
    from: usize,
    to: usize,
) -> std::result::Result<(), CryptoError> {
    let mut p = Vec::new();
    let mut inner = vec![0x45u8, 0, 0, 28];
    inner.resize(28, 7);
    let tx = keys[from]
        .send
        .get_mut(&sim::rloc(to + 1))
        .ok_or(CryptoError::NoKey(0))?;
    tx.seal(DataHeader::with_instance(0, 1, 0), &inner, &mut p)?;
    let r = keys[to].recv.open(now, sim::rloc(from + 1), &mut p)?;
    assert_eq!(&p[r], &inner[..]);
    Ok(())
}

/// `n` nodes in one replicated peer group with AES-128-GCM and a 120 s rekey interval,
/// changed by `tweak`, converged and keyed with each other.
fn keyed_mesh(
    n: usize,
    seed: u64,
    tweak: impl Fn(usize, &mut lisp_decent::control::EngineConfig),
) -> (Sim, Vec<Keys>) {
    let mut s = Sim::new(2 * MS, seed);
    for i in 1..=n {
        let mut c = sim::node_config(i, Delivery::Replicate);
        c.encryption = Some(CipherSuite::Aes128Gcm);
        c.timers.rekey_interval = secs(120);
        tweak(i, &mut c);
        s.add(c);
    }
    let mut keys: Vec<Keys> = (0..n).map(|_| Keys::default()).collect();
    assert!(s.run_until(secs(5), Sim::converged));
    let t = s.now + secs(3);
    run(&mut s, &mut keys, t);
    (s, keys)
}

/// A probe offering `public` under key-id 1 in a Security Key LCAF that names `names` as
/// its locator.
fn forged_probe(nonce: Nonce, public: [u8; 32], suite: u8, names: IpAddr) -> Vec<u8> {
    let lcaf = Address::Lcaf(Box::new(Lcaf::new(LcafBody::SecurityKey(SecurityKey {
        rsvd3: 0,
        cipher_suite: suite,
        rsvd4: 0,
        keys: vec![public.to_vec()],
        locator: Address::from(names),
    }))));
    let (eid, ml) = sim::eid(1).to_wire();
    let mut q = MapRequest::new(nonce, Address::None, lcaf, eid, ml);
    q.probe = true;
    ControlMessage::MapRequest(q).to_bytes().unwrap()
}

/// 20,000 forged probes to node 1 offering random keys under key-id 1 in an LCAF that names
/// node 3; `from(i)` gives the i-th one's source and the key it is signed with, if any.
/// Every 1000 probes node 3's real traffic to node 1 must still open.
fn flood<'k>(
    s: &mut Sim,
    keys: &mut [Keys],
    from: impl Fn(u32) -> (IpAddr, Option<&'k kx_auth::KxKey>),
) {
    let (n1, n3) = (sim::rloc(1), sim::rloc(3));
    for i in 0..20_000u32 {
        let (src, key) = from(i);
        let mut p = forged_probe((u64::from(i)).to_be_bytes(), [i as u8 | 1; 32], 5, n3);
        if let Some(k) = key {
            k.sign(&mut p);
        }
        s.inject(SocketAddr::new(src, 40000), ctl(n1), p);
        if i % 1000 == 0 {
            let t = s.now + MS;
            run(s, keys, t);
            deliver(keys, s.now, 2, 0).expect("the real ITR's traffic is unhurt");
        }
    }
}

fn ctl(ip: IpAddr) -> SocketAddr {
    SocketAddr::new(ip, CONTROL_PORT)
}

#[test]
fn keys_are_agreed_through_rloc_probes_and_renewed() {
    for suite in [CipherSuite::Aes128Gcm, CipherSuite::ChaCha20Poly1305] {
        let (mut s, mut keys) = keyed_mesh(3, 13, |_, c| c.encryption = Some(suite));
        let (n1, n3) = (sim::rloc(1), sim::rloc(3));
        // Node 3's ITR keyed with node 1's ETR under key-id 1, in our suite.
        let sends = keys[2].sends_to(n1);
        assert_eq!(sends.len(), 1, "{suite:?}: {sends:?}");
        assert_eq!((sends[0].0, sends[0].1), (suite, 1));
        assert_eq!(keys[0].recv_keys_from(n3), vec![(1, sends[0].2)]);
        // The key is a candidate until data proves it; then in use.
        assert_eq!(keys[0].recv.current().count(), 0);
        deliver(&mut keys, s.now, 2, 0).unwrap();
        assert!(keys[0].recv.current().any(|k| k.itr == n3));
        // Further probes re-offer the same key: nothing new before the rekey interval.
        let t = s.now + secs(60);
        run(&mut s, &mut keys, t);
        assert_eq!(
            keys[2].sends_to(n1).len(),
            1,
            "no rekey before the interval"
        );
        assert_eq!(keys[0].recv_keys_from(n3).len(), 1);
        // After the interval a fresh key under the next key-id, on both ends; the old
        // key-id keeps working for packets in flight.
        let mut old = keys[2].send.remove(&n1).unwrap();
        let t = s.now + secs(80);
        run(&mut s, &mut keys, t);
        let sends = keys[2].sends_to(n1);
        assert_eq!(sends.len(), 2, "{suite:?}");
        assert_eq!(sends[1].1, 2, "the next key-id");
        assert_eq!(keys[0].recv_keys_from(n3)[1], (2, sends[1].2));
        let mut p = Vec::new();
        old.seal(
            DataHeader::with_instance(0, 1, 0),
            &[0x45, 0, 0, 20],
            &mut p,
        )
        .unwrap();
        assert!(keys[0].recv.open(s.now, n3, &mut p).is_ok(), "in flight");
        deliver(&mut keys, s.now, 2, 0).unwrap();
        assert_eq!(s.engine(2).unwrap().probes()[&n1].rekeys, 2);
        // A spent packet budget asks for a fresh key at once, long before the interval; after
        // key-id 3 comes key-id 1 again.
        for want in [3, 1] {
            let now = s.now;
            s.engine_mut(2).unwrap().rekey_now(now, n1);
            let t = s.now + secs(1);
            run(&mut s, &mut keys, t);
            assert_eq!(keys[2].sends_to(n1).last().unwrap().1, want);
            deliver(&mut keys, s.now, 2, 0).unwrap();
        }
        // Every key the ITR took, the ETR was given too, and every exchange was signed.
        assert_eq!(keys[0].recv_keys_from(n3).len(), 4);
        let c = s.engine(0).unwrap().counters();
        assert_eq!(
            (c.key_offers_unauthenticated, c.key_exchange_bad_signature),
            (0, 0)
        );
    }
}

/// `data_plane.encryption` is the only suite offered and accepted (RFC 8061 §6: an ETR
/// without the suite answers with no key): node 3 (ChaCha20-Poly1305) gets no key from
/// node 1 (AES-128-GCM) and is told so.
#[test]
fn only_the_configured_suite_is_offered_and_accepted() {
    let (s, keys) = keyed_mesh(3, 17, |i, c| {
        if i == 3 {
            c.encryption = Some(CipherSuite::ChaCha20Poly1305);
        }
    });
    let (n1, n2, n3) = (sim::rloc(1), sim::rloc(2), sim::rloc(3));
    assert!(keys[2].sends_to(n1).is_empty());
    assert!(
        keys[2]
            .events
            .iter()
            .any(|e| matches!(e, KeyEvent::NoKey { rloc } if *rloc == n1))
    );
    assert!(keys[0].recv_keys_from(n3).is_empty());
    assert!(s.engine(0).unwrap().counters().key_offers_refused > 0);
    // Nodes 1 and 2 share a suite and key.
    assert_eq!(keys[0].sends_to(n2)[0].0, CipherSuite::Aes128Gcm);
}

/// Section 1 of the issue: a stranger's probes, from its own address or spoofing a member's,
/// naming a member's RLOC in the LCAF or not, signed with a wrong key or not, install no key,
/// displace none, and keep no state; 20,000 of them from random sources leave the key table
/// as it was. The real ITR's traffic keeps flowing throughout.
#[test]
fn forged_probes_install_nothing_in_the_peer_group() {
    let (mut s, mut keys) = keyed_mesh(3, 21, |_, _| {});
    let n3 = sim::rloc(3);
    deliver(&mut keys, s.now, 2, 0).unwrap();
    let peers = s.engine(0).unwrap().etr_key_peers();
    let events_before = keys[0].recv_keys_from(n3).len();
    let attacker: IpAddr = "192.0.2.66".parse().unwrap();
    let wrong = kx_auth::KxKey::from_site_key(b"not the site key");
    flood(&mut s, &mut keys, |i| {
        let src = match i % 4 {
            0 => attacker,
            1 => n3,
            _ => IpAddr::from((0xc633_0000 + i).to_be_bytes()),
        };
        (src, (i % 2 == 0).then_some(&wrong))
    });
    let t = s.now + secs(1);
    run(&mut s, &mut keys, t);
    assert_eq!(
        keys[0].recv_keys_from(n3).len(),
        events_before,
        "no key installed"
    );
    assert!(
        keys[0].recv_keys_from(attacker).is_empty(),
        "nothing for the attacker"
    );
    assert_eq!(s.engine(0).unwrap().etr_key_peers(), peers, "no state kept");
    assert_eq!(keys[0].recv.len(), 2, "the two members only");
    let c = s.engine(0).unwrap().counters();
    // Each was refused unsigned, or earlier by the rate limits (per source network, shared
    // beyond 4096 networks, and all requests together).
    assert_eq!(
        c.key_offers_unauthenticated + c.map_requests_rate_limited,
        20_000
    );
    assert!(c.key_offers_unauthenticated > 1_000, "{c:?}");
    // Requests are rate-limited before their signature is looked at (the cheaper check
    // first), so only the admitted half of the badly signed ones is counted as such.
    assert!(
        (500..=10_000).contains(&c.key_exchange_bad_signature),
        "{c:?}"
    );
    deliver(&mut keys, s.now, 2, 0).unwrap();
}

/// An on-path attacker who sees the ITR's probe nonce answers first with its own key: the
/// reply is not signed with the site key, so the ITR takes no key from it.
#[test]
fn a_forged_probe_reply_gives_the_itr_no_key() {
    let mut s = Sim::new(2 * MS, 23);
    for i in 1..=2 {
        let mut c = sim::node_config(i, Delivery::Replicate);
        c.encryption = Some(CipherSuite::Aes128Gcm);
        s.add(c);
    }
    let mut keys: Vec<Keys> = (0..2).map(|_| Keys::default()).collect();
    let n2 = sim::rloc(2);
    // Forge a reply to each probe node 1 sends to node 2, ahead of the real one.
    let mut forged = 0;
    while s.now < secs(8) {
        let t = s.now + MS;
        s.run_to(t);
        let out = s
            .engine(0)
            .unwrap()
            .probes()
            .get(&n2)
            .and_then(|p| p.outstanding);
        if let Some((nonce, sent)) = out
            && sent + MS >= s.now
        {
            let lcaf = Address::Lcaf(Box::new(Lcaf::new(LcafBody::SecurityKey(SecurityKey {
                rsvd3: 0,
                cipher_suite: 5,
                rsvd4: 0,
                keys: vec![vec![0x55; 32]],
                locator: Address::from(n2),
            }))));
            let (eid, ml) = sim::eid(2).to_wire();
            let mut rec = EidRecord::new(
                eid,
                ml,
                1440,
                vec![RlocRecord {
                    priority: 1,
                    weight: 100,
                    m_priority: 255,
                    m_weight: 0,
                    flags: RlocRecord::PROBED | RlocRecord::REACHABLE,
                    locator: lcaf,
                }],
            );
            rec.authoritative = true;
            let mut r = MapReply::new(nonce, vec![rec]);
            r.probe = true;
            let payload = ControlMessage::MapReply(r).to_bytes().unwrap();
            s.inject(ctl(n2), ctl(sim::rloc(1)), payload);
            forged += 1;
        }
        keys[0].pump(&mut s, 0);
    }
    assert!(forged > 0);
    assert!(s.engine(0).unwrap().counters().key_replies_unauthenticated > 0);
    assert!(
        keys[0].sends_to(n2).is_empty(),
        "no key from a forged reply: {:?}",
        keys[0].events
    );
}

/// A captured, validly signed probe replayed later (after a rekey) makes at most a
/// candidate: the key in use keeps working, and the replay's key is never used.
#[test]
fn a_replayed_signed_probe_displaces_nothing() {
    let (mut s, mut keys) = keyed_mesh(3, 29, |_, _| {});
    let (n1, n3) = (sim::rloc(1), sim::rloc(3));
    s.capture = Some(Vec::new());
    let now = s.now;
    s.engine_mut(2).unwrap().rekey_now(now, n1);
    let t = s.now + secs(1);
    run(&mut s, &mut keys, t);
    deliver(&mut keys, s.now, 2, 0).unwrap();
    let probes: Vec<(SocketAddr, SocketAddr, Vec<u8>)> = s
        .capture
        .take()
        .unwrap()
        .into_iter()
        .filter(|(a, b, p)| a.ip() == n3 && b.ip() == n1 && p.len() > 36 && p[0] == 0x12)
        .collect();
    assert!(!probes.is_empty(), "the rekey probe was captured");
    // Rekey again, so the captured offer is an old one, then replay it many times.
    let now = s.now;
    s.engine_mut(2).unwrap().rekey_now(now, n1);
    let t = s.now + secs(1);
    run(&mut s, &mut keys, t);
    deliver(&mut keys, s.now, 2, 0).unwrap();
    for _ in 0..50 {
        for (a, b, p) in &probes {
            s.inject(*a, *b, p.clone());
        }
        let t = s.now + 10 * MS;
        run(&mut s, &mut keys, t);
        deliver(&mut keys, s.now, 2, 0).expect("the key in use is never displaced");
    }
}

/// Peers configured `rfc8061` (another implementation, no site-key signature) key on
/// return routability alone: spoofed offers cost bounded state and never displace the key
/// in use.
#[test]
fn the_unsigned_rfc8061_profile_is_bounded_and_never_displaced() {
    let (mut s, mut keys) = keyed_mesh(3, 31, |_, c| {
        c.crypto_peers = vec![CryptoPeer {
            rlocs: "0.0.0.0/0".parse().unwrap(),
            profile: CryptoProfile::Rfc8061,
        }]
    });
    let n3 = sim::rloc(3);
    deliver(&mut keys, s.now, 2, 0).expect("keyed without signatures");
    // Half spoof the real ITR under its key-id, half come from random sources.
    flood(&mut s, &mut keys, |i| {
        let src = if i % 2 == 0 {
            n3
        } else {
            IpAddr::from((0xc633_0000 + i).to_be_bytes())
        };
        (src, None)
    });
    let t = s.now + secs(1);
    run(&mut s, &mut keys, t);
    deliver(&mut keys, s.now, 2, 0).unwrap();
    let e = s.engine(0).unwrap();
    assert!(e.etr_key_peers() <= 256, "{}", e.etr_key_peers());
    let c = e.counters();
    assert!(c.key_offers_dropped_full > 1_000, "{c:?}");
    assert!(c.key_offers_dropped_full + c.map_requests_rate_limited > 9_000);
    assert!(keys[0].recv.len() <= 256);
    // Unproven candidates expire.
    let t = s.now + secs(61);
    run(&mut s, &mut keys, t);
    keys[0].recv.expire(s.now);
    assert!(keys[0].recv.len() <= 3, "{}", keys[0].recv.len());
}

/// Two nodes configured to treat each other as lispers.net peers speak `lispers-cs6`:
/// suite 6 on the wire, key-id 1, no signature, and never a rekey.
#[test]
fn the_lispers_profile_keys_under_key_id_1_and_never_rekeys() {
    let (mut s, mut keys) = keyed_mesh(2, 37, |i, c| {
        c.timers.rekey_interval = secs(30);
        c.crypto_peers = vec![CryptoPeer {
            rlocs: sim::rloc(3 - i).into(),
            profile: CryptoProfile::LispersCs6,
        }];
    });
    let (n1, n2) = (sim::rloc(1), sim::rloc(2));
    let sends = keys[1].sends_to(n1);
    assert_eq!(sends.len(), 1);
    assert_eq!((sends[0].0, sends[0].1), (CipherSuite::LispersCs6, 1));
    deliver(&mut keys, s.now, 1, 0).unwrap();
    deliver(&mut keys, s.now, 0, 1).unwrap();
    let now = s.now;
    s.engine_mut(1).unwrap().rekey_now(now, n1);
    let t = s.now + secs(100);
    run(&mut s, &mut keys, t);
    assert_eq!(keys[1].sends_to(n1).len(), 1, "never rekeyed");
    assert_eq!(keys[0].sends_to(n2).len(), 1, "never rekeyed");
    deliver(&mut keys, s.now, 1, 0).unwrap();
}

/// Probing costs a bounded amount however many RLOCs are registered: with lisp-crypto,
/// registered RLOCs are probed ahead of traffic, but at most `MAX_PREEMPTIVE_PROBES` of them,
/// never more than `PROBES_PER_SECOND`, and an unanswering one that carries no traffic is not
/// probed every second once down.
#[test]
fn probing_is_bounded_however_many_rlocs_are_registered() {
    use lisp_decent::control::probe::{MAX_PREEMPTIVE_PROBES, PROBES_PER_SECOND};
    let mut cfg = sim::node_config(1, Delivery::Replicate);
    cfg.encryption = Some(CipherSuite::Aes128Gcm);
    cfg.site.allowed.push(lisp_decent::control::AllowedPrefix {
        eid: lisp_decent::mapping::EidPrefix::new(0, "1.0.0.0/8".parse().unwrap()),
        accept_more_specifics: true,
    });
    let mut e = lisp_decent::control::Engine::new(cfg);
    let mut now = Duration::ZERO;
    e.handle_timeout(now);
    // 5,000 prefixes, each at an RLOC of its own, from a registering xTR (not a member).
    for chunk in 0..100u32 {
        let records = (0..50u32)
            .map(|i| {
                let k = chunk * 50 + i;
                sim::one_rloc_record(
                    Address::Ipv4(std::net::Ipv4Addr::from(0x0100_0000 + (k << 8))),
                    24,
                    60,
                    IpAddr::from(std::net::Ipv4Addr::from(0x6440_0000 + k)),
                )
            })
            .collect();
        let b = sim::signed_register(
            records,
            [chunk as u8 + 1; 16],
            [1; 8],
            sim::SIM_KEY.as_bytes(),
        );
        e.handle_datagram(
            now,
            "198.51.100.7:4342".parse().unwrap(),
            SocketAddr::new(sim::rloc(1), 4342),
            &b,
        );
    }
    assert_eq!(e.site_db().prefixes().len(), 5000 + 1);
    // A minute of timers, one step every 10 ms; nothing ever answers.
    let mut per_second = vec![0u64; 60];
    let mut probed = std::collections::HashSet::new();
    while now < secs(60) {
        now += 10 * MS;
        e.handle_timeout(now);
        while let Some(t) = e.poll_transmit() {
            if let Ok(ControlMessage::MapRequest(q)) =
                ControlMessage::parse(kx_auth::split(&t.payload).map_or(&t.payload[..], |(m, _)| m))
                && q.probe
            {
                per_second[now.as_secs() as usize % 60] += 1;
                probed.insert(t.dst.ip());
            }
        }
    }
    assert_eq!(
        probed.len(),
        MAX_PREEMPTIVE_PROBES,
        "RLOCs probed ahead of traffic"
    );
    let max = per_second.iter().max().copied().unwrap_or(0);
    assert!(
        max <= u64::from(PROBES_PER_SECOND),
        "{max} probes in one second"
    );
    // Down after three misses, then probed at the interval (10 s), not every second: about
    // 1024 * (4 + 5) probes in the minute, far from 1024 * 57.
    let total: u64 = per_second.iter().sum();
    assert!(total < 1024 * 12, "{total} probes in a minute");
    assert_eq!(e.counters().rlocs_marked_down, MAX_PREEMPTIVE_PROBES as u64);
}
