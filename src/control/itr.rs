//! The control half of the ITR (RFC 9301 §8) as a component of the engine: the map-cache,
//! the Map-Requests in flight, and where a miss is resolved: the group's own database in
//! push mode (RFC 9962 §4), the Map-Server set of the EID in pull mode (RFC 9962 §5), a
//! configured Map-Resolver for what the group's database does not hold (RFC 9301 §8.1).
//! What it uses of the rest of the engine comes in a [`Ctx`].

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use rand::RngExt;

use crate::mapping::{
    CachedRloc, EidKey, EidPrefix, MapCache, MapCacheEntry, MappingSource, RlocState,
};
use crate::wire::{
    Address, CONTROL_PORT, ControlMessage, Ecm, IpUdp, MapReply, MapRequest, Nonce, RlocRecord,
    action,
};

use super::config::{EngineConfig, MappingSystem};
use super::counters::Counters;
use super::engine::Engine;
use super::probe::ProbeState;

/// TTL of the inner IP header of an Encapsulated Control Message we send.
const ECM_TTL: u8 = 64;
/// A Map-Request in flight is forgotten after this long.
const REQUEST_LIFE: Duration = Duration::from_secs(10);

/// The ITR's control state. Bounded: the map-cache by its own limit, requests in flight
/// expire after [`REQUEST_LIFE`] (and there is at most one per destination per second).
#[derive(Debug, Default)]
pub(crate) struct ItrCache {
    /// The mappings this node's ITR uses (RFC 9301 §8.1).
    pub(crate) map_cache: MapCache,
    /// Map-Requests we sent, by nonce, until answered or 10 s old.
    pub(crate) pending_requests: HashMap<Nonce, PendingRequest>,
    /// Pull mode: the Map-Server addresses of each set index.
    pub(crate) pull_servers: HashMap<u32, Vec<IpAddr>>,
    /// Pull mode: the next Map-Server of a set to ask (round robin).
    pub(crate) pull_rr: usize,
    /// The next configured Map-Resolver to ask (round robin).
    pub(crate) next_resolver: usize,
}

/// A Map-Request we sent and expect a reply to.
#[derive(Debug, Clone)]
pub(crate) struct PendingRequest {
    pub eid: EidPrefix,
    pub sent: Duration,
}

/// What the ITR uses of the rest of the engine: the configuration, the database and the
/// configured prefixes (push mode answers from them), what probing knows of each RLOC, the
/// counters, the RNG for nonces and the outbox.
pub(crate) struct Ctx<'a> {
    pub cfg: &'a EngineConfig,
    pub site: &'a crate::mapping::SiteDb,
    pub allowed: &'a crate::mapping::PrefixTable<bool>,
    pub probes: &'a HashMap<IpAddr, ProbeState>,
    pub counters: &'a mut Counters,
    pub rng: &'a mut rand::rngs::StdRng,
    pub out: &'a mut super::outbox::Outbox,
}

impl ItrCache {
    /// Refreshes the cached entries that overlap `p`. A positive entry is looked up again at
    /// once; a negative one is only dropped, and the next packet for each destination looks
    /// its host up: a negative entry may cover several prefixes, and looking up that wider
    /// prefix would find none of them registered and cache it negative again, holding a
    /// prefix that has just registered unreachable for the negative TTL.
    pub(crate) fn refresh_overlapping(
        &mut self,
        now: Duration,
        p: &EidPrefix,
        smr_invoked: bool,
        cx: &mut Ctx<'_>,
    ) {
        for cached in self.map_cache.overlapping(p) {
            let negative = self
                .map_cache
                .remove(&cached)
                .is_some_and(|e| e.is_negative());
            if !negative {
                self.resolve_prefix(now, cached, smr_invoked, cx);
            }
        }
    }

    /// A miss for `addr`: resolved at once from the database in push mode, asked for
    /// otherwise. A destination already asked for in the last second is not asked for again
    /// (RFC 9301 §5.3: at most one Map-Request per second for a destination).
    pub(crate) fn resolve(&mut self, now: Duration, iid: u32, addr: IpAddr, cx: &mut Ctx<'_>) {
        if self.map_cache.lookup(iid, addr, now).is_some() {
            return;
        }
        let host = EidPrefix::host(iid, addr);
        let asked = (matches!(cx.cfg.mapping_system, MappingSystem::Pull(_))
            || !cx.cfg.map_resolvers.is_empty())
            && self
                .pending_requests
                .values()
                .any(|p| p.eid == host && now.saturating_sub(p.sent) < Duration::from_secs(1));
        if !asked {
            self.resolve_prefix(now, host, false, cx);
        }
    }

    fn resolve_prefix(&mut self, now: Duration, p: EidPrefix, smr_invoked: bool, cx: &mut Ctx<'_>) {
        match &cx.cfg.mapping_system {
            MappingSystem::Push(_) => {
                let entry = match cx.site.prefixes().lookup_prefix(&p) {
                    None if !cx.cfg.map_resolvers.is_empty() => {
                        // Not in the group's database: a configured Map-Resolver answers.
                        self.ask_map_resolver(now, p, smr_invoked, cx);
                        return;
                    }
                    Some((reg, e)) => cache_entry(
                        now,
                        reg,
                        e.merged_rlocs().to_vec(),
                        0,
                        cx.cfg.timers.map_reply_ttl_mins,
                        MappingSource::LocalDatabase,
                    ),
                    None => {
                        let (neg, ttl) =
                            super::map_resolver::negative_prefix(cx.cfg, cx.site, cx.allowed, &p);
                        cache_entry(
                            now,
                            neg,
                            vec![],
                            action::NATIVELY_FORWARD,
                            ttl,
                            MappingSource::LocalDatabase,
                        )
                    }
                };
                self.insert_cached(entry, cx.probes);
            }
            MappingSystem::Pull(pull) => {
                let text = p.to_string();
                let index = pull.hash.index(&text, pull.modulus);
                let Some(servers) = self.pull_servers.get(&index).filter(|s| !s.is_empty()) else {
                    return;
                };
                let server = servers[self.pull_rr % servers.len()];
                self.pull_rr = self.pull_rr.wrapping_add(1);
                self.send_map_request(now, p, server, smr_invoked, false, cx);
            }
        }
    }

    /// Asks a configured Map-Resolver for `p` (RFC 9301 §8.1: an ECM to the Map-Resolver,
    /// the inner Map-Request from our RLOC, ITR-RLOC ours, replies to 4342). Round robin over
    /// the Map-Resolvers, so a dead one costs every other lookup until it is removed.
    fn ask_map_resolver(
        &mut self,
        now: Duration,
        p: EidPrefix,
        smr_invoked: bool,
        cx: &mut Ctx<'_>,
    ) {
        let resolvers = &cx.cfg.map_resolvers;
        if resolvers.is_empty() {
            return;
        }
        let mr = resolvers[self.next_resolver % resolvers.len()];
        self.next_resolver = self.next_resolver.wrapping_add(1);
        if self.send_map_request(now, p, mr, smr_invoked, true, cx) {
            cx.counters.map_resolver_requests_sent += 1;
        }
    }

    /// A Map-Request for `p` to `server`:4342 from our RLOC nearest it, ITR-RLOC ours,
    /// remembered by nonce for its reply. `ecm`: encapsulated, as a Map-Resolver outside the
    /// group expects (RFC 9301 §8.1), the inner destination the EID when the families agree
    /// (RFC 9301 §5.8), else the server; plain otherwise (the group's own Map-Servers).
    /// Returns whether it was sent.
    fn send_map_request(
        &mut self,
        now: Duration,
        p: EidPrefix,
        server: IpAddr,
        smr_invoked: bool,
        ecm: bool,
        cx: &mut Ctx<'_>,
    ) -> bool {
        let Some(own) = super::probe::source_rloc(cx.cfg, server) else {
            return false;
        };
        let nonce: Nonce = cx.rng.random();
        let (eid, ml) = p.to_wire();
        let mut q = MapRequest::new(nonce, Address::None, Address::from(own), eid, ml);
        q.smr_invoked = smr_invoked;
        let message = if ecm {
            let inner_dst = if p.prefix.addr().is_ipv4() == own.is_ipv4() {
                p.prefix.addr()
            } else {
                server
            };
            let Ok(hdr) = IpUdp::new(own, inner_dst, ECM_TTL, CONTROL_PORT, CONTROL_PORT) else {
                return false;
            };
            ControlMessage::Ecm(Ecm::new(hdr, ControlMessage::MapRequest(q)))
        } else {
            ControlMessage::MapRequest(q)
        };
        let Ok(payload) = message.to_bytes() else {
            return false;
        };
        self.pending_requests
            .insert(nonce, PendingRequest { eid: p, sent: now });
        cx.counters.map_requests_sent += 1;
        cx.out
            .control(Some(own), SocketAddr::new(server, CONTROL_PORT), payload);
        true
    }

    /// A Map-Reply (not a probe's): accepted only for a request we have outstanding (by
    /// nonce); a record that does not cover the requested EID is installed as the
    /// requested prefix.
    pub(crate) fn accept_reply(&mut self, now: Duration, r: &MapReply, cx: &mut Ctx<'_>) {
        let Some(pending) = self.pending_requests.remove(&r.nonce) else {
            cx.counters.map_replies_unmatched += 1;
            return;
        };
        for rec in &r.records {
            let Some(EidKey::Prefix(p)) = EidKey::from_wire(&rec.eid, rec.mask_len) else {
                continue;
            };
            let eid = if p.iid == pending.eid.iid && p.prefix.contains(&pending.eid.prefix) {
                p
            } else {
                pending.eid
            };
            let source = MappingSource::MapReply {
                authoritative: rec.authoritative,
            };
            self.insert_cached(
                cache_entry(now, eid, rec.rlocs.clone(), rec.action, rec.ttl, source),
                cx.probes,
            );
        }
    }

    /// Installs a map-cache entry with what probing already knows of its RLOCs.
    fn insert_cached(&mut self, mut entry: MapCacheEntry, probes: &HashMap<IpAddr, ProbeState>) {
        for r in &mut entry.rlocs {
            if let Some(p) = r.record.locator.ip().and_then(|ip| probes.get(&ip)) {
                r.state = p.state;
                r.rtt = p.rtt;
                r.via = p.via;
            }
        }
        self.map_cache.insert(entry);
    }

    /// Drops expired map-cache entries and requests unanswered for [`REQUEST_LIFE`].
    pub(crate) fn expire(&mut self, now: Duration) {
        self.map_cache.expire(now);
        self.pending_requests
            .retain(|_, p| now.saturating_sub(p.sent) < REQUEST_LIFE);
    }
}

fn cache_entry(
    now: Duration,
    eid: EidPrefix,
    rlocs: Vec<RlocRecord>,
    act: u8,
    ttl_mins: u32,
    source: MappingSource,
) -> MapCacheEntry {
    let life = if ttl_mins & 0x8000_0000 != 0 {
        Duration::from_secs(u64::from(ttl_mins & 0x7fff_ffff))
    } else {
        Duration::from_secs(u64::from(ttl_mins) * 60)
    };
    MapCacheEntry {
        eid,
        rlocs: rlocs
            .into_iter()
            .map(|record| CachedRloc {
                record,
                state: RlocState::Unknown,
                rtt: None,
                via: None,
            })
            .collect(),
        action: act,
        ttl: ttl_mins,
        installed: now,
        expires: now + life,
        source,
    }
}

macro_rules! itr_ctx {
    ($e:expr) => {
        (
            &mut $e.itr,
            super::itr::Ctx {
                cfg: &$e.cfg,
                site: &$e.site,
                allowed: &$e.allowed,
                probes: $e.prober.probes(),
                counters: &mut $e.counters,
                rng: &mut $e.rng,
                out: &mut $e.out,
            },
        )
    };
}

impl Engine {
    /// The ITR and what it uses of the rest of the engine.
    pub(crate) fn itr_ctx(&mut self) -> (&mut ItrCache, Ctx<'_>) {
        itr_ctx!(self)
    }

    /// An SMR to us: re-resolve every cached entry it concerns (RFC 9301 §6.1: through the
    /// mapping system, never trusting the SMR's sender).
    pub(crate) fn process_smr(&mut self, now: Duration, q: &MapRequest) {
        self.counters.smrs_received += 1;
        let (itr, mut cx) = self.itr_ctx();
        for rr in &q.records {
            if let Some(EidKey::Prefix(p)) = EidKey::from_wire(&rr.eid, rr.mask_len) {
                itr.refresh_overlapping(now, &p, true, &mut cx);
            }
        }
    }

    /// Our database changed under `p`: the cached entries that overlap it are refreshed
    /// (push mode).
    pub(crate) fn refresh_cache(&mut self, now: Duration, p: &EidPrefix) {
        if matches!(self.cfg.mapping_system, MappingSystem::Push(_)) {
            let (itr, mut cx) = self.itr_ctx();
            itr.refresh_overlapping(now, p, false, &mut cx);
        }
    }

    /// ITR lookup: the live map-cache entry for an EID, resolving it on a miss. In push mode
    /// the answer comes from the node's own database at once; in pull mode a Map-Request goes
    /// to the Map-Resolver set of the EID and `None` is returned until the reply arrives.
    pub fn resolve(&mut self, now: Duration, iid: u32, addr: IpAddr) -> Option<&MapCacheEntry> {
        let (itr, mut cx) = self.itr_ctx();
        itr.resolve(now, iid, addr, &mut cx);
        self.itr.map_cache.lookup(iid, addr, now)
    }

    /// A Map-Reply: a probe's goes to the prober, the rest to the ITR.
    pub(crate) fn process_reply(&mut self, now: Duration, r: &MapReply, signed: bool) {
        self.counters.map_replies_received += 1;
        if r.probe && self.probe_answered(now, r, signed) {
            return;
        }
        let (itr, mut cx) = self.itr_ctx();
        itr.accept_reply(now, r, &mut cx);
    }
}
