//! NAT traversal through a Re-encapsulating Tunnel Router, control plane
//! (draft-ermagan-lisp-nat-traversal-19 §5.1.1, §5.3), in a peer group where every member
//! is a Map-Server.
//!
//! A node that NAT detection found behind a NAT ([`super::nat`]) takes an RTR its
//! Info-Reply offered and then:
//! - registers the RTR's RLOC as its locator (priority 254, as lispers.net does, R bit
//!   set), its own RLOCs with priority 255 (never used for unicast: RFC 9301 §5.4), so
//!   every member sends its traffic to the RTR;
//! - sends everything to the RTR from its data port, and its control to the RTR carried
//!   in data (Instance-ID 0xFFFFFF) from there too: its registers, and the RLOC-probes that
//!   agree its lisp-crypto keys with the RTR and keep the NAT binding open. One binding
//!   therefore carries all of it, through any NAT that lets answers back in.
//!
//! The RTR learns where such a node is from its registers (verified with the site key,
//! replay-checked, arriving through the binding) and keys it by that binding; its probes,
//! arriving the same way, are answered the same way. Bindings are bounded and expire.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::config::EngineConfig;
use super::counters::Counters;
use super::outbox::{Outbox, Transmit};
use crate::dataplane::KeyEvent;
use crate::mapping::{EidKey, EidPrefix};
use crate::wire::{
    CONTROL_INSTANCE_ID, CONTROL_PORT, DATA_PORT, DataHeader, IpUdp, MapRegister, RlocRecord,
};

/// Priority of an RTR locator in a mapping (lispers.net's, PROTOCOL.md §6.5).
pub const RTR_PRIORITY: u8 = 254;
/// EID-prefixes bound to nodes behind NATs, at most.
pub const MAX_BOUND: usize = crate::dataplane::rtr::MAX_BINDINGS;
/// Inner TTL of control carried in data to or from an RTR.
const INNER_TTL: u8 = 64;

/// A prefix registered through us by a node behind a NAT: where, and until when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bound {
    pub at: SocketAddr,
    /// The node's own (private) RLOC, the inner source of its register.
    pub private: IpAddr,
    pub xtr_id: [u8; 16],
    pub expires: Duration,
}

/// The RTR's table of nodes behind NATs.
#[derive(Debug, Default)]
pub struct Relay {
    bound: HashMap<EidPrefix, Bound>,
}

impl Relay {
    /// The prefixes bound, for the views.
    pub fn bound(&self) -> &HashMap<EidPrefix, Bound> {
        &self.bound
    }

    /// A verified register that arrived through the binding `at`: each record listing one
    /// of our RLOCs is bound there (told to the data plane when new or moved), each record
    /// not listing us any more is unbound.
    pub(crate) fn learn(
        &mut self,
        now: Duration,
        cfg: &EngineConfig,
        (at, private): (SocketAddr, IpAddr),
        reg: &MapRegister,
        counters: &mut Counters,
        out: &mut Outbox,
    ) {
        for r in &reg.records {
            let Some(EidKey::Prefix(eid)) = EidKey::from_wire(&r.eid, r.mask_len) else {
                continue;
            };
            let via_us = r.ttl > 0
                && r.rlocs.iter().any(|l| {
                    l.locator
                        .ip()
                        .is_some_and(|a| super::probe::is_own_rloc(cfg, a))
                });
            if !via_us {
                if self.bound.remove(&eid).is_some() {
                    out.keys.push_back(KeyEvent::Bind { eid, at: None });
                }
                continue;
            }
            if !self.bound.contains_key(&eid) && self.bound.len() >= MAX_BOUND {
                counters.rtr_bindings_refused += 1;
                continue;
            }
            let expires = now + super::map_server::lifetime(reg, r, cfg.timers.register_interval);
            let b = Bound {
                at,
                private,
                xtr_id: reg.trailer.as_ref().map(|t| t.xtr_id).unwrap_or_default(),
                expires,
            };
            if self.bound.insert(eid, b).is_none_or(|old| old.at != at) {
                counters.rtr_bindings += 1;
                out.keys.push_back(KeyEvent::Bind { eid, at: Some(at) });
            }
        }
    }

    /// The EID-prefixes bound at `at`, and the private RLOC of the node there.
    pub(crate) fn at(&self, at: SocketAddr) -> (Vec<EidPrefix>, Option<IpAddr>) {
        let mut eids = Vec::new();
        let mut private = None;
        for (e, b) in &self.bound {
            if b.at == at {
                eids.push(*e);
                private = Some(b.private);
            }
        }
        eids.sort();
        (eids, private)
    }

    /// Forgets the bindings whose registration ran out.
    pub(crate) fn expire(&mut self, now: Duration, out: &mut Outbox) {
        self.bound.retain(|eid, b| {
            let keep = now < b.expires;
            if !keep {
                out.keys.push_back(KeyEvent::Bind {
                    eid: *eid,
                    at: None,
                });
            }
            keep
        });
    }
}

/// Our mapping's locators while we register through `rtr` (draft §5.1.1): the RTR's, then
/// our own with priority 255 (kept for the views and for the RTR; never used for unicast).
pub(crate) fn locators_via(rtr: IpAddr, own: Vec<RlocRecord>) -> Vec<RlocRecord> {
    let mut v = vec![RlocRecord {
        priority: RTR_PRIORITY,
        weight: 100,
        m_priority: 255,
        m_weight: 0,
        flags: RlocRecord::REACHABLE,
        locator: crate::wire::Address::from(rtr),
    }];
    v.extend(own.into_iter().map(|mut r| {
        r.priority = 255;
        r.flags &= !RlocRecord::REACHABLE;
        r
    }));
    v
}

/// A control message carried in data (Instance-ID 0xFFFFFF, never encrypted): the LISP
/// header, an inner IP / UDP header from `src` to `dst` (ports 4342), the message.
pub fn in_data(src: IpAddr, dst: IpAddr, ttl: u8, nonce: u32, message: &[u8]) -> Option<Vec<u8>> {
    let mut pkt = vec![0u8; DataHeader::LEN];
    DataHeader::with_instance(CONTROL_INSTANCE_ID, nonce & 0x00ff_ffff, 0)
        .emit(&mut pkt)
        .ok()?;
    IpUdp::new(src, dst, ttl, CONTROL_PORT, CONTROL_PORT)
        .ok()?
        .emit(message, &mut pkt)
        .ok()?;
    Some(pkt)
}

/// Sends `message` to `to` carried in data from our data port (`src`: our RLOC), so it
/// takes the NAT binding data takes: a node behind a NAT to its RTR, an RTR back to it.
pub(crate) fn send_in_data(
    out: &mut Outbox,
    src: IpAddr,
    inner_dst: IpAddr,
    to: SocketAddr,
    nonce: u32,
    message: &[u8],
) {
    if let Some(payload) = in_data(src, inner_dst, INNER_TTL, nonce, message) {
        out.push(Transmit {
            src: Some(src),
            src_port: DATA_PORT,
            dst: to,
            ttl: None,
            payload,
        });
    }
}
