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

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::time::Duration;

use super::keys::{Install, RecvKeys};
use crate::crypto::lisp_crypto::{CryptoError, RecvKey, SendKey};
use crate::mapping::{EidPrefix, PrefixTable};

/// Bindings with keys, at most (the control plane binds at most as many EIDs).
pub const MAX_BINDINGS: usize = 1024;

/// The RTR's side: who is behind which binding, and the keys per binding.
#[derive(Default)]
pub struct Relay {
    eids: PrefixTable<SocketAddr>,
    recv: RecvKeys<SocketAddr>,
    /// Per binding, the send key in use and the one of the newest exchange, which takes
    /// over when the node's first packet under the matching receive key arrives (it uses
    /// its new key only once it has our answer, so ours is then known to it too).
    send: HashMap<SocketAddr, (SendKey, Option<SendKey>)>,
    /// The bindings `eids` names (clear data from them is relayed too).
    at: std::collections::HashSet<SocketAddr>,
}

impl Relay {
    /// Nothing relayed: the per-packet checks are skipped.
    pub fn is_empty(&self) -> bool {
        self.eids.is_empty() && self.send.is_empty()
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
    }

    /// The binding of the node behind a NAT that registered the EID `dst` through us.
    pub fn binding_of(&self, iid: u32, dst: std::net::IpAddr) -> Option<SocketAddr> {
        self.eids.lookup(iid, dst).map(|(_, at)| *at)
    }

    /// Whether `from` is a binding: a node behind a NAT registered through us from there,
    /// or agreed keys with us from there.
    pub fn is_binding(&self, from: &SocketAddr) -> bool {
        self.send.contains_key(from) || self.at.contains(from)
    }

    /// A key agreed with the node at `at`: a receive candidate (in use once a packet opens
    /// under it) and the send key of the other direction.
    pub fn install(
        &mut self,
        now: Duration,
        at: SocketAddr,
        recv: RecvKey,
        send: SendKey,
        material: [u8; 32],
    ) -> Install {
        if !self.send.contains_key(&at) && self.send.len() >= MAX_BINDINGS {
            return Install::Full;
        }
        let installed = self.recv.install_key(now, at, recv, material);
        if installed == Install::Candidate {
            match self.send.get_mut(&at) {
                Some((_, next)) => *next = Some(send),
                None => {
                    self.send.insert(at, (send, None));
                }
            }
        }
        installed
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
        if let Some((current, next)) = self.send.get_mut(&from)
            && next.as_ref().is_some_and(|k| k.key_id == key_id)
            && let Some(k) = next.take()
        {
            *current = k;
        }
        Ok(r)
    }

    /// The key to seal what goes to the binding `at` with.
    pub fn send_key(&mut self, at: &SocketAddr) -> Option<&mut SendKey> {
        self.send.get_mut(at).map(|(k, _)| k)
    }

    /// Idle keys expire as an ETR's do; the send key of a binding whose receive keys all
    /// expired goes with them.
    pub fn expire(&mut self, now: Duration) {
        self.recv.expire(now);
        let recv = &self.recv;
        self.send.retain(|at, _| recv.has(at));
    }

    /// The bindings, for the views: EID-prefix and where it is reached.
    pub fn bindings(&self) -> Vec<(EidPrefix, SocketAddr)> {
        self.eids.iter().map(|(p, at)| (p, *at)).collect()
    }
}
