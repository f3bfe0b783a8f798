//! Both ends of NAT traversal in the data plane (draft-ermagan-lisp-nat-traversal-19
//! §5.1.3, §5.3.1), sans-IO.
//!
//! - A node behind a NAT sends everything to its RTR, from the data port (§5.1.1: its
//!   default mapping is the RTR), so one NAT binding carries its data, its control carried
//!   in data and what comes back.
//! - The RTR knows each node behind a NAT by its binding (the NAT's address and port its
//!   packets come from): the EID-prefixes it registered through us, and the keys agreed
//!   with it from there. Several nodes behind one NAT share its address, so keys go by
//!   address *and* port here, not by address as an ETR's do (RFC 8061 §9). What arrives
//!   from a binding, or for an EID registered through us, is decapsulated and encapsulated
//!   again (§5.3.1): to the binding when the destination is behind a NAT, else to the
//!   destination's RLOC, like an ITR.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::ops::Range;
use std::time::Duration;

use super::keys::{Install, RecvKeys};
use crate::crypto::lisp_crypto::{CryptoError, RecvKey, SendKey};
use crate::mapping::{EidPrefix, PrefixTable};

/// Key material (RFC 8061 §7), which names a key here.
type Material = [u8; 32];

/// Bindings with keys, at most (the control plane binds at most as many EIDs).
pub const MAX_BINDINGS: usize = 1024;

/// The RTR's side: who is behind which binding, and the keys per binding.
#[derive(Default)]
pub struct Relay {
    eids: PrefixTable<SocketAddr>,
    recv: RecvKeys<SocketAddr>,
    /// Per binding: the key (by its material) that seals what we send there (none yet:
    /// only receiving), and the newest one, which takes over when the node's first packet
    /// under the matching key-id arrives (the node uses its new key only once it has our
    /// answer, so ours is then known to it too).
    bindings: HashMap<SocketAddr, (Option<Material>, Option<Material>)>,
    /// One send key per exchange, however many bindings it was agreed from: a node whose
    /// NAT gave it a new binding offers the same key from there, and a second send key
    /// from the same material would repeat its IVs (RFC 8061 §9), which the node's
    /// anti-replay window would refuse too.
    sends: HashMap<[u8; 32], SendKey>,
    /// The bindings `eids` names (clear data from them is relayed too).
    at: HashSet<SocketAddr>,
    /// Behind a NAT, per direct path: when we last sent on it, last heard on it, and last
    /// asked for it to be checked.
    direct: HashMap<SocketAddr, (Duration, Duration, Duration)>,
}

/// A direct path sent on while nothing came back for this long is checked.
pub const DIRECT_SILENCE: Duration = Duration::from_millis(300);

impl Relay {
    /// Nothing relayed: the per-packet checks are skipped.
    pub fn is_empty(&self) -> bool {
        self.eids.is_empty() && self.bindings.is_empty()
    }

    /// Nodes behind NATs registered through us.
    pub fn bound(&self) -> usize {
        self.eids.len()
    }

    /// `eid` is reached at `at` (`None`: no longer).
    pub fn bind(&mut self, eid: EidPrefix, at: Option<SocketAddr>) {
        match at {
            Some(at) if self.eids.len() < MAX_BINDINGS || self.eids.get(&eid).is_some() => {
                self.eids.insert(eid, at);
            }
            Some(_) => {}
            None => {
                self.eids.remove(&eid);
            }
        }
        self.at = self.eids.iter().map(|(_, a)| *a).collect();
        let at = &self.at;
        self.direct.retain(|a, _| at.contains(a));
    }

    /// The binding of the node behind a NAT that registered the EID `dst` through us.
    pub fn binding_of(&self, iid: u32, dst: std::net::IpAddr) -> Option<SocketAddr> {
        self.eids.lookup(iid, dst).map(|(_, at)| *at)
    }

    /// Whether `from` is a binding: a node behind a NAT registered through us from there,
    /// or agreed keys with us from there.
    pub fn is_binding(&self, from: &SocketAddr) -> bool {
        self.bindings.contains_key(from) || self.at.contains(from)
    }

    /// Keys agreed with the node at `at`: a receive key (a candidate, in use once a packet
    /// opens under it) and a send key, each with the material it was made from. A key made
    /// from material another binding already holds shares that key (one IV counter, one
    /// anti-replay window): the same node offered it again from its new binding.
    pub fn install(
        &mut self,
        now: Duration,
        at: SocketAddr,
        recv: Option<(RecvKey, [u8; 32])>,
        send: Option<(SendKey, [u8; 32])>,
    ) -> Install {
        if !self.bindings.contains_key(&at) && self.bindings.len() >= MAX_BINDINGS {
            return Install::Full;
        }
        let mut installed = Install::Refreshed;
        if let Some((key, material)) = recv {
            let holder = self
                .bindings
                .keys()
                .find(|a| **a != at && self.recv.has_material(a, &material))
                .copied();
            let key = holder
                .and_then(|h| self.recv.share_of(&h, &material))
                .unwrap_or(key);
            installed = self.recv.install_key(now, at, key, material);
            if installed == Install::Full {
                return installed;
            }
        }
        let entry = self.bindings.entry(at).or_insert((None, None));
        if let Some((key, material)) = send {
            self.sends.entry(material).or_insert(key);
            match entry {
                (None, _) => entry.0 = Some(material),
                (Some(cur), _) if *cur == material => {}
                (Some(_), next) => {
                    if *next != Some(material) {
                        installed = Install::Candidate;
                    }
                    *next = Some(material);
                }
            }
        }
        installed
    }

    /// Behind a NAT: we sent on the direct path to `at`.
    pub fn sent(&mut self, now: Duration, at: SocketAddr) {
        if let Some(d) = self.direct.get_mut(&at) {
            d.0 = now;
        } else if self.at.contains(&at) && self.direct.len() < MAX_BINDINGS {
            // Its first packet: as if heard now, so silence counts from here.
            self.direct.insert(at, (now, now, Duration::ZERO));
        }
    }

    /// Behind a NAT: a packet of the direct path from `at` opened.
    pub fn heard(&mut self, now: Duration, at: SocketAddr) {
        if let Some(d) = self.direct.get_mut(&at) {
            d.1 = now;
        }
    }

    /// The direct paths sent on in the last [`DIRECT_SILENCE`] on which nothing came back
    /// for longer: each asked for once per [`DIRECT_SILENCE`].
    pub fn silent(&mut self, now: Duration) -> Vec<SocketAddr> {
        let mut v = Vec::new();
        for (at, (sent, heard, asked)) in self.direct.iter_mut() {
            if now.saturating_sub(*sent) < DIRECT_SILENCE
                && now.saturating_sub(*heard) >= DIRECT_SILENCE
                && now.saturating_sub(*asked) >= DIRECT_SILENCE
            {
                *asked = now;
                v.push(*at);
            }
        }
        v
    }

    /// Opens a packet from the binding `from` in place.
    pub fn open(
        &mut self,
        now: Duration,
        from: SocketAddr,
        packet: &mut [u8],
    ) -> Result<Range<usize>, CryptoError> {
        let key_id = packet.first().map_or(0, |b| b & 3);
        let r = self.recv.open(now, from, packet)?;
        if let Some((cur, next)) = self.bindings.get_mut(&from)
            && let Some(m) = *next
            && self.sends.get(&m).is_some_and(|k| k.key_id == key_id)
        {
            *cur = Some(m);
            *next = None;
        }
        Ok(r)
    }

    /// The key to seal what goes to the binding `at` with.
    pub fn send_key(&mut self, at: &SocketAddr) -> Option<&mut SendKey> {
        let (cur, _) = self.bindings.get(at)?;
        self.sends.get_mut(cur.as_ref()?)
    }

    /// Idle keys expire as an ETR's do; a binding whose receive keys all expired goes with
    /// its send keys.
    pub fn expire(&mut self, now: Duration) {
        self.recv.expire(now);
        let recv = &self.recv;
        self.bindings.retain(|at, _| recv.has(at));
        let bindings = &self.bindings;
        self.sends.retain(|m, _| {
            bindings
                .values()
                .any(|(cur, next)| *cur == Some(*m) || *next == Some(*m))
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::lisp_crypto::{CipherSuite, reverse_key};
    use crate::wire::DataHeader;

    const S: CipherSuite = CipherSuite::Aes128Gcm;
    const T: Duration = Duration::from_secs(1);

    type Recv = Option<(RecvKey, [u8; 32])>;
    type Send = Option<(SendKey, [u8; 32])>;

    /// The RTR's keys for a node's exchange `material`.
    fn keys(material: [u8; 32]) -> (Recv, Send) {
        let r = reverse_key(&material);
        (
            Some((RecvKey::new(S, 1, &material), material)),
            Some((SendKey::new(S, 1, &r), r)),
        )
    }

    fn sealed(tx: &mut SendKey) -> Vec<u8> {
        let mut out = Vec::new();
        tx.seal(DataHeader::with_instance(0, 1, 0), b"inner", &mut out)
            .unwrap();
        out
    }

    /// Two nodes behind one NAT (one address, two ports) keep their own keys; a node whose
    /// NAT gave it a new binding keeps its key there, and what we send it continues the
    /// IV counter instead of repeating it (which its anti-replay window would refuse).
    #[test]
    fn keys_go_by_binding_and_follow_a_node_to_its_new_one() {
        let mut r = Relay::default();
        let a: SocketAddr = "192.0.2.254:30001".parse().unwrap();
        let b: SocketAddr = "192.0.2.254:30002".parse().unwrap();
        let (ma, mb) = ([1u8; 32], [2u8; 32]);
        let (ra, sa) = keys(ma);
        let (rb, sb) = keys(mb);
        assert_eq!(r.install(T, a, ra, sa), Install::Candidate);
        assert_eq!(r.install(T, b, rb, sb), Install::Candidate);
        // Each node's packets open only from its own binding.
        let mut node_a = SendKey::new(S, 1, &ma);
        let mut p = sealed(&mut node_a);
        assert!(r.open(T, a, &mut p.clone()).is_ok());
        assert!(r.open(T, b, &mut p).is_err());
        // What we send each is sealed under its own reverse key.
        let mut at_a = RecvKey::new(S, 1, &reverse_key(&ma));
        let mut to_a = sealed(r.send_key(&a).unwrap());
        assert!(at_a.open_range(&mut to_a).is_ok());
        let mut to_b = sealed(r.send_key(&b).unwrap());
        assert!(at_a.open_range(&mut to_b).is_err());
        // Node A's NAT forgot its binding: the same exchange offered from a new port. The
        // key we send it under is the same one, its IVs continuing.
        let a2: SocketAddr = "192.0.2.254:30003".parse().unwrap();
        let (ra2, sa2) = keys(ma);
        assert_eq!(r.install(T, a2, ra2, sa2), Install::Candidate);
        let mut again = sealed(r.send_key(&a2).unwrap());
        assert!(
            at_a.open_range(&mut again).is_ok(),
            "a repeated IV is refused"
        );
        // A packet of node A opened at the old binding is not accepted again at the new
        // one (one anti-replay window for the exchange).
        let mut p2 = sealed(&mut node_a);
        assert!(r.open(T, a, &mut p2.clone()).is_ok());
        assert!(r.open(T, a2, &mut p2).is_err());
        // EIDs are bound by registers, not by keys.
        assert_eq!(r.binding_of(0, "10.2.0.1".parse().unwrap()), None);
        let eid = EidPrefix::new(0, "10.2.0.0/16".parse().unwrap());
        r.bind(eid, Some(a2));
        assert_eq!(r.binding_of(0, "10.2.0.1".parse().unwrap()), Some(a2));
        assert!(r.is_binding(&a2));
        r.bind(eid, None);
        assert_eq!(r.binding_of(0, "10.2.0.1".parse().unwrap()), None);
    }
}
