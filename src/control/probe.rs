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
/// Each rekey moves to the next key-id (1, 2, 3, 1, ...); the ETR keeps a key per key-id and
/// picks it by the K bits of each packet, so packets still in flight under the previous key
/// decrypt after a rekey and nothing is lost.
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

/// The next key-id after `k` (RFC 8061: key-ids 1 to 3, in the K bits).
pub(crate) fn next_key_id(k: u8) -> u8 {
    k % 3 + 1
}

/// A Security Key LCAF (RFC 8061 §3) with our X25519 public key under `key_id` and the RLOC
/// it is for. Keys sit in key-id order, so the key for key-id N is the Nth: the LCAF
/// carries N keys, the same public key in each slot up to N (one key pair, one key-id in
/// use at a time). With key-id 1 this is the one-key LCAF lispers.net sends and reads.
pub(crate) fn security_key(
    suite: CipherSuite,
    public: [u8; 32],
    key_id: u8,
    rloc: IpAddr,
) -> Address {
    Address::Lcaf(Box::new(Lcaf::new(LcafBody::SecurityKey(SecurityKey {
        rsvd3: 0,
        cipher_suite: suite.id(),
        rsvd4: 0,
        keys: vec![public.to_vec(); usize::from(key_id.clamp(1, 3))],
        locator: Address::from(rloc),
    }))))
}

/// A key offered in a Security Key LCAF: the suite, the public key of the highest key-id,
/// that key-id (the number of keys, 1 to 3), and the RLOC it is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OfferedKey {
    pub suite: u8,
    pub public: [u8; 32],
    pub key_id: u8,
    pub rloc: Option<IpAddr>,
}

/// The first usable key found in a Security Key LCAF, looking through AFI Lists
/// (lispers.net wraps it so). A revoked LCAF, more than three keys or a key that is not 32
/// bytes offers nothing.
pub(crate) fn find_security_key(a: &Address) -> Option<OfferedKey> {
    let Address::Lcaf(l) = a else { return None };
    match &l.body {
        LcafBody::SecurityKey(k) if k.rsvd4 & SecurityKey::REVOKE == 0 => {
            let key_id = u8::try_from(k.keys.len())
                .ok()
                .filter(|n| (1..=3).contains(n))?;
            let public: [u8; 32] = k.keys.last()?.as_slice().try_into().ok()?;
            Some(OfferedKey {
                suite: k.cipher_suite,
                public,
                key_id,
                rloc: k.locator.ip(),
            })
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
    /// lisp-crypto: our key pair offered in the probes under `key_id`, when a key was
    /// agreed with it, and the ETR's public key it was agreed with.
    pub offer: Option<KeyPair>,
    pub key_id: u8,
    pub keyed_at: Option<Duration>,
    pub etr_public: Option<[u8; 32]>,
    /// Keys agreed with this RLOC, the first one included.
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
            key_id: 1,
            keyed_at: None,
            etr_public: None,
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
                    if p.offer.is_some() {
                        p.key_id = next_key_id(p.key_id);
                    }
                    p.offer = Some(KeyPair::generate());
                    if stale {
                        p.keyed_at = None;
                    }
                }
                if let Some(k) = &p.offer {
                    itr_rloc = security_key(suite, k.public(), p.key_id, own);
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
                .filter(|k| k.rloc.is_none_or(|a| a == rloc))
                .find_map(|k| Some((CipherSuite::from_id(k.suite)?, k)));
            if etr.is_none() && p.keyed_at.is_none() {
                event = Some(KeyEvent::NoKey { rloc });
            }
            // A new key when ours was just offered, or when the ETR answers with another key
            // than the one agreed (it restarted and lost its keys). The key-id is the one the
            // ETR answered under: an ETR that knows only key-id 1 keeps us on key-id 1.
            if let Some((suite, k)) = etr
                && (p.keyed_at.is_none() || p.etr_public != Some(k.public))
                && let Ok(z) = offer.shared_secret(&k.public)
            {
                let key = derive_key(suite, &z, &offer.public(), &k.public);
                p.keyed_at = Some(now);
                p.etr_public = Some(k.public);
                p.key_id = k.key_id;
                p.rekeys += 1;
                event = Some(KeyEvent::Send {
                    rloc,
                    suite,
                    key_id: k.key_id,
                    key,
                });
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
        let offered = q.itr_rlocs.iter().find_map(find_security_key)?;
        let suite = CipherSuite::from_id(offered.suite)?;
        let (itr_pub, key_id) = (offered.public, offered.key_id);
        let itr = offered.rloc.unwrap_or(from);
        // The same key under the same key-id again (every probe re-offers it): same answer.
        let reuse =
            matches!(self.etr_keys.get(&itr), Some((p, k, _)) if *p == itr_pub && *k == key_id);
        if !reuse {
            self.etr_keys
                .insert(itr, (itr_pub, key_id, KeyPair::generate()));
        }
        let (_, _, ours) = self.etr_keys.get(&itr)?;
        let z = ours.shared_secret(&itr_pub).ok()?;
        let key = derive_key(suite, &z, &itr_pub, &ours.public());
        let lcaf = security_key(suite, ours.public(), key_id, probed);
        if !reuse {
            self.counters.keys_agreed += 1;
            self.key_events.push_back(KeyEvent::Recv {
                itr,
                suite,
                key_id,
                key,
            });
        }
        Some(lcaf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcaf_keys(keys: Vec<Vec<u8>>, rsvd4: u8) -> Address {
        Address::Lcaf(Box::new(Lcaf::new(LcafBody::SecurityKey(SecurityKey {
            rsvd3: 0,
            cipher_suite: 5,
            rsvd4,
            keys,
            locator: Address::from(IpAddr::from([192, 0, 2, 1])),
        }))))
    }

    /// Key-id N is the Nth key of the LCAF (RFC 8061 §3): what we send under each key-id
    /// reads back as that key-id, and lispers.net's one-key LCAF is key-id 1.
    #[test]
    fn the_key_id_is_the_position_of_the_key() {
        let rloc = IpAddr::from([192, 0, 2, 1]);
        for id in 1..=3u8 {
            let a = security_key(CipherSuite::Aes128Gcm, [id; 32], id, rloc);
            let k = find_security_key(&a).unwrap();
            assert_eq!((k.key_id, k.public, k.rloc), (id, [id; 32], Some(rloc)));
            // It survives the wire.
            let mut buf = Vec::new();
            a.emit(&mut buf).unwrap();
            let back = Address::parse(&mut crate::wire::cursor::Reader::new(&buf), 0).unwrap();
            assert_eq!(find_security_key(&back).unwrap(), k);
        }
        let two = lcaf_keys(vec![vec![1; 32], vec![2; 32]], 0);
        assert_eq!(find_security_key(&two).unwrap().public, [2; 32]);
        // Four keys, a revoked LCAF, or a key of the wrong size offer nothing.
        assert!(find_security_key(&lcaf_keys(vec![vec![1; 32]; 4], 0)).is_none());
        assert!(find_security_key(&lcaf_keys(vec![vec![1; 32]], SecurityKey::REVOKE)).is_none());
        assert!(find_security_key(&lcaf_keys(vec![vec![1; 31]], 0)).is_none());
        assert_eq!((next_key_id(1), next_key_id(2), next_key_id(3)), (2, 3, 1));
    }
}
