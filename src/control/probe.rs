//! RLOC-probing (RFC 9301 §6.3.2): every RLOC the map-cache uses gets a direct Map-Request
//! with the P bit every probe interval (jittered by up to 10 %); an answer marks it up and
//! gives its round-trip time, three probes in a row without one mark it down, and the data
//! plane moves its flows to the next usable RLOC.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use rand::RngExt;

use super::engine::{Engine, Transmit};
use crate::crypto::lisp_crypto::{CipherSuite, KeyPair, derive_key};
use crate::mapping::{EidPrefix, RlocState};
use crate::wire::{
    Address, CONTROL_PORT, ControlMessage, Lcaf, LcafBody, MapReply, MapRequest, Nonce, SecurityKey,
};

/// A lisp-crypto key for the data plane, from an exchange in an RLOC-probe (RFC 8061 §4).
/// Key-id 1 is used; a rekey replaces it, and the data plane keeps the previous receive
/// key until packets under the new one arrive, so a rekey loses nothing.
#[derive(Clone, PartialEq, Eq)]
pub enum KeyEvent {
    /// ITR: encrypt what goes to `rloc` with this key.
    Send {
        rloc: IpAddr,
        suite: CipherSuite,
        key_id: u8,
        key: Vec<u8>,
    },
    /// ETR: decrypt what `itr` sends under `key_id` with this key.
    Recv {
        itr: IpAddr,
        suite: CipherSuite,
        key_id: u8,
        key: Vec<u8>,
    },
    /// ITR: `rloc` answered a probe without a key (it runs no lisp-crypto, or not our suite).
    NoKey { rloc: IpAddr },
}

impl std::fmt::Debug for KeyEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyEvent::Send {
                rloc,
                suite,
                key_id,
                ..
            } => write!(f, "Send({rloc}, {suite:?}, key-id {key_id})"),
            KeyEvent::Recv {
                itr, suite, key_id, ..
            } => write!(f, "Recv({itr}, {suite:?}, key-id {key_id})"),
            KeyEvent::NoKey { rloc } => write!(f, "NoKey({rloc})"),
        }
    }
}

/// A Security Key LCAF (RFC 8061 §6) with one X25519 public key and the RLOC it is for.
pub(crate) fn security_key(suite: CipherSuite, public: [u8; 32], rloc: IpAddr) -> Address {
    Address::Lcaf(Box::new(Lcaf::new(LcafBody::SecurityKey(SecurityKey {
        rsvd3: 0,
        cipher_suite: suite.id(),
        rsvd4: 0,
        keys: vec![public.to_vec()],
        locator: Address::from(rloc),
    }))))
}

/// The first usable (suite, public key, RLOC) found in a Security Key LCAF, looking through
/// AFI Lists (lispers.net wraps it so).
pub(crate) fn find_security_key(a: &Address) -> Option<(u8, [u8; 32], Option<IpAddr>)> {
    let Address::Lcaf(l) = a else { return None };
    match &l.body {
        LcafBody::SecurityKey(k) if k.rsvd4 & SecurityKey::REVOKE == 0 => {
            let key: [u8; 32] = k.keys.first()?.as_slice().try_into().ok()?;
            Some((k.cipher_suite, key, k.locator.ip()))
        }
        LcafBody::AfiList(items) => items.iter().find_map(find_security_key),
        _ => None,
    }
}

/// Unanswered probes in a row that mark an RLOC down.
pub const MISSES_DOWN: u8 = 3;

/// Probing state of one RLOC.
#[derive(Debug)]
pub struct ProbeState {
    /// A prefix the RLOC serves (the probe's target).
    pub prefix: EidPrefix,
    pub next: Duration,
    /// The probe in flight: nonce and when it left.
    pub outstanding: Option<(Nonce, Duration)>,
    pub misses: u8,
    pub state: RlocState,
    pub rtt: Option<Duration>,
    /// lisp-crypto: our key pair offered in the probes, and when a key was agreed with it.
    pub offer: Option<KeyPair>,
    pub keyed_at: Option<Duration>,
    pub rekeys: u64,
    /// The data plane asked for a fresh key (its packet budget is spent).
    pub rekey_asked: bool,
}

impl ProbeState {
    /// A newly probed RLOC, first probe due at `next`.
    fn new(prefix: EidPrefix, next: Duration) -> Self {
        ProbeState {
            prefix,
            next,
            outstanding: None,
            misses: 0,
            state: RlocState::Unknown,
            rtt: None,
            offer: None,
            keyed_at: None,
            rekeys: 0,
            rekey_asked: false,
        }
    }
}

impl Engine {
    /// The probing state of every RLOC in use.
    pub fn probes(&self) -> &HashMap<IpAddr, ProbeState> {
        &self.probes
    }

    /// Follows the map-cache: new RLOCs in use get probed soon, RLOCs no longer used are
    /// forgotten.
    pub(crate) fn track_probed_rlocs(&mut self, now: Duration) {
        if self.cfg.timers.probe_interval.is_zero() {
            return;
        }
        let mut in_use = self.map_cache.rlocs_in_use();
        // With lisp-crypto, every registered RLOC is probed (and keyed) before traffic needs
        // it, so the first packet does not wait for a key exchange.
        if self.cfg.encryption.is_some() {
            for (p, e) in self.site.prefixes().iter() {
                for l in e.merged_rlocs() {
                    if let Some(ip) = l.locator.ip()
                        && l.priority != 255
                        && !in_use.iter().any(|(x, _)| *x == ip)
                    {
                        in_use.push((ip, p));
                    }
                }
            }
        }
        self.probes
            .retain(|ip, _| in_use.iter().any(|(x, _)| x == ip));
        for (ip, prefix) in in_use {
            if self.is_own_rloc(ip) {
                continue;
            }
            self.probes
                .entry(ip)
                .or_insert_with(|| ProbeState::new(prefix, now));
        }
    }

    /// Probes `rloc` (serving `prefix`) at the next timeout: the data plane needs a key for
    /// it now.
    pub fn probe_now(&mut self, now: Duration, rloc: IpAddr, prefix: EidPrefix) {
        if self.cfg.timers.probe_interval.is_zero() || self.is_own_rloc(rloc) {
            return;
        }
        let p = self
            .probes
            .entry(rloc)
            .or_insert_with(|| ProbeState::new(prefix, now));
        if p.outstanding.is_none() {
            p.next = p.next.min(now);
        }
    }

    /// Agrees a fresh key with `rloc` through a probe now (RFC 8061 §4: any Map-Request may
    /// bring a new key), as when the key's packet budget is spent. The current key stays in
    /// use until the new one is agreed.
    pub fn rekey_now(&mut self, now: Duration, rloc: IpAddr) {
        if self.cfg.encryption.is_none() {
            return;
        }
        if let Some(p) = self.probes.get_mut(&rloc) {
            p.rekey_asked = true;
            if p.outstanding.is_none() {
                p.next = p.next.min(now);
            }
        }
    }

    /// When the next probe is due.
    pub(crate) fn next_probe(&self) -> Option<Duration> {
        self.probes.values().map(|p| p.next).min()
    }

    /// Sends the probes that are due, counting the ones that went unanswered.
    pub(crate) fn send_probes(&mut self, now: Duration) {
        let interval = self.cfg.timers.probe_interval;
        if interval.is_zero() {
            return;
        }
        let due: Vec<IpAddr> = self
            .probes
            .iter()
            .filter(|(_, p)| p.next <= now)
            .map(|(ip, _)| *ip)
            .collect();
        for rloc in due {
            let Some(own) = self.rloc_for(rloc) else {
                continue;
            };
            let nonce = self.nonce();
            let jitter = interval.mul_f64(self.rng.random::<f64>() * 0.1);
            let Some(p) = self.probes.get_mut(&rloc) else {
                continue;
            };
            let mut marked = None;
            if p.outstanding.is_some() {
                p.misses = p.misses.saturating_add(1);
                if p.misses >= MISSES_DOWN && p.state != RlocState::Down {
                    p.state = RlocState::Down;
                    marked = Some(RlocState::Down);
                }
            }
            p.outstanding = Some((nonce, now));
            // After a miss the next probes leave at a third of the interval, so a dead RLOC
            // is marked down within 3 intervals of failing, not 4.
            p.next = if p.misses > 0 && p.state != RlocState::Down {
                now + interval / 3
            } else {
                now + interval + jitter
            };
            let (eid, ml) = p.prefix.to_wire();
            if let Some(s) = marked {
                self.map_cache.set_rloc_state(rloc, s, None);
                self.counters.rlocs_marked_down += 1;
            }
            // lisp-crypto: a fresh key pair when there is none yet or the key is old; the same
            // one otherwise, so the ETR derives the same key again.
            let mut itr_rloc = Address::from(own);
            if let Some(suite) = self.cfg.encryption
                && let Some(p) = self.probes.get_mut(&rloc)
            {
                let stale = p.keyed_at.is_some_and(|t| {
                    p.rekey_asked || now.saturating_sub(t) >= self.cfg.timers.rekey_interval
                });
                p.rekey_asked = false;
                if p.offer.is_none() || stale {
                    p.offer = Some(KeyPair::generate());
                    if stale {
                        p.keyed_at = None;
                    }
                }
                if let Some(k) = &p.offer {
                    itr_rloc = security_key(suite, k.public(), own);
                }
            }
            let mut q = MapRequest::new(nonce, Address::None, itr_rloc, eid, ml);
            q.probe = true;
            let Ok(payload) = ControlMessage::MapRequest(q).to_bytes() else {
                continue;
            };
            self.counters.probes_sent += 1;
            self.push(Transmit {
                src: Some(own),
                src_port: CONTROL_PORT,
                dst: SocketAddr::new(rloc, CONTROL_PORT),
                ttl: None,
                payload,
            });
        }
    }

    /// A probe reply (matched by nonce, from any address): the RLOC is up, with its RTT.
    /// Returns false when the nonce is not one of our probes.
    pub(crate) fn probe_answered(&mut self, now: Duration, reply: &MapReply) -> bool {
        let nonce = &reply.nonce;
        let Some((rloc, p)) = self
            .probes
            .iter_mut()
            .find(|(_, p)| p.outstanding.is_some_and(|(n, _)| &n == nonce))
        else {
            return false;
        };
        let rloc = *rloc;
        let sent = p.outstanding.map_or(now, |(_, t)| t);
        p.outstanding = None;
        p.misses = 0;
        p.state = RlocState::Up;
        p.rtt = Some(now.saturating_sub(sent));
        let rtt = p.rtt;
        // lisp-crypto: the ETR's key in the RLOC-record of the probed RLOC.
        let mut event = None;
        if let (Some(_), Some(offer)) = (self.cfg.encryption, p.offer.as_ref()) {
            // The ETR answers with the suite it chose among those we implement.
            let etr = reply
                .records
                .iter()
                .flat_map(|r| r.rlocs.iter())
                .filter_map(|l| find_security_key(&l.locator))
                .filter(|(_, _, at)| at.is_none_or(|a| a == rloc))
                .find_map(|(cs, k, at)| Some((CipherSuite::from_id(cs)?, k, at)));
            if etr.is_none() && p.keyed_at.is_none() {
                event = Some(KeyEvent::NoKey { rloc });
            }
            if let Some((suite, etr_pub, _)) = etr
                && let Ok(z) = offer.shared_secret(&etr_pub)
            {
                let key = derive_key(suite, &z, &offer.public(), &etr_pub);
                if p.keyed_at.is_none() {
                    p.keyed_at = Some(now);
                    p.rekeys += 1;
                    event = Some(KeyEvent::Send {
                        rloc,
                        suite,
                        key_id: 1,
                        key,
                    });
                }
            }
        }
        self.map_cache.set_rloc_state(rloc, RlocState::Up, rtt);
        self.counters.probe_replies_received += 1;
        if let Some(e) = event {
            self.counters.keys_agreed += 1;
            self.key_events.push_back(e);
        }
        true
    }

    /// The next lisp-crypto key for the data plane.
    pub fn poll_key_event(&mut self) -> Option<KeyEvent> {
        self.key_events.pop_front()
    }

    /// ETR: the key an RLOC-probe offers (RFC 8061 §4): derive ours and tell the data plane;
    /// returns the Security Key LCAF to put in our probed RLOC-record, or `None` when the
    /// probe offers no key, or a suite we do not run.
    pub(crate) fn accept_offered_key(
        &mut self,
        q: &MapRequest,
        from: IpAddr,
        probed: IpAddr,
    ) -> Option<Address> {
        // The ITR's offered suite is taken whenever we run lisp-crypto: both suites are
        // implemented here, so the ITR's preference stands (RFC 8061 §4).
        self.cfg.encryption?;
        let (cs, itr_pub, at) = q.itr_rlocs.iter().find_map(find_security_key)?;
        let suite = CipherSuite::from_id(cs)?;
        let itr = at.unwrap_or(from);
        let reuse = matches!(self.etr_keys.get(&itr), Some((p, _)) if *p == itr_pub);
        if !reuse {
            self.etr_keys.insert(itr, (itr_pub, KeyPair::generate()));
        }
        let (_, ours) = self.etr_keys.get(&itr)?;
        let z = ours.shared_secret(&itr_pub).ok()?;
        let key = derive_key(suite, &z, &itr_pub, &ours.public());
        let lcaf = security_key(suite, ours.public(), probed);
        if !reuse {
            self.counters.keys_agreed += 1;
            self.key_events.push_back(KeyEvent::Recv {
                itr,
                suite,
                key_id: 1,
                key,
            });
        }
        Some(lcaf)
    }
}
