//! NAT detection (draft-ermagan-lisp-nat-traversal-19 §4.1, §4.2, §5.1, §5.2): every node
//! asks a member of its peer group, from each of its RLOCs, where its control messages come
//! from (Info-Request); the member answers with the source address and port it saw
//! (Info-Reply, NAT-Traversal LCAF, RFC 8060 §4.4). A node whose answer differs from the
//! address and port the request left from is behind a NAT. Every member answers, as the
//! Map-Server it is (RFC 9962 §1). Both messages are signed with the site key (the draft's
//! Map-Register authentication): an unsigned or wrongly signed one is dropped and counted,
//! so a spoofed request cannot make a member send a reply to someone else.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use rand::RngExt;
use rand::rngs::StdRng;

use super::config::EngineConfig;
use super::counters::Counters;
use super::outbox::Outbox;
use crate::wire::{
    Address, Authentication, CONTROL_PORT, ControlMessage, InfoMessage, Lcaf, LcafBody, Nonce,
};

/// How often each RLOC asks again (lispers.net asks every 15 s; a NAT's binding changing
/// under a node is seen within this).
pub const INFO_INTERVAL: Duration = Duration::from_secs(60);
/// The next try when the last request went unanswered (the member was not up yet, or the
/// datagram was lost), or nobody could be asked.
pub const INFO_RETRY: Duration = Duration::from_secs(5);
/// The Info-Reply's TTL: minutes the asker may keep what it says (draft §4.1).
pub const INFO_TTL_MINS: u32 = 60;
/// Requests in flight, at most (one per RLOC is all a node sends).
const MAX_OUTSTANDING: usize = 64;
/// Nonces of requests answered, remembered this long and at most this many: a signed
/// request captured and sent again (from a spoofed source, to reflect the reply) is not
/// answered twice. A sender's own retries carry fresh nonces.
const ANSWERED_FOR: Duration = Duration::from_secs(120);
const MAX_ANSWERED: usize = 4096;

/// What a member answered for one of our RLOCs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatStatus {
    /// The address and port the Info-Request left from.
    pub local: SocketAddr,
    /// The address and port the member saw it come from.
    pub global: SocketAddr,
    /// The member that answered.
    pub asked: IpAddr,
    /// The RTRs it offered (draft §4.2).
    pub rtrs: Vec<IpAddr>,
    /// `global` differs from `local`: a NAT translated it.
    pub behind_nat: bool,
    /// When the answer came.
    pub at: Duration,
}

/// A request in flight: from which of our RLOCs and port, to whom, when.
#[derive(Debug, Clone, Copy)]
struct Asked {
    local: IpAddr,
    member: IpAddr,
    sent: Duration,
}

/// Both sides of NAT detection: our requests and what they found, and the answers to
/// other nodes' requests.
#[derive(Debug, Default)]
pub struct NatDetector {
    outstanding: HashMap<Nonce, Asked>,
    /// What was found, per RLOC of ours.
    status: BTreeMap<IpAddr, NatStatus>,
    next_due: Duration,
    /// When the last round of requests left.
    round: Duration,
    /// Nonces of the requests we answered, and when ([`ANSWERED_FOR`], [`MAX_ANSWERED`]).
    answered: HashMap<Nonce, Duration>,
}

impl NatDetector {
    /// What was found, per RLOC of ours.
    pub fn status(&self) -> &BTreeMap<IpAddr, NatStatus> {
        &self.status
    }

    /// Whether any RLOC of ours is behind a NAT.
    pub fn behind_nat(&self) -> bool {
        self.status.values().any(|s| s.behind_nat)
    }

    /// The RTR to register through (draft §5.1.1): while an RLOC of ours is behind a NAT,
    /// the first RTR its answer offered that is not ours (keeping `current` while it is
    /// still offered); `None` when no RLOC is behind a NAT or nobody offered one.
    pub fn rtr(&self, cfg: &EngineConfig, current: Option<IpAddr>) -> Option<IpAddr> {
        if !cfg.nat.use_rtr {
            return None;
        }
        let offered: Vec<IpAddr> = self
            .status
            .values()
            .filter(|s| s.behind_nat)
            .flat_map(|s| s.rtrs.iter().copied())
            .filter(|r| !super::probe::is_own_rloc(cfg, *r))
            .collect();
        current
            .filter(|c| offered.contains(c))
            .or_else(|| offered.first().copied())
    }

    /// When the next round of requests is due.
    pub fn next_due(&self) -> Duration {
        self.next_due
    }

    /// Our RLOCs changed: ask again at once (a new address may be behind another NAT, or
    /// none); what was found for addresses we no longer have is forgotten.
    pub fn rlocs_changed(&mut self, now: Duration, cfg: &EngineConfig) {
        self.status
            .retain(|a, _| cfg.rlocs.iter().any(|r| r.address == *a));
        self.next_due = now;
    }

    /// A round of Info-Requests when one is due: from each of our RLOCs to the first of
    /// `candidates` (seeds first, then members) of its family that is not ours, signed
    /// with our site key. Without a site key nothing is sent (no member would answer).
    pub(crate) fn send_due(
        &mut self,
        now: Duration,
        cfg: &EngineConfig,
        candidates: &[IpAddr],
        counters: &mut Counters,
        rng: &mut StdRng,
        out: &mut Outbox,
    ) {
        if now < self.next_due {
            return;
        }
        let Some((key, alg)) = cfg.site.own_key.clone() else {
            self.next_due = now + INFO_INTERVAL;
            return;
        };
        // Until every RLOC has its answer, asked again soon; the answers push it out to
        // the interval (`read_reply`).
        self.round = now;
        self.next_due = now + INFO_RETRY;
        // Requests never answered are dropped by age; the table stays bounded.
        self.outstanding
            .retain(|_, a| now.saturating_sub(a.sent) < INFO_RETRY * 2);
        let (eid, mask_len) = match cfg.database.first() {
            Some(d) => d.eid.to_wire(),
            None => (Address::None, 0),
        };
        for local in cfg.rlocs.iter().map(|r| r.address) {
            let Some(member) = candidates
                .iter()
                .copied()
                .find(|c| c.is_ipv4() == local.is_ipv4() && !super::probe::is_own_rloc(cfg, *c))
            else {
                continue;
            };
            if self.outstanding.len() >= MAX_OUTSTANDING {
                break;
            }
            let nonce: Nonce = rng.random();
            let m = InfoMessage {
                reply: false,
                reserved: 0,
                nonce,
                auth: Authentication::unsigned(key.key_id.unwrap_or(0), alg),
                ttl: INFO_TTL_MINS,
                reserved2: 0,
                mask_len,
                eid: eid.clone(),
                payload: Address::None,
            };
            let Some(bytes) =
                super::map_server::signed(&ControlMessage::Info(m), Some(&key.secret[..]))
            else {
                continue;
            };
            self.outstanding.insert(
                nonce,
                Asked {
                    local,
                    member,
                    sent: now,
                },
            );
            counters.info_requests_sent += 1;
            out.control(Some(local), SocketAddr::new(member, CONTROL_PORT), bytes);
        }
    }

    /// An Info-Request or Info-Reply from `src` that arrived on our `local` address and
    /// port (`bytes` its wire form): a request is answered, a reply to one of ours read.
    /// Both must verify with a site key.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn handle(
        &mut self,
        now: Duration,
        cfg: &EngineConfig,
        src: SocketAddr,
        local: SocketAddr,
        bytes: &[u8],
        m: &InfoMessage,
        counters: &mut Counters,
        out: &mut Outbox,
    ) {
        if m.reply {
            counters.info_replies_received += 1;
        } else {
            counters.info_requests_received += 1;
        }
        if cfg.site.keys.verify(bytes).is_err() {
            counters.info_unauthenticated += 1;
            return;
        }
        if m.reply {
            self.read_reply(now, local, m, counters);
            // Every RLOC answered in this round: the next one an interval after it began.
            let answered = cfg.rlocs.iter().all(|r| {
                self.status
                    .get(&r.address)
                    .is_some_and(|s| s.at >= self.round)
            });
            if answered {
                self.next_due = self.next_due.max(self.round + INFO_INTERVAL);
            }
        } else {
            if self.answered.len() >= MAX_ANSWERED {
                self.answered
                    .retain(|_, t| now.saturating_sub(*t) < ANSWERED_FOR);
            }
            if self.answered.contains_key(&m.nonce) || self.answered.len() >= MAX_ANSWERED {
                counters.info_requests_replayed += 1;
                return;
            }
            self.answered.insert(m.nonce, now);
            answer(cfg, src, local, m, counters, out);
        }
    }

    fn read_reply(&mut self, now: Duration, local: SocketAddr, m: &InfoMessage, c: &mut Counters) {
        let Some(asked) = self.outstanding.remove(&m.nonce) else {
            c.info_replies_unmatched += 1;
            return;
        };
        let Address::Lcaf(l) = &m.payload else {
            c.info_replies_unmatched += 1;
            return;
        };
        let LcafBody::NatTraversal(n) = &l.body else {
            c.info_replies_unmatched += 1;
            return;
        };
        let Some(global) = n.global_etr_rloc.ip() else {
            c.info_replies_unmatched += 1;
            return;
        };
        let from = SocketAddr::new(asked.local, local.port());
        let global = SocketAddr::new(global, n.etr_port);
        let behind_nat = global != from;
        let was = self.status.get(&asked.local).map(|s| s.behind_nat);
        if behind_nat && was != Some(true) {
            c.nat_detected += 1;
        }
        self.status.insert(
            asked.local,
            NatStatus {
                local: from,
                global,
                asked: asked.member,
                rtrs: n.rtr_rlocs.iter().filter_map(Address::ip).collect(),
                behind_nat,
                at: now,
            },
        );
    }
}

/// The RTRs we offer a node asking from `asker` (draft §5.2): our RLOC of its family when we
/// serve as RTR, then the configured ones of its family.
pub(crate) fn rtrs_offered(cfg: &EngineConfig, asker: IpAddr) -> Vec<IpAddr> {
    let mut v = Vec::new();
    if cfg.nat.rtr
        && cfg.via_rtr.is_none()
        && let Some(own) = super::probe::source_rloc(cfg, asker)
    {
        v.push(own);
    }
    for r in &cfg.nat.rtrs {
        if r.is_ipv4() == asker.is_ipv4() && !v.contains(r) {
            v.push(*r);
        }
    }
    v
}

/// The Info-Reply to a verified Info-Request (draft §5.2): the request's nonce, key-id, TTL
/// and EID, and a NAT-Traversal LCAF with the address and port it came from, the address
/// and port it arrived on, no private address (AFI 0) and the RTRs of the asker's family
/// we offer (ourselves when we serve as one, then `[nat] rtrs`), signed with our site key
/// and sent back to where the request came from.
fn answer(
    cfg: &EngineConfig,
    src: SocketAddr,
    local: SocketAddr,
    m: &InfoMessage,
    counters: &mut Counters,
    out: &mut Outbox,
) {
    let Some((key, alg)) = cfg.site.own_key.clone() else {
        return;
    };
    let ms = if local.ip().is_unspecified() || local.ip().is_multicast() {
        super::probe::source_rloc(cfg, src.ip())
    } else {
        Some(local.ip())
    };
    let Some(ms) = ms else { return };
    let nat = crate::wire::NatTraversal {
        ms_port: local.port(),
        etr_port: src.port(),
        global_etr_rloc: Address::from(src.ip()),
        ms_rloc: Address::from(ms),
        private_etr_rloc: Address::None,
        rtr_rlocs: rtrs_offered(cfg, src.ip())
            .into_iter()
            .map(Address::from)
            .collect(),
    };
    let reply = InfoMessage {
        reply: true,
        reserved: 0,
        nonce: m.nonce,
        auth: Authentication::unsigned(key.key_id.unwrap_or(m.auth.key_id), alg),
        ttl: m.ttl,
        reserved2: 0,
        mask_len: m.mask_len,
        eid: m.eid.clone(),
        payload: Address::Lcaf(Box::new(Lcaf::new(LcafBody::NatTraversal(nat)))),
    };
    let Some(bytes) =
        super::map_server::signed(&ControlMessage::Info(reply), Some(&key.secret[..]))
    else {
        return;
    };
    counters.info_replies_sent += 1;
    out.control(Some(ms), src, bytes);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::Delivery;
    use crate::sim::{node_config, rloc};
    use rand::SeedableRng;

    fn reply(cfg: &EngineConfig, nonce: Nonce, payload: Address) -> (InfoMessage, Vec<u8>) {
        let (key, alg) = cfg.site.own_key.clone().unwrap();
        let m = InfoMessage {
            reply: true,
            reserved: 0,
            nonce,
            auth: Authentication::unsigned(key.key_id.unwrap(), alg),
            ttl: 1,
            reserved2: 0,
            mask_len: 0,
            eid: Address::None,
            payload,
        };
        let bytes =
            super::super::map_server::signed(&ControlMessage::Info(m.clone()), Some(&key.secret))
                .unwrap();
        (m, bytes)
    }

    /// Our request goes to the seed, signed; only a verified reply to it, carrying a
    /// NAT-Traversal LCAF, is taken, once: another nonce, another payload or the same
    /// reply again are counted and change nothing.
    #[test]
    fn only_a_signed_reply_to_our_request_is_taken_once() {
        let cfg = node_config(2, Delivery::Replicate);
        let (mut d, mut c, mut out) = (
            NatDetector::default(),
            Counters::default(),
            Outbox::default(),
        );
        let mut rng = StdRng::seed_from_u64(1);
        d.send_due(
            Duration::ZERO,
            &cfg,
            &[rloc(2), rloc(1)],
            &mut c,
            &mut rng,
            &mut out,
        );
        let t = out.transmits.pop_front().expect("an Info-Request");
        assert_eq!(
            (t.src, t.dst),
            (Some(rloc(2)), SocketAddr::new(rloc(1), CONTROL_PORT))
        );
        assert!(cfg.site.keys.verify(&t.payload).is_ok(), "signed");
        let Ok(ControlMessage::Info(q)) = ControlMessage::parse(&t.payload) else {
            panic!("not an Info-Request")
        };
        assert!(!q.reply && q.payload == Address::None);
        assert_eq!(d.next_due(), INFO_RETRY, "asked again soon until answered");
        let local = SocketAddr::new(rloc(2), CONTROL_PORT);
        let seen = SocketAddr::new("203.0.113.9".parse().unwrap(), 40000);
        let nat = Address::Lcaf(Box::new(Lcaf::new(LcafBody::NatTraversal(
            crate::wire::NatTraversal {
                ms_port: CONTROL_PORT,
                etr_port: seen.port(),
                global_etr_rloc: Address::from(seen.ip()),
                ms_rloc: Address::from(rloc(1)),
                private_etr_rloc: Address::None,
                rtr_rlocs: vec![],
            },
        ))));
        let from = SocketAddr::new(rloc(1), CONTROL_PORT);
        for (nonce, payload) in [([9; 8], nat.clone()), (q.nonce, Address::None)] {
            let (m, b) = reply(&cfg, nonce, payload);
            d.handle(Duration::ZERO, &cfg, from, local, &b, &m, &mut c, &mut out);
        }
        assert_eq!(c.info_replies_unmatched, 2);
        assert!(d.status().is_empty());
        // The request was used up by the reply without a LCAF: ask again, then answer.
        d.send_due(INFO_INTERVAL, &cfg, &[rloc(1)], &mut c, &mut rng, &mut out);
        let Ok(ControlMessage::Info(q)) =
            ControlMessage::parse(&out.transmits.pop_front().unwrap().payload)
        else {
            panic!("not an Info-Request")
        };
        let (m, b) = reply(&cfg, q.nonce, nat);
        d.handle(INFO_INTERVAL, &cfg, from, local, &b, &m, &mut c, &mut out);
        let st = &d.status()[&rloc(2)];
        assert_eq!((st.local, st.global, st.behind_nat), (local, seen, true));
        assert_eq!(c.nat_detected, 1);
        assert_eq!(
            d.next_due(),
            INFO_INTERVAL * 2,
            "answered: the next round an interval on"
        );
        d.handle(INFO_INTERVAL, &cfg, from, local, &b, &m, &mut c, &mut out);
        assert_eq!(c.info_replies_unmatched, 3, "a replayed reply");
        assert!(
            out.transmits.pop_front().is_none(),
            "replies are never answered"
        );
    }
}
