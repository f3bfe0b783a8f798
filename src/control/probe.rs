//! RLOC-probing (RFC 9301 §6.3.2): every RLOC the map-cache uses gets a direct Map-Request
//! with the P bit every probe interval (jittered by up to 10 %); an answer marks it up and
//! gives its round-trip time, three probes in a row without one mark it down, and the data
//! plane moves its flows to the next usable RLOC.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use rand::RngExt;
use rand::rngs::StdRng;

use super::config::{CryptoProfile, EngineConfig};
use super::counters::Counters;
use super::outbox::Outbox;
use super::timers::TimerTable;
use crate::crypto::kx_auth::KxKey;
use crate::crypto::lisp_crypto::{CipherSuite, KeyPair};
use crate::dataplane::KeyEvent;
use crate::mapping::{EidPrefix, MapCache, RlocState, SiteDb};
use crate::wire::{
    Address, CONTROL_PORT, ControlMessage, Lcaf, LcafBody, MapReply, MapRequest, Nonce, SecurityKey,
};

/// The next key-id after `k` (RFC 8061 §8: key-ids 1 to 3, in the K bits).
pub(crate) fn next_key_id(k: u8) -> u8 {
    k % 3 + 1
}

/// A Security Key LCAF (RFC 8061 §6) with one X25519 public key under `key_id` and the
/// RLOC it is for. Keys are listed "key-id 1, followed by key-id 2, and finally key-id 3"
/// (Key Count of them), so the key for key-id N is the Nth; the slots before it are left
/// empty (Key Length 0): one key is offered at a time, never copies of it. With key-id 1
/// this is the one-key LCAF lispers.net sends and reads.
pub(crate) fn security_key(
    suite: CipherSuite,
    public: [u8; 32],
    key_id: u8,
    rloc: IpAddr,
) -> Address {
    let n = usize::from(key_id.clamp(1, 3));
    let mut keys = vec![Vec::new(); n];
    keys[n - 1] = public.to_vec();
    Address::Lcaf(Box::new(Lcaf::new(LcafBody::SecurityKey(SecurityKey {
        rsvd3: 0,
        cipher_suite: suite.id(),
        rsvd4: 0,
        keys,
        locator: Address::from(rloc),
    }))))
}

/// A key offered in a Security Key LCAF: the suite value, the public key, its key-id and the
/// RLOC the LCAF names (informational only: a key is bound to the address the message came
/// from, never to this).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OfferedKey {
    pub suite: u8,
    pub public: [u8; 32],
    pub key_id: u8,
    pub rloc: Option<IpAddr>,
}

/// The key offered in a Security Key LCAF, looking through AFI Lists (lispers.net wraps it
/// so): of the Key Count keys (key-ids 1..N), the last one that is not empty. The R bit is
/// ignored (RFC 8061 §6: "MUST be ignored on receipt"). More than three keys, or a key that
/// is not 32 bytes, offers nothing.
pub(crate) fn find_security_key(a: &Address) -> Option<OfferedKey> {
    let Address::Lcaf(l) = a else { return None };
    match &l.body {
        LcafBody::SecurityKey(k) => {
            if k.keys.len() > 3 {
                return None;
            }
            let (i, key) = k
                .keys
                .iter()
                .enumerate()
                .rev()
                .find(|(_, k)| !k.is_empty())?;
            Some(OfferedKey {
                suite: k.cipher_suite,
                public: key.as_slice().try_into().ok()?,
                key_id: i as u8 + 1,
                rloc: k.locator.ip(),
            })
        }
        LcafBody::AfiList(items) => items.iter().find_map(find_security_key),
        _ => None,
    }
}

/// Unanswered probes in a row that mark an RLOC down.
pub const MISSES_DOWN: u8 = 3;

/// The key an ITR offered in its outstanding probe.
#[derive(Debug)]
pub struct SentOffer {
    /// A fresh pair (a new key or a rekey; used in this one probe only, so the ETR's and our
    /// derivation always take the same Map-Request nonce), or `None`: the agreed key is
    /// offered again, which asks for no rekey (RFC 8061 §10).
    pub fresh: Option<KeyPair>,
    pub key_id: u8,
    pub suite: CipherSuite,
    /// The probe's nonce: the KDF's input (RFC 8061 §7).
    pub nonce: Nonce,
}

/// The key an ITR agreed with an RLOC and encrypts with.
#[derive(Debug)]
pub struct AgreedKey {
    pub pair: KeyPair,
    pub key_id: u8,
    pub suite: CipherSuite,
    pub etr_public: [u8; 32],
    pub at: Duration,
    /// Our RLOC the ETR holds it for (it keys by the ITR's address, RFC 8061 §9).
    pub source: Option<IpAddr>,
}

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
    /// lisp-crypto: the key offered in the outstanding probe, and the key agreed.
    pub offer: Option<SentOffer>,
    pub agreed: Option<AgreedKey>,
    /// Keys agreed with this RLOC, the first one included.
    pub rekeys: u64,
    /// A fresh key is wanted (its age or the data plane's packet budget); stays set until
    /// one is agreed.
    pub rekeying: bool,
    /// Probed only because it is registered (lisp-crypto keys ahead of traffic), not in use:
    /// when down, it is probed at the normal interval, not every second.
    pub preemptive: bool,
    /// The data plane sends to it but hears nothing back ([`Prober::check_now`]): probes
    /// leave at RTT-based timeouts until one is answered or it is marked down.
    pub checking: bool,
    /// The RLOC of ours the next probe leaves from when it is not the nearest by address:
    /// after a miss, a multi-homed node tries its next RLOC of the family.
    pub from: Option<IpAddr>,
    /// The RLOC of ours the outstanding probe left from.
    pub sent_from: Option<IpAddr>,
    /// The RLOC of ours whose probe was last answered, when it is not the nearest by
    /// address: data leaves from it ([`crate::mapping::CachedRloc::via`]).
    pub via: Option<IpAddr>,
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
            agreed: None,
            preemptive: false,
            rekeys: 0,
            rekeying: false,
            checking: false,
            from: None,
            sent_from: None,
            via: None,
        }
    }

    /// When the key in use was agreed.
    pub fn keyed_at(&self) -> Option<Duration> {
        self.agreed.as_ref().map(|a| a.at)
    }
}

/// ETR side: a key an ITR offered, with our pair and the key material agreed for it.
#[derive(Debug)]
pub(crate) struct EtrOffer {
    pub suite: CipherSuite,
    pub itr_public: [u8; 32],
    pub ours: KeyPair,
    pub key: [u8; 32],
    pub last_offered: Duration,
}

/// ETR side, per ITR address: the offers per key-id (newest last).
pub(crate) type EtrKeys = [Vec<EtrOffer>; 3];

/// How often an RLOC in use that is marked down is probed.
pub(crate) const DOWN_PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// The shortest and longest wait for the answer to a probe of an RLOC being checked
/// ([`Prober::check_now`]); in between, three round-trip times and 20 ms.
pub(crate) const CHECK_TIMEOUT_MIN: Duration = Duration::from_millis(50);
pub(crate) const CHECK_TIMEOUT_MAX: Duration = Duration::from_millis(250);

/// How long a probe of an RLOC being checked waits for its answer: its round-trip time
/// three times over and 20 ms, within [`CHECK_TIMEOUT_MIN`]..[`CHECK_TIMEOUT_MAX`] (the
/// longest without one measured). With [`MISSES_DOWN`] misses a dead path is left within
/// 150-750 ms of the check.
pub(crate) fn check_timeout(rtt: Option<Duration>) -> Duration {
    rtt.map_or(CHECK_TIMEOUT_MAX, |r| r * 3 + Duration::from_millis(20))
        .clamp(CHECK_TIMEOUT_MIN, CHECK_TIMEOUT_MAX)
}
/// Registered RLOCs probed ahead of traffic (lisp-crypto), at most.
pub const MAX_PREEMPTIVE_PROBES: usize = 1024;
/// RLOC-probes sent per second, at most: what probing may cost however many RLOCs are
/// registered or cached; probes beyond it wait for the next second.
pub const PROBES_PER_SECOND: u32 = 2000;

/// ITR addresses with key state at the ETR, at most; and at most this many of them from
/// exchanges that were not authenticated with the site key.
pub(crate) const MAX_ETR_PEERS: usize = 1024;
pub(crate) const MAX_UNAUTHENTICATED_PEERS: usize = 256;
/// Offers kept per ITR and key-id (a lost reply leaves one behind; the newest wins).
const OFFERS_PER_KEY_ID: usize = 3;
/// An ITR's offers are forgotten this long after it last offered one.
pub(crate) const ETR_OFFER_TTL: Duration = Duration::from_secs(600);

/// What the prober uses of the rest of the engine during one call: the configuration, the
/// counters, the random numbers, the outbox it writes probes, replies' keys and key events
/// into, the map-cache whose RLOC states it sets, and the site key that signs exchanges.
pub(crate) struct Ctx<'a> {
    pub cfg: &'a EngineConfig,
    pub counters: &'a mut Counters,
    pub rng: &'a mut StdRng,
    pub out: &'a mut Outbox,
    pub map_cache: &'a mut MapCache,
    pub kx_key: Option<&'a KxKey>,
}

/// Signs a key-exchange message with the site key `kx` (the peer-group profile); without a
/// site key it goes unsigned, and a member takes no key from it.
pub(crate) fn sign_key_exchange(kx: Option<&KxKey>, payload: &mut Vec<u8>) {
    if let Some(k) = kx {
        k.sign(payload);
    }
}

/// The lisp-crypto profile spoken with `rloc`: the most specific `crypto_peers` entry that
/// holds it, else the peer-group profile (RFC 8061 authenticated with the site key).
pub(crate) fn crypto_profile(cfg: &EngineConfig, rloc: IpAddr) -> CryptoProfile {
    cfg.crypto_peers
        .iter()
        .filter(|p| p.rlocs.contains(&rloc))
        .max_by_key(|p| p.rlocs.prefix_len())
        .map_or(CryptoProfile::Decent, |p| p.profile)
}

/// The suite offered to and accepted from a peer of `profile`; `None` without lisp-crypto.
/// `data_plane.encryption` is the only RFC suite we offer or accept.
pub(crate) fn suite_for(cfg: &EngineConfig, profile: CryptoProfile) -> Option<CipherSuite> {
    let ours = cfg.encryption?;
    Some(match profile {
        CryptoProfile::LispersCs6 => CipherSuite::LispersCs6,
        CryptoProfile::Decent | CryptoProfile::Rfc8061 => ours,
    })
}

/// A probe reply that matched one of our probes.
pub(crate) struct Answered {
    /// The RLOC probed.
    pub rloc: IpAddr,
    /// The RLOC was marked down and is up again.
    pub was_down: bool,
}

/// RLOC-probing (RFC 9301 §6.3.2) and the lisp-crypto key exchange it carries (RFC 8061),
/// both sides: the engine's prober component, with its own state and bounds. Probes are
/// due from a timer heap (O(log n) per probe however many RLOCs are probed), replies are
/// matched by nonce in O(1), at most [`PROBES_PER_SECOND`] leave per second, at most
/// [`MAX_PREEMPTIVE_PROBES`] registered RLOCs are probed ahead of traffic, and the ETR's
/// offers are bounded per ITR and in total.
#[derive(Default)]
pub struct Prober {
    /// Probing state per RLOC in use (or probed ahead of traffic).
    probes: HashMap<IpAddr, ProbeState>,
    /// When each probe is due: (time, RLOC), valid while `probes[rloc].next` is that time
    /// (older entries are dropped when they come up).
    timers: TimerTable<IpAddr>,
    /// The RLOC of each outstanding probe, by nonce.
    by_nonce: HashMap<Nonce, IpAddr>,
    /// Registered RLOCs probed ahead of traffic (lisp-crypto), chosen every probe interval.
    preemptive: Vec<(IpAddr, EidPrefix)>,
    next_preemptive_scan: Duration,
    last_preemptive_scan: Duration,
    /// The database generation the last scan saw (`None`: no scan yet).
    preemptive_generation: Option<u64>,
    /// The probe budget's current second: when it began and the probes sent in it.
    window: (Duration, u32),
    /// ETR side: per ITR address, the offers per key-id (bounded).
    etr_keys: HashMap<IpAddr, EtrKeys>,
    /// Behind a NAT: our RTR was probed (our registers go with the probe).
    pub(crate) rtr_probed: bool,
}

impl Prober {
    /// The probing state of every RLOC in use.
    pub fn probes(&self) -> &HashMap<IpAddr, ProbeState> {
        &self.probes
    }

    /// ITR addresses that hold key offers at our ETR (bounded by `MAX_ETR_PEERS`).
    pub fn etr_peers(&self) -> usize {
        self.etr_keys.len()
    }

    /// Follows the map-cache: new RLOCs in use get probed soon, RLOCs no longer used are
    /// forgotten. With lisp-crypto, registered RLOCs are also probed (and keyed) before
    /// traffic needs them, so the first packet does not wait for a key exchange: at most
    /// [`MAX_PREEMPTIVE_PROBES`] of them, the group's members first, chosen again (the one
    /// scan of the database, `site` at `generation`) a second after the database changed,
    /// and every probe interval.
    pub(crate) fn track(
        &mut self,
        now: Duration,
        cx: &mut Ctx,
        site: &SiteDb,
        generation: u64,
        members: &HashSet<IpAddr>,
    ) {
        let interval = cx.cfg.timers.probe_interval;
        if interval.is_zero() {
            return;
        }
        let mut in_use: HashMap<IpAddr, EidPrefix> =
            cx.map_cache.rlocs_in_use().into_iter().collect();
        // Behind a NAT everything goes to our RTR: it is in use (and its probes keep our
        // NAT binding open).
        if let Some(rtr) = cx.cfg.via_rtr {
            in_use.entry(rtr).or_insert_with(|| any_eid(rtr));
        }
        let changed = self.preemptive_generation != Some(generation);
        if cx.cfg.encryption.is_some()
            && (now >= self.next_preemptive_scan
                || (changed && now >= self.last_preemptive_scan + Duration::from_secs(1)))
        {
            self.next_preemptive_scan = now + interval;
            self.last_preemptive_scan = now;
            self.preemptive_generation = Some(generation);
            let mut first: Vec<(IpAddr, EidPrefix)> = Vec::new();
            let mut rest: Vec<(IpAddr, EidPrefix)> = Vec::new();
            let mut seen = HashSet::new();
            for (p, e) in site.prefixes().iter() {
                for l in e.merged_rlocs() {
                    if let Some(ip) = l.locator.ip()
                        && l.priority != 255
                        && !in_use.contains_key(&ip)
                        && (members.contains(&ip) || rest.len() < MAX_PREEMPTIVE_PROBES)
                        && seen.insert(ip)
                    {
                        if members.contains(&ip) {
                            first.push((ip, p));
                        } else {
                            rest.push((ip, p));
                        }
                    }
                }
            }
            first.extend(rest);
            first.truncate(MAX_PREEMPTIVE_PROBES);
            self.preemptive = first;
        }
        let preemptive: HashMap<IpAddr, EidPrefix> = self
            .preemptive
            .iter()
            .filter(|(ip, _)| !in_use.contains_key(ip))
            .copied()
            .collect();
        let by_nonce = &mut self.by_nonce;
        self.probes.retain(|ip, p| {
            let keep = in_use.contains_key(ip) || preemptive.contains_key(ip);
            if !keep && let Some((n, _)) = p.outstanding {
                by_nonce.remove(&n);
            }
            keep
        });
        for (ip, p) in self.probes.iter_mut() {
            p.preemptive = !in_use.contains_key(ip);
        }
        for (ip, prefix) in in_use.iter().chain(preemptive.iter()) {
            if is_own_rloc(cx.cfg, *ip) || self.probes.contains_key(ip) {
                continue;
            }
            let mut p = ProbeState::new(*prefix, now);
            p.preemptive = !in_use.contains_key(ip);
            self.probes.insert(*ip, p);
            self.schedule(*ip, now);
        }
    }

    /// Notes that the probe of `rloc` is due at `at` (its `next`).
    fn schedule(&mut self, rloc: IpAddr, at: Duration) {
        self.timers.schedule(rloc, at);
        let probes = &self.probes;
        self.timers.compact(probes.len(), || {
            probes.iter().map(|(ip, p)| (*ip, p.next)).collect()
        });
    }

    /// Probes `rloc` (serving `prefix`) at the next timeout: the data plane needs a key for
    /// it now.
    pub fn probe_now(
        &mut self,
        now: Duration,
        cfg: &EngineConfig,
        rloc: IpAddr,
        prefix: EidPrefix,
    ) {
        if cfg.timers.probe_interval.is_zero() || is_own_rloc(cfg, rloc) {
            return;
        }
        let p = self
            .probes
            .entry(rloc)
            .or_insert_with(|| ProbeState::new(prefix, now));
        if p.outstanding.is_none() {
            p.next = p.next.min(now);
        }
        let next = p.next;
        self.schedule(rloc, next);
    }

    /// Our RLOCs changed (a node that roams, RFC 9962 §1): every probed RLOC is probed now,
    /// from our RLOC nearest it, and with lisp-crypto a fresh key is offered (RFC 8061 §10),
    /// so each peer's ETR holds a key for the address our packets now come from (its keys
    /// are per ITR RLOC) and answers to the new address. A probe still out left from the old
    /// address and its answer may never come: it is given up without counting a miss.
    /// lispers.net peers are offered their key again from the new address (they are never
    /// rekeyed). The probes go out within the per-second probe budget.
    pub fn our_rlocs_changed(&mut self, now: Duration, cfg: &EngineConfig) {
        let rlocs: Vec<IpAddr> = self.probes.keys().copied().collect();
        for rloc in rlocs {
            let Some(p) = self.probes.get_mut(&rloc) else {
                continue;
            };
            if let Some((nonce, _)) = p.outstanding.take() {
                self.by_nonce.remove(&nonce);
            }
            p.offer = None;
            if cfg.encryption.is_some() && crypto_profile(cfg, rloc) != CryptoProfile::LispersCs6 {
                p.rekeying = true;
            }
            p.next = now;
            self.schedule(rloc, now);
        }
    }

    /// Agrees a fresh key with `rloc` through a probe now (RFC 8061 §10: RLOC-probing can
    /// change keys at any time), as when the key's packet budget is spent. The current key
    /// stays in use until the new one is agreed. lispers.net peers are never rekeyed: they
    /// replace their key at once, under the same key-id, which would lose packets.
    pub fn rekey_now(&mut self, now: Duration, cfg: &EngineConfig, rloc: IpAddr) {
        if cfg.encryption.is_none() || crypto_profile(cfg, rloc) == CryptoProfile::LispersCs6 {
            return;
        }
        if let Some(p) = self.probes.get_mut(&rloc) {
            p.rekeying = true;
            if p.outstanding.is_none() {
                p.next = p.next.min(now);
            }
            let next = p.next;
            self.schedule(rloc, next);
        }
    }

    /// The data plane sends to `rloc` and hears nothing back from its peer (RFC 9300
    /// §10: data-driven reachability, here by probing at once): the RLOC is probed now and
    /// then at RTT-based timeouts ([`check_timeout`]) until a probe is answered, or it
    /// misses [`MISSES_DOWN`] in a row and is marked down, so traffic moves to another RLOC
    /// within a second instead of three probe intervals. A probe already out is given the
    /// short timeout. Only RLOCs being probed are checked; one that is down or already
    /// checked is left as it is. Returns whether a check began.
    pub fn check_now(&mut self, now: Duration, cfg: &EngineConfig, rloc: IpAddr) -> bool {
        if cfg.timers.probe_interval.is_zero() {
            return false;
        }
        let Some(p) = self.probes.get_mut(&rloc) else {
            return false;
        };
        if p.checking || p.state == RlocState::Down {
            return false;
        }
        p.checking = true;
        let due = match p.outstanding {
            Some((_, sent)) => (sent + check_timeout(p.rtt)).max(now),
            None => now,
        };
        p.next = p.next.min(due);
        let next = p.next;
        self.schedule(rloc, next);
        true
    }

    /// `rloc`, marked down, was registered again by its owner: probed now (the answer marks
    /// it up) instead of at the next down probe, up to a second later.
    pub fn recheck_down(&mut self, now: Duration, cfg: &EngineConfig, rloc: IpAddr) {
        if cfg.timers.probe_interval.is_zero() {
            return;
        }
        if let Some(p) = self.probes.get_mut(&rloc)
            && p.state == RlocState::Down
            && p.next > now
        {
            p.next = now;
            self.schedule(rloc, now);
        }
    }

    /// When the next probe is due.
    pub(crate) fn next_due(&self) -> Option<Duration> {
        // The top may be an entry made stale since: then the engine wakes early once and
        // drops it. With this second's budget spent, nothing is due before the next one.
        let t = self.timers.next()?;
        Some(if self.window.1 >= PROBES_PER_SECOND {
            t.max(self.window.0 + Duration::from_secs(1))
        } else {
            t
        })
    }

    /// Sends the probes that are due, counting the ones that went unanswered.
    pub(crate) fn send_due(&mut self, now: Duration, cx: &mut Ctx) {
        let interval = cx.cfg.timers.probe_interval;
        if interval.is_zero() {
            return;
        }
        if now >= self.window.0 + Duration::from_secs(1) {
            self.window = (now, 0);
        }
        let mut due: Vec<IpAddr> = Vec::new();
        while let Some((t, ip)) = self.timers.peek() {
            if t > now {
                break;
            }
            if self.window.1 >= PROBES_PER_SECOND {
                // The budget of this second is spent: the rest wait for the next one.
                cx.counters.probes_postponed += 1;
                break;
            }
            self.timers.pop();
            if self.probes.get(&ip).is_some_and(|p| p.next == t) && !due.contains(&ip) {
                due.push(ip);
                self.window.1 += 1;
            }
        }
        for rloc in due {
            let Some(nearest) = source_rloc(cx.cfg, rloc) else {
                // No RLOC of ours in its family (yet): looked at again an interval later.
                if let Some(p) = self.probes.get_mut(&rloc) {
                    p.next = now + interval;
                    self.schedule(rloc, now + interval);
                }
                continue;
            };
            let nonce: Nonce = cx.rng.random();
            let jitter = interval.mul_f64(cx.rng.random::<f64>() * 0.1);
            let profile = crypto_profile(cx.cfg, rloc);
            let suite = suite_for(cx.cfg, profile);
            let rekey_age = cx.cfg.timers.rekey_interval;
            let Some(p) = self.probes.get_mut(&rloc) else {
                continue;
            };
            let mut marked = None;
            // The source: the one we last tried, while it is still ours.
            let mut own = p
                .from
                .filter(|a| is_own_rloc(cx.cfg, *a))
                .unwrap_or(nearest);
            if let Some((old, _)) = p.outstanding {
                self.by_nonce.remove(&old);
                p.misses = p.misses.saturating_add(1);
                if p.misses >= MISSES_DOWN && p.state != RlocState::Down {
                    p.state = RlocState::Down;
                    p.checking = false;
                    marked = Some(RlocState::Down);
                }
                // A multi-homed node tries its next RLOC of the family: the path from the
                // last one may be what failed. The ETR keys by our address (RFC 8061 §9),
                // so a key is agreed from the new one (lispers.net's is offered again).
                let next = next_source(cx.cfg, rloc, own);
                if next != own {
                    own = next;
                    cx.counters.probe_sources_changed += 1;
                    if suite.is_some() && profile != CryptoProfile::LispersCs6 {
                        p.rekeying = true;
                    }
                }
            }
            p.from = Some(own).filter(|a| *a != nearest);
            p.sent_from = Some(own);
            p.outstanding = Some((nonce, now));
            self.by_nonce.insert(nonce, rloc);
            // After a miss the next probes leave at a third of the interval, so a dead RLOC
            // is marked down within 3 intervals of failing, not 4.
            // A down RLOC is probed every second (one small datagram), so traffic returns
            // within a second of its path, not a third of an interval later.
            p.next = if p.state == RlocState::Down && !p.preemptive {
                now + DOWN_PROBE_INTERVAL.min(interval)
            } else if p.state == RlocState::Down {
                now + interval
            } else if p.checking {
                now + check_timeout(p.rtt)
            } else if p.misses > 0 {
                now + interval / 3
            } else {
                now + interval + jitter
            };
            let (eid, ml) = p.prefix.to_wire();
            // lisp-crypto: the agreed key again while it is young, else a fresh pair under
            // the next key-id (lispers.net: always key-id 1, never a rekey).
            let mut itr_rloc = Address::from(own);
            if let Some(suite) = suite {
                let lispers = profile == CryptoProfile::LispersCs6;
                if p.agreed
                    .as_ref()
                    .is_some_and(|a| !lispers && now.saturating_sub(a.at) >= rekey_age)
                {
                    p.rekeying = true;
                }
                let (fresh, key_id, public) = match &p.agreed {
                    Some(a) if a.suite == suite && (lispers || !p.rekeying) => {
                        (None, a.key_id, a.pair.public())
                    }
                    a => {
                        // A fresh pair from the engine's seeded random numbers (deterministic
                        // in the simulator), made only when one is offered.
                        let k = KeyPair::from_secret(cx.rng.random());
                        let id = match a {
                            Some(a) if !lispers => next_key_id(a.key_id),
                            _ => 1,
                        };
                        let public = k.public();
                        (Some(k), id, public)
                    }
                };
                itr_rloc = security_key(suite, public, key_id, own);
                p.offer = Some(SentOffer {
                    fresh,
                    key_id,
                    suite,
                    nonce,
                });
            }
            let next = p.next;
            self.schedule(rloc, next);
            if let Some(s) = marked {
                cx.map_cache.set_rloc_state(rloc, s, None);
                cx.counters.rlocs_marked_down += 1;
            }
            let keyed = suite.is_some();
            let mut q = MapRequest::new(nonce, Address::None, itr_rloc, eid, ml);
            q.probe = true;
            let Ok(mut payload) = ControlMessage::MapRequest(q).to_bytes() else {
                continue;
            };
            if keyed && profile == CryptoProfile::Decent {
                sign_key_exchange(cx.kx_key, &mut payload);
            }
            cx.counters.probes_sent += 1;
            if cx.cfg.via_rtr == Some(rloc) {
                // Behind a NAT: to our RTR carried in data from our data port, so the key
                // is agreed for the binding our data takes (draft §5.1.3).
                self.rtr_probed = true;
                let to = SocketAddr::new(rloc, crate::wire::DATA_PORT);
                let n: u32 = cx.rng.random();
                super::rtr::send_in_data(cx.out, own, rloc, to, n, &payload);
            } else {
                cx.out
                    .control(Some(own), SocketAddr::new(rloc, CONTROL_PORT), payload);
            }
        }
    }

    /// A probe reply (matched by nonce, from any address): the RLOC is up, with its RTT.
    /// `signed`: the reply carried a valid site-key trailer. `None` when the nonce is not
    /// one of our outstanding probes.
    pub(crate) fn answered(
        &mut self,
        now: Duration,
        cx: &mut Ctx,
        reply: &MapReply,
        signed: bool,
    ) -> Option<Answered> {
        let rloc = self.by_nonce.remove(&reply.nonce)?;
        let profile = crypto_profile(cx.cfg, rloc);
        let p = self.probes.get_mut(&rloc)?;
        let sent = p.outstanding.map_or(now, |(_, t)| t);
        p.outstanding = None;
        p.misses = 0;
        p.checking = false;
        let was_down = p.state == RlocState::Down;
        p.state = RlocState::Up;
        p.rtt = Some(now.saturating_sub(sent));
        let rtt = p.rtt;
        // Data leaves from the RLOC of ours that was answered.
        let via = p
            .sent_from
            .filter(|a| source_rloc(cx.cfg, rloc) != Some(*a));
        let via_changed = p.via != via;
        p.via = via;
        let mut event = None;
        // The ETR answered our offer with its key.
        let mut keyed = false;
        if let Some(offer) = p.offer.take() {
            // The ETR's key for the key-id we offered, in the suite we offered (RFC 8061
            // §10), in the RLOC-record of the probed RLOC.
            let etr = reply
                .records
                .iter()
                .flat_map(|r| r.rlocs.iter())
                .filter_map(|l| find_security_key(&l.locator))
                .find(|k| k.key_id == offer.key_id && k.suite == offer.suite.id());
            let etr = match etr {
                Some(_) if profile == CryptoProfile::Decent && !signed => {
                    // A key in the peer-group profile must come signed with the site key.
                    cx.counters.key_replies_unauthenticated += 1;
                    None
                }
                e => e,
            };
            match etr {
                None if p.agreed.is_none() => event = Some(KeyEvent::NoKey { rloc }),
                None => {}
                Some(k) => {
                    keyed = true;
                    let fresh = offer.fresh.is_some();
                    let changed = p.agreed.as_ref().is_none_or(|a| a.etr_public != k.public);
                    // A new key when ours was fresh, or when the ETR answers our agreed key
                    // with another key than before (it restarted and lost its keys).
                    if fresh || changed {
                        let pair = match offer.fresh {
                            Some(f) => Some(f),
                            None => p.agreed.take().map(|a| a.pair),
                        };
                        if let Some(pair) = pair
                            && let Ok(key) = pair.key_material(offer.suite, &k.public, &offer.nonce)
                        {
                            p.agreed = Some(AgreedKey {
                                pair,
                                key_id: offer.key_id,
                                suite: offer.suite,
                                etr_public: k.public,
                                at: now,
                                source: p.sent_from,
                            });
                            p.rekeys += 1;
                            p.rekeying = false;
                            event = Some(KeyEvent::Send {
                                rloc,
                                suite: offer.suite,
                                key_id: offer.key_id,
                                key,
                                source: p.sent_from,
                            });
                        }
                    }
                }
            }
        }
        // The same key, now held by the ETR for another RLOC of ours too (a lispers.net peer
        // is offered its key again, never a new one): data may leave from there.
        if event.is_none()
            && let Some(a) = p.agreed.as_mut()
            && a.source != p.sent_from
            && keyed
        {
            a.source = p.sent_from;
            event = Some(KeyEvent::Source {
                rloc,
                source: a.source,
            });
        }
        cx.map_cache.set_rloc_state(rloc, RlocState::Up, rtt);
        if via_changed {
            cx.map_cache.set_rloc_via(rloc, via);
        }
        cx.counters.probe_replies_received += 1;
        if let Some(e) = event {
            if let KeyEvent::Send {
                rloc,
                suite,
                key_id,
                key,
                ..
            } = &e
            {
                cx.counters.keys_agreed += 1;
                // Our RTR seals what it sends us under the reverse key of this exchange
                // (it cannot probe us through our NAT).
                if cx.cfg.via_rtr == Some(*rloc) {
                    cx.out.keys.push_back(KeyEvent::Recv {
                        itr: *rloc,
                        suite: *suite,
                        key_id: *key_id,
                        key: crate::crypto::lisp_crypto::reverse_key(key),
                    });
                }
            }
            cx.out.keys.push_back(e);
        }
        Some(Answered { rloc, was_down })
    }

    /// ETR: the key an RLOC-probe offers (RFC 8061 §5-§7, §10). The key is bound to `from`,
    /// the address the probe came from (the reply goes there too), never to the locator the
    /// LCAF names. In the peer-group profile the probe must be signed with the site key
    /// (`signed`); the other profiles rest on return routability alone: the data plane uses a
    /// new key only once a packet from `from` opens under it. State per ITR is bounded and
    /// expires. Returns the Security Key LCAF for our probed RLOC-record, or `None` when the
    /// probe offers no key we take.
    pub(crate) fn accept_offer(
        &mut self,
        now: Duration,
        cx: &mut Ctx,
        q: &MapRequest,
        from: IpAddr,
        probed: IpAddr,
        signed: bool,
    ) -> Option<Address> {
        let offered = q.itr_rlocs.iter().find_map(find_security_key)?;
        let profile = crypto_profile(cx.cfg, from);
        let Some(suite) = suite_for(cx.cfg, profile) else {
            cx.counters.key_offers_refused += 1;
            return None;
        };
        if offered.suite != suite.id() {
            // Only the configured suite (RFC 8061 §6: an ETR without it answers with no key).
            cx.counters.key_offers_refused += 1;
            return None;
        }
        let authenticated = profile != CryptoProfile::Decent || signed;
        if !authenticated {
            cx.counters.key_offers_unauthenticated += 1;
            return None;
        }
        let slot = usize::from(offered.key_id - 1);
        let known = self.etr_keys.contains_key(&from);
        if !known {
            let cap = if profile == CryptoProfile::Decent {
                MAX_ETR_PEERS
            } else {
                MAX_UNAUTHENTICATED_PEERS
            };
            if self.etr_keys.len() >= cap {
                cx.counters.key_offers_dropped_full += 1;
                return None;
            }
        }
        let existing = self.etr_keys.get(&from).and_then(|k| {
            k[slot]
                .iter()
                .position(|o| o.suite == suite && o.itr_public == offered.public)
        });
        let index = match existing {
            Some(i) => i,
            None => {
                let ours = KeyPair::from_secret(cx.rng.random());
                let key = ours.key_material(suite, &offered.public, &q.nonce).ok()?;
                let offers = &mut self.etr_keys.entry(from).or_default()[slot];
                if offers.len() >= OFFERS_PER_KEY_ID {
                    offers.remove(0);
                }
                offers.push(EtrOffer {
                    suite,
                    itr_public: offered.public,
                    ours,
                    key,
                    last_offered: now,
                });
                cx.counters.keys_agreed += 1;
                offers.len() - 1
            }
        };
        let o = self
            .etr_keys
            .get_mut(&from)?
            .get_mut(slot)?
            .get_mut(index)?;
        o.last_offered = now;
        let (public, key) = (o.ours.public(), o.key);
        cx.out.keys.push_back(KeyEvent::Recv {
            itr: from,
            suite,
            key_id: offered.key_id,
            key,
        });
        Some(security_key(suite, public, offered.key_id, probed))
    }

    /// Forgets the offers of ITRs that stopped offering.
    pub(crate) fn expire_offers(&mut self, now: Duration) {
        self.etr_keys.retain(|_, slots| {
            for s in slots.iter_mut() {
                s.retain(|o| now.saturating_sub(o.last_offered) < ETR_OFFER_TTL);
            }
            slots.iter().any(|s| !s.is_empty())
        });
    }
}

/// Our RLOC to talk to `peer` from ([`crate::dataplane::select::source_rloc`]).
/// The EID-prefix an RTR is probed for: every EID of its family in Instance-ID 0 (it
/// answers with its own mappings).
pub(crate) fn any_eid(rtr: IpAddr) -> EidPrefix {
    let net = match rtr {
        IpAddr::V4(_) => ipnet::IpNet::V4(ipnet::Ipv4Net::default()),
        IpAddr::V6(_) => ipnet::IpNet::V6(ipnet::Ipv6Net::default()),
    };
    EidPrefix::new(0, net)
}

pub(crate) fn source_rloc(cfg: &EngineConfig, peer: IpAddr) -> Option<IpAddr> {
    crate::dataplane::select::source_rloc(cfg.rlocs.iter().map(|r| r.address), peer)
}

/// The RLOC of ours after `current` among those of `peer`'s family, in the configured order
/// and round again (`current` itself on a node with one).
fn next_source(cfg: &EngineConfig, peer: IpAddr, current: IpAddr) -> IpAddr {
    let family: Vec<IpAddr> = cfg
        .rlocs
        .iter()
        .map(|r| r.address)
        .filter(|a| a.is_ipv4() == peer.is_ipv4())
        .collect();
    match family.iter().position(|a| *a == current) {
        Some(i) => family[(i + 1) % family.len()],
        None => family.first().copied().unwrap_or(current),
    }
}

/// Whether `a` is one of our RLOCs.
pub(crate) fn is_own_rloc(cfg: &EngineConfig, a: IpAddr) -> bool {
    cfg.rlocs.iter().any(|r| r.address == a)
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

    /// Key-id N is the Nth key of the LCAF (RFC 8061 §6): what we send under each key-id
    /// reads back as that key-id, with one key and empty slots before it; lispers.net's
    /// one-key LCAF is key-id 1.
    #[test]
    fn the_key_id_is_the_position_of_the_key() {
        let rloc = IpAddr::from([192, 0, 2, 1]);
        for id in 1..=3u8 {
            let a = security_key(CipherSuite::Aes128Gcm, [id; 32], id, rloc);
            let k = find_security_key(&a).unwrap();
            assert_eq!((k.key_id, k.public, k.rloc), (id, [id; 32], Some(rloc)));
            let Address::Lcaf(l) = &a else { panic!() };
            let LcafBody::SecurityKey(sk) = &l.body else {
                panic!()
            };
            assert_eq!(sk.keys.len(), usize::from(id), "Key Count = key-id");
            assert_eq!(
                sk.keys.iter().filter(|k| !k.is_empty()).count(),
                1,
                "one key, never copies of it"
            );
            // It survives the wire.
            let mut buf = Vec::new();
            a.emit(&mut buf).unwrap();
            let back = Address::parse(&mut crate::wire::cursor::Reader::new(&buf), 0).unwrap();
            assert_eq!(find_security_key(&back).unwrap(), k);
        }
        let two = lcaf_keys(vec![vec![1; 32], vec![2; 32]], 0);
        let k = find_security_key(&two).unwrap();
        assert_eq!((k.public, k.key_id), ([2; 32], 2));
        // The R bit is ignored on receipt (RFC 8061 §6).
        let revoked = find_security_key(&lcaf_keys(vec![vec![1; 32]], SecurityKey::REVOKE));
        assert_eq!(revoked.map(|k| k.key_id), Some(1));
        // Four keys, no key, or a key of the wrong size offer nothing.
        assert!(find_security_key(&lcaf_keys(vec![vec![1; 32]; 4], 0)).is_none());
        assert!(find_security_key(&lcaf_keys(vec![vec![], vec![]], 0)).is_none());
        assert!(find_security_key(&lcaf_keys(vec![vec![1; 31]], 0)).is_none());
        assert_eq!((next_key_id(1), next_key_id(2), next_key_id(3)), (2, 3, 1));
    }
}
