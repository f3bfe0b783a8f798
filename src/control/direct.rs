//! A direct path between two nodes behind NATs (issue 14; beyond
//! draft-ermagan-lisp-nat-traversal-19, which sends everything through the RTR).
//!
//! The RTR sees traffic cross between two nodes behind NATs and introduces them to each
//! other: to each, a Map-Reply signed with the site key, carried in data through its
//! binding, holding the other's EID-prefix with a NAT-Traversal LCAF locator (RFC 8060
//! §4.4: its binding's address and port, its private RLOC, the RTR). Each then probes the
//! other's binding from its data port, carried in data, offering a lisp-crypto key
//! (signed, RFC 8061). Both probing at once opens both NATs' filters where their mappings
//! are endpoint-independent (the port a node is seen under is the same toward the RTR and
//! toward the peer); an answered probe agrees the key and the data plane sends to that
//! node directly. Probes go on every [`DIRECT_PROBE_INTERVAL`] (they keep the NATs' holes
//! open): three unanswered and the path goes back to the RTR; a path never answered is
//! given up after [`GIVE_UP_AFTER`] probes (a NAT whose mapping depends on the
//! destination, or filters what it was not sent to first).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use rand::RngExt;
use rand::rngs::StdRng;

use super::config::EngineConfig;
use super::counters::Counters;
use super::outbox::Outbox;
use super::probe::{find_security_key, security_key, sign_key_exchange, suite_for};
use crate::crypto::kx_auth::KxKey;
use crate::crypto::lisp_crypto::{CipherSuite, KeyPair};
use crate::dataplane::KeyEvent;
use crate::mapping::{EidKey, EidPrefix};
use crate::wire::{
    Address, ControlMessage, EidRecord, Lcaf, LcafBody, MapReply, MapRequest, NatTraversal, Nonce,
    RlocRecord,
};

/// How often a direct path is probed (and its NATs' holes kept open).
pub const DIRECT_PROBE_INTERVAL: Duration = Duration::from_secs(2);
/// Unanswered probes in a row that send the traffic back through the RTR.
pub const DIRECT_MISSES_DOWN: u8 = 3;
/// Unanswered probes of a path never (or no longer) answered before it is given up.
pub const GIVE_UP_AFTER: u8 = 6;
/// Peers tried at once, at most (introductions beyond are refused and counted).
pub const MAX_DIRECT: usize = 64;

/// One node behind another NAT we were introduced to.
#[derive(Debug)]
pub struct DirectPeer {
    pub eid: EidPrefix,
    /// Its private RLOC (the inner destination of what we carry in data to it).
    pub private: IpAddr,
    /// The data plane sends to it directly.
    pub up: bool,
    pub misses: u8,
    /// When it last answered.
    pub answered: Option<Duration>,
    /// Our key pair: a fresh one per probe until one is answered (so both ends derive
    /// with the same probe's nonce, RFC 8061 §7), then the agreed one, offered again.
    pair: KeyPair,
    agreed: bool,
    suite: Option<CipherSuite>,
    outstanding: Option<Nonce>,
    next: Duration,
    /// Data sent on the path got no answer: probed every [`CHECK_INTERVAL`], back to the
    /// RTR after [`CHECK_MISSES`].
    checking: bool,
}

/// Probes of a path being checked, this far apart.
pub const CHECK_INTERVAL: Duration = Duration::from_millis(250);
/// Unanswered probes of a path being checked that send its traffic back to the RTR.
pub const CHECK_MISSES: u8 = 2;

/// Our direct paths, by the binding each peer is reached at.
#[derive(Debug, Default)]
pub struct Direct {
    peers: HashMap<SocketAddr, DirectPeer>,
    /// Bindings given up, and when: not tried again for [`RETRY_AFTER`] (the RTR
    /// introduces a pair again while it relays between them), at most [`MAX_DIRECT`].
    given_up: HashMap<SocketAddr, Duration>,
}

/// How long a binding whose direct path was given up is not tried again.
pub const RETRY_AFTER: Duration = Duration::from_secs(300);

/// An introduction: the Map-Reply an RTR sends a node behind a NAT about the node at
/// `binding` (`eids`, private RLOC `private`), signed with the site key `kx`.
pub fn introduction(
    eids: &[EidPrefix],
    binding: SocketAddr,
    private: IpAddr,
    rtr: IpAddr,
    nonce: Nonce,
    kx: Option<&KxKey>,
) -> Option<Vec<u8>> {
    let nat = NatTraversal {
        ms_port: 0,
        etr_port: binding.port(),
        global_etr_rloc: Address::from(binding.ip()),
        ms_rloc: Address::None,
        private_etr_rloc: Address::from(private),
        rtr_rlocs: vec![Address::from(rtr)],
    };
    let locator = Address::Lcaf(Box::new(Lcaf::new(LcafBody::NatTraversal(nat))));
    let records = eids
        .iter()
        .map(|p| {
            let (eid, ml) = p.to_wire();
            EidRecord::new(
                eid,
                ml,
                1,
                vec![RlocRecord {
                    priority: 1,
                    weight: 100,
                    m_priority: 255,
                    m_weight: 0,
                    flags: RlocRecord::REACHABLE,
                    locator: locator.clone(),
                }],
            )
        })
        .collect();
    let mut bytes = ControlMessage::MapReply(MapReply::new(nonce, records))
        .to_bytes()
        .ok()?;
    kx?.sign(&mut bytes);
    Some(bytes)
}

/// The peers an introduction names: each record's EID-prefix, binding and private RLOC.
pub(crate) fn introduced(r: &MapReply) -> Vec<(EidPrefix, SocketAddr, IpAddr)> {
    let mut v = Vec::new();
    for rec in &r.records {
        let Some(EidKey::Prefix(eid)) = EidKey::from_wire(&rec.eid, rec.mask_len) else {
            continue;
        };
        for l in &rec.rlocs {
            if let Address::Lcaf(lcaf) = &l.locator
                && let LcafBody::NatTraversal(n) = &lcaf.body
                && let (Some(global), Some(private)) =
                    (n.global_etr_rloc.ip(), n.private_etr_rloc.ip())
            {
                v.push((eid, SocketAddr::new(global, n.etr_port), private));
            }
        }
    }
    v
}

impl Direct {
    /// The peers, by binding, for the views.
    pub fn peers(&self) -> &HashMap<SocketAddr, DirectPeer> {
        &self.peers
    }

    /// Whether `nonce` is one of our outstanding direct probes.
    pub fn owns(&self, nonce: &Nonce) -> bool {
        self.peers.values().any(|p| p.outstanding == Some(*nonce))
    }

    /// Our RTR introduced us to the node of `eid` at `binding`: probe it now.
    pub(crate) fn introduce(
        &mut self,
        now: Duration,
        cfg: &EngineConfig,
        (eid, binding, private): (EidPrefix, SocketAddr, IpAddr),
        counters: &mut Counters,
        rng: &mut StdRng,
    ) {
        if let Some(p) = self.peers.get_mut(&binding) {
            p.eid = eid;
            p.next = p.next.min(now);
            return;
        }
        self.given_up
            .retain(|_, t| now.saturating_sub(*t) < RETRY_AFTER);
        if self.given_up.contains_key(&binding) {
            return;
        }
        if self.peers.len() >= MAX_DIRECT {
            counters.direct_refused += 1;
            return;
        }
        counters.direct_introductions += 1;
        let suite = suite_for(cfg, super::probe::crypto_profile(cfg, binding.ip()));
        self.peers.insert(
            binding,
            DirectPeer {
                eid,
                private,
                up: false,
                misses: 0,
                answered: None,
                pair: KeyPair::from_secret(rng.random()),
                agreed: false,
                suite,
                outstanding: None,
                next: now,
                checking: false,
            },
        );
    }

    /// A signed probe of the node whose private RLOC is `private` came from `from`: when
    /// that is the address of its NAT but another port than the binding we probe (its NAT
    /// mapped the flow toward us anew, e.g. because our first probe arrived before its
    /// own left), it is probed there instead.
    pub(crate) fn seen_at(&mut self, now: Duration, from: SocketAddr, private: IpAddr) {
        let Some(old) = self
            .peers
            .iter()
            .find(|(at, p)| p.private == private && at.ip() == from.ip() && **at != from && !p.up)
            .map(|(at, _)| *at)
        else {
            return;
        };
        if self.peers.contains_key(&from) {
            return;
        }
        if let Some(mut p) = self.peers.remove(&old) {
            p.outstanding = None;
            p.misses = 0;
            p.next = now;
            self.peers.insert(from, p);
        }
    }

    /// The data plane sends on the path to `at` and hears nothing back: probe it now, and
    /// at [`CHECK_INTERVAL`]s.
    pub(crate) fn check_now(&mut self, now: Duration, at: SocketAddr) {
        if let Some(p) = self.peers.get_mut(&at)
            && p.up
            && !p.checking
        {
            p.checking = true;
            if p.outstanding.is_none() {
                p.next = now;
            }
        }
    }

    /// When the next probe is due.
    pub fn next_due(&self) -> Option<Duration> {
        self.peers.values().map(|p| p.next).min()
    }

    /// The probes due: to each peer's binding, carried in data from our data port,
    /// offering our key (signed). A peer that missed too many goes back to the RTR, or is
    /// given up.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn send_due(
        &mut self,
        now: Duration,
        cfg: &EngineConfig,
        kx: Option<&KxKey>,
        counters: &mut Counters,
        rng: &mut StdRng,
        out: &mut Outbox,
    ) {
        let mut gone = Vec::new();
        for (at, p) in self.peers.iter_mut() {
            if p.next > now {
                continue;
            }
            if p.outstanding.take().is_some() {
                p.misses = p.misses.saturating_add(1);
                let down = if p.checking {
                    CHECK_MISSES
                } else {
                    DIRECT_MISSES_DOWN
                };
                if p.up && p.misses >= down {
                    p.up = false;
                    p.checking = false;
                    counters.direct_paths_down += 1;
                    out.keys.push_back(KeyEvent::Bind {
                        eid: p.eid,
                        at: None,
                    });
                }
                if !p.up && p.misses >= GIVE_UP_AFTER {
                    counters.direct_given_up += 1;
                    gone.push(*at);
                    continue;
                }
            }
            let Some(own) = super::probe::source_rloc(cfg, at.ip()) else {
                continue;
            };
            let nonce: Nonce = rng.random();
            if !p.agreed && p.misses > 0 {
                p.pair = KeyPair::from_secret(rng.random());
            }
            let itr_rloc = match p.suite {
                Some(suite) => security_key(suite, p.pair.public(), 1, own),
                None => Address::from(own),
            };
            let (eid, ml) = p.eid.to_wire();
            let mut q = MapRequest::new(nonce, Address::None, itr_rloc, eid, ml);
            q.probe = true;
            let Ok(mut payload) = ControlMessage::MapRequest(q).to_bytes() else {
                continue;
            };
            sign_key_exchange(kx, &mut payload);
            p.outstanding = Some(nonce);
            p.next = now
                + if p.checking {
                    CHECK_INTERVAL
                } else {
                    DIRECT_PROBE_INTERVAL
                };
            counters.direct_probes_sent += 1;
            let n: u32 = rng.random();
            super::rtr::send_in_data(out, own, p.private, *at, n, &payload);
        }
        for at in gone {
            self.peers.remove(&at);
            if self.given_up.len() < MAX_DIRECT {
                self.given_up.insert(at, now);
            }
        }
    }

    /// The answer to one of our direct probes, from `from`: with the peer's key (signed
    /// with the site key) the key is agreed and the path is up.
    pub(crate) fn answered(
        &mut self,
        now: Duration,
        from: SocketAddr,
        r: &MapReply,
        signed: bool,
        counters: &mut Counters,
        out: &mut Outbox,
    ) {
        let Some((at, p)) = self
            .peers
            .iter_mut()
            .find(|(_, p)| p.outstanding == Some(r.nonce))
        else {
            return;
        };
        if *at != from {
            // Answered from elsewhere: not the path we probe.
            counters.direct_probes_misrouted += 1;
            return;
        }
        p.outstanding = None;
        if let Some(suite) = p.suite.filter(|_| !p.agreed) {
            let offered = r
                .records
                .iter()
                .flat_map(|rec| rec.rlocs.iter())
                .find_map(|l| find_security_key(&l.locator));
            let Some(k) = offered.filter(|k| signed && k.suite == suite.id()) else {
                counters.direct_probes_keyless += 1;
                return;
            };
            let Ok(key) = p.pair.key_material(suite, &k.public, &r.nonce) else {
                return;
            };
            p.agreed = true;
            out.keys.push_back(KeyEvent::Direct {
                at: *at,
                suite,
                key_id: 1,
                key,
            });
        }
        p.misses = 0;
        p.checking = false;
        p.answered = Some(now);
        if !p.up {
            p.up = true;
            counters.direct_paths_up += 1;
            out.keys.push_back(KeyEvent::Bind {
                eid: p.eid,
                at: Some(*at),
            });
        }
    }

    /// We left the RTR (a public address now): every direct path goes.
    pub(crate) fn clear(&mut self, out: &mut Outbox) {
        self.given_up.clear();
        for (_, p) in self.peers.drain() {
            if p.up {
                out.keys.push_back(KeyEvent::Bind {
                    eid: p.eid,
                    at: None,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::kx_auth;

    /// An introduction survives the wire: the records name each EID-prefix with the
    /// binding and private RLOC, and it verifies only under the site key it was signed with.
    #[test]
    fn an_introduction_reads_back_and_is_signed() {
        let kx = KxKey::from_site_key(b"site key");
        let eids = [
            EidPrefix::new(0, "10.3.0.0/16".parse().unwrap()),
            EidPrefix::new(7, "10.30.0.0/16".parse().unwrap()),
        ];
        let at: SocketAddr = "192.0.2.252:4341".parse().unwrap();
        let private: IpAddr = "10.97.0.2".parse().unwrap();
        let rtr: IpAddr = "192.0.2.1".parse().unwrap();
        let bytes = introduction(&eids, at, private, rtr, [9; 8], Some(&kx)).unwrap();
        assert!(kx.verify(&bytes));
        assert!(!KxKey::from_site_key(b"another key").verify(&bytes));
        let (message, _) = kx_auth::split(&bytes).unwrap();
        let Ok(ControlMessage::MapReply(r)) = ControlMessage::parse(message) else {
            panic!("not a Map-Reply");
        };
        assert_eq!(
            introduced(&r),
            vec![(eids[0], at, private), (eids[1], at, private)]
        );
        // Without a site key nothing is sent.
        assert!(introduction(&eids, at, private, rtr, [9; 8], None).is_none());
    }
}
