//! The Map-Resolver half of the engine (RFC 9301 §8.3; RFC 9962 §4: every member answers
//! lookups from its own copy of the database): admission, answers, SMRs to the ITRs that
//! had an answer ([`MapResolver`]), and RLOC-probe answers. The ITR's half (the map-cache
//! and its Map-Requests) is in `itr.rs`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;

use crate::mapping::{EidKey, EidPrefix};
use crate::wire::{
    Address, CONTROL_PORT, ControlMessage, EidRecord, MapReply, MapRequest, RequestRecord,
    RlocRecord, action,
};

use super::counters::Counters;
use super::engine::Engine;
use super::map_server::proxy_rlocs;

/// Source prefixes with a Map-Request rate-limit bucket of their own.
pub(crate) const MAX_BUCKETS: usize = 4096;
/// The rate of all Map-Requests together, in per-source rates.
pub(crate) const TOTAL_RATE_FACTOR: f64 = 20.0;
/// ITRs remembered per registered prefix for SMRs, and in all.
pub(crate) const REQUESTERS_PER_PREFIX: usize = 256;
pub(crate) const MAX_REQUESTERS: usize = 16384;
/// How long a requester is remembered for SMRs.
pub(crate) const REQUESTER_MEMORY: Duration = Duration::from_secs(600);

/// Refills a token bucket (`tokens`, last refill) at `rate` per second up to twice that, and
/// takes one token; false when there is none.
fn take_token(bucket: &mut (f64, Duration), now: Duration, rate: f64) -> bool {
    let (tokens, last) = bucket;
    let elapsed = now.saturating_sub(*last).as_secs_f64();
    *tokens = (*tokens + elapsed * rate).min(rate * 2.0);
    *last = now;
    if *tokens >= 1.0 {
        *tokens -= 1.0;
        true
    } else {
        false
    }
}

/// What the resolver answers for one EID.
enum Answer {
    Positive { key: EidKey, rlocs: Vec<RlocRecord> },
    Negative { eid: EidPrefix, ttl_mins: u32 },
}

/// Map-Request admission, the Map-Resolver's rate limits (a component of the engine with
/// its own state and bounds): a token bucket per source prefix (IPv4 /24, IPv6 /64:
/// spoofing many addresses of one network gains nothing), at `requests_per_second`, and one
/// for everything at [`TOTAL_RATE_FACTOR`] times that, so a flood from random sources costs
/// a bounded share of the node. At most [`MAX_BUCKETS`] prefixes have a bucket of their own;
/// further ones share one.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    /// The token bucket of all Map-Requests together: (tokens, last refill).
    total: (f64, Duration),
    /// Per source prefix.
    buckets: HashMap<IpAddr, (f64, Duration)>,
}

impl Default for RateLimiter {
    fn default() -> Self {
        RateLimiter {
            total: (f64::INFINITY, Duration::ZERO),
            buckets: HashMap::new(),
        }
    }
}

impl RateLimiter {
    /// Whether a Map-Request from `src` may be handled at `now` (`rate` per second per
    /// source prefix); false when over a rate, counted.
    pub(crate) fn admit(
        &mut self,
        now: Duration,
        src: IpAddr,
        rate: u32,
        counters: &mut Counters,
    ) -> bool {
        let rate = f64::from(rate.max(1));
        let total = rate * TOTAL_RATE_FACTOR;
        if !take_token(&mut self.total, now, total) {
            counters.map_requests_over_total_rate += 1;
            return false;
        }
        let prefix = match src {
            IpAddr::V4(a) => IpAddr::from(std::net::Ipv4Addr::from(u32::from(a) & 0xffff_ff00)),
            IpAddr::V6(a) => IpAddr::from(std::net::Ipv6Addr::from(
                u128::from(a) & !((1u128 << 64) - 1),
            )),
        };
        let key = if self.buckets.len() < MAX_BUCKETS || self.buckets.contains_key(&prefix) {
            prefix
        } else {
            counters.map_requests_shared_bucket += 1;
            IpAddr::from([0u8; 16])
        };
        if key != prefix && !self.buckets.contains_key(&key) {
            // The shared bucket always has room: it replaces the oldest entry.
            if let Some(oldest) = self
                .buckets
                .iter()
                .min_by_key(|(_, b)| b.1)
                .map(|(a, _)| *a)
            {
                self.buckets.remove(&oldest);
            }
        }
        let bucket = self.buckets.entry(key).or_insert((rate * 2.0, now));
        take_token(bucket, now, rate)
    }

    /// Forgets the buckets of sources idle for a minute.
    pub(crate) fn expire(&mut self, now: Duration) {
        let idle = Duration::from_secs(60);
        self.buckets
            .retain(|_, (_, t)| now.saturating_sub(*t) < idle);
    }
}

/// The Map-Resolver's answering side as a component of the engine (RFC 9301 §8.3; RFC 9962
/// §4: every member answers lookups from its own copy of the database): admission
/// ([`RateLimiter`]), answers from the database, and the ITRs that had an answer, which get
/// an SMR when the mapping changes (RFC 9301 §6.1). Its own state and bounds: requesters at
/// [`REQUESTERS_PER_PREFIX`] per prefix and [`MAX_REQUESTERS`] in all, SMRs one per 3 s per
/// ITR and prefix. What it uses of the rest of the engine comes in a [`Ctx`].
#[derive(Debug, Default)]
pub(crate) struct MapResolver {
    pub(crate) limiter: RateLimiter,
    /// Who asked us for which prefix, and when (the ITRs an SMR goes to).
    pub(crate) requesters: HashMap<EidPrefix, Vec<(IpAddr, Duration)>>,
    /// Entries in `requesters`, all prefixes together (bounded).
    pub(crate) requesters_total: usize,
    /// When an SMR last went to (ITR, prefix): at most one per 3 s (RFC 9301 §6.1).
    pub(crate) smr_sent: HashMap<(IpAddr, EidPrefix), Duration>,
}

/// What the Map-Resolver uses of the rest of the engine: the configuration, the database
/// (read only), the counters, the RNG for nonces and the outbox.
pub(crate) struct Ctx<'a> {
    pub cfg: &'a super::config::EngineConfig,
    pub site: &'a crate::mapping::SiteDb,
    pub allowed: &'a crate::mapping::PrefixTable<bool>,
    pub counters: &'a mut Counters,
    pub rng: &'a mut rand::rngs::StdRng,
    pub out: &'a mut super::outbox::Outbox,
}

/// Where a Map-Reply goes and from where: the requester's reply address and port, and our
/// RLOC it leaves from.
pub(crate) struct ReplyTo {
    pub dst: SocketAddr,
    pub src: Option<IpAddr>,
}

impl MapResolver {
    /// Whether a Map-Request from `src` is admitted ([`RateLimiter::admit`]).
    pub(crate) fn admit(&mut self, now: Duration, src: IpAddr, cx: &mut Ctx<'_>) -> bool {
        let rate = cx.cfg.timers.requests_per_second;
        self.limiter.admit(now, src, rate, cx.counters)
    }

    /// A Map-Request for mappings (not a probe, not an SMR): one Map-Reply with a record
    /// per requested EID, positive from the database or negative (RFC 9301 §8.3).
    pub(crate) fn answer_request(
        &mut self,
        now: Duration,
        q: &MapRequest,
        to: ReplyTo,
        cx: &mut Ctx<'_>,
    ) {
        let reply_ip = to.dst.ip();
        let mut records = Vec::with_capacity(q.records.len());
        let mut negative = false;
        for rr in &q.records {
            match answer(cx, rr) {
                Some(Answer::Positive { key, rlocs }) => {
                    if let EidKey::Prefix(p) = &key {
                        self.remember_requester(now, *p, reply_ip, cx.counters);
                    }
                    let (eid, ml) = key.to_wire(false);
                    // Our own mapping: we are its ETR and answer authoritatively, with our
                    // locators (RFC 9301 §5.4, §8.3); proxy replies are for the rest of the
                    // database, which we hold as the group's Map-Resolver.
                    let own = is_own_mapping(cx.cfg, &key);
                    let rlocs = if own {
                        super::registrar::own_rlocs(cx.cfg)
                    } else {
                        proxy_rlocs(rlocs)
                    };
                    let mut rec = EidRecord::new(eid, ml, cx.cfg.timers.map_reply_ttl_mins, rlocs);
                    rec.authoritative = own;
                    records.push(rec);
                }
                Some(Answer::Negative { eid, ttl_mins }) => {
                    negative = true;
                    // An ITR caching this negative answer gets an SMR when a prefix inside
                    // it registers, so it is not black-holed for the negative TTL.
                    self.remember_requester(now, eid, reply_ip, cx.counters);
                    let (a, ml) = eid.to_wire();
                    let mut rec = EidRecord::new(a, ml, ttl_mins, vec![]);
                    rec.action = action::NATIVELY_FORWARD;
                    records.push(rec);
                }
                None => {}
            }
        }
        if records.is_empty() {
            cx.counters.packets_malformed += 1;
            return;
        }
        let reply = ControlMessage::MapReply(MapReply::new(q.nonce, records));
        let Ok(payload) = reply.to_bytes() else {
            return;
        };
        cx.counters.map_replies_sent += 1;
        if negative {
            cx.counters.negative_replies_sent += 1;
        }
        cx.out.control(to.src, to.dst, payload);
    }

    /// Remembers that `itr` had a reply for `p` (it gets an SMR when `p` changes), within
    /// [`REQUESTERS_PER_PREFIX`] per prefix and [`MAX_REQUESTERS`] in all; beyond, counted.
    fn remember_requester(
        &mut self,
        now: Duration,
        p: EidPrefix,
        itr: IpAddr,
        counters: &mut Counters,
    ) {
        let full = self.requesters_total >= MAX_REQUESTERS;
        match self.requesters.get_mut(&p) {
            Some(list) => {
                if let Some(e) = list.iter_mut().find(|(a, _)| *a == itr) {
                    e.1 = now;
                    return;
                }
                if full || list.len() >= REQUESTERS_PER_PREFIX {
                    counters.requesters_not_remembered += 1;
                    return;
                }
                list.push((itr, now));
            }
            // A full table takes no new prefix either (not even an empty list).
            None if full => {
                counters.requesters_not_remembered += 1;
                return;
            }
            None => {
                self.requesters.insert(p, vec![(itr, now)]);
            }
        }
        self.requesters_total += 1;
    }

    /// SMRs to the ITRs that had an answer from us overlapping `p` in the last ten minutes
    /// (RFC 9301 §6.1): the prefix itself, or a negative answer that covers it or lies in
    /// it; at most one per ITR and prefix every 3 seconds, and at most
    /// [`REQUESTERS_PER_PREFIX`] in all.
    pub(crate) fn send_smrs(&mut self, now: Duration, p: &EidPrefix, cx: &mut Ctx<'_>) {
        let mut list: Vec<IpAddr> = Vec::new();
        for (k, v) in &self.requesters {
            if k.iid == p.iid && (k.prefix.contains(&p.prefix) || p.prefix.contains(&k.prefix)) {
                for (a, _) in v {
                    if list.len() < REQUESTERS_PER_PREFIX && !list.contains(a) {
                        list.push(*a);
                    }
                }
            }
        }
        for itr in list {
            if super::probe::is_own_rloc(cx.cfg, itr) || self.smr_sent.contains_key(&(itr, *p)) {
                continue;
            }
            let Some(own) = super::probe::source_rloc(cx.cfg, itr) else {
                continue;
            };
            let nonce: crate::wire::Nonce = rand::RngExt::random(&mut *cx.rng);
            let (eid, ml) = p.to_wire();
            let mut q = MapRequest::new(nonce, eid.clone(), Address::from(own), eid, ml);
            q.smr = true;
            let Ok(payload) = ControlMessage::MapRequest(q).to_bytes() else {
                continue;
            };
            self.smr_sent.insert((itr, *p), now);
            cx.counters.smrs_sent += 1;
            cx.out
                .control(Some(own), SocketAddr::new(itr, CONTROL_PORT), payload);
        }
    }

    /// Forgets requesters older than [`REQUESTER_MEMORY`],
    /// SMR marks older than 3 s and idle rate-limit buckets.
    pub(crate) fn expire(&mut self, now: Duration) {
        self.requesters.retain(|_, v| {
            v.retain(|(_, t)| now.saturating_sub(*t) < REQUESTER_MEMORY);
            !v.is_empty()
        });
        self.requesters_total = self.requesters.values().map(Vec::len).sum();
        self.smr_sent
            .retain(|_, t| now.saturating_sub(*t) < Duration::from_secs(3));
        self.limiter.expire(now);
    }
}

/// Whether `key` is one of our database mappings or our node name: we are its ETR.
fn is_own_mapping(cfg: &super::config::EngineConfig, key: &EidKey) -> bool {
    match key {
        EidKey::Prefix(p) => cfg.database.iter().any(|d| d.eid == *p),
        EidKey::Name { iid: 0, name } => name.as_slice() == cfg.name.as_bytes(),
        _ => false,
    }
}

fn answer(cx: &Ctx<'_>, rr: &RequestRecord) -> Option<Answer> {
    let key = EidKey::from_wire(&rr.eid, rr.mask_len)?;
    match &key {
        EidKey::Prefix(p) => match cx.site.prefixes().lookup_prefix(p) {
            Some((reg, entry)) => Some(Answer::Positive {
                key: EidKey::Prefix(reg),
                rlocs: entry.merged_rlocs().to_vec(),
            }),
            None => {
                let (eid, ttl_mins) = negative_prefix(cx.cfg, cx.site, cx.allowed, p);
                Some(Answer::Negative { eid, ttl_mins })
            }
        },
        EidKey::Name { .. } | EidKey::Group(_) => cx.site.get(&key).map(|entry| Answer::Positive {
            rlocs: entry.merged_rlocs().to_vec(),
            key: key.clone(),
        }),
    }
}

/// The negative Map-Reply prefix for an EID nobody registered (RFC 9301 §8.3): the
/// widest prefix that covers it and contains no registered and no other configured
/// prefix, inside the configured prefix that covers it if there is one. TTL: 1 minute
/// when a configured prefix covers the EID, 15 otherwise. (OOR gets this prefix wrong:
/// it answered 11.8.0.0/13 for 10.9.9.9.)
pub(crate) fn negative_prefix(
    cfg: &super::config::EngineConfig,
    site: &crate::mapping::SiteDb,
    allowed: &crate::mapping::PrefixTable<bool>,
    p: &EidPrefix,
) -> (EidPrefix, u32) {
    let container = allowed.lookup_prefix(p).map(|(c, _)| c);
    let (start, ttl) = match container {
        Some(c) => (c.prefix.prefix_len(), cfg.timers.unregistered_ttl_mins),
        None => (0, cfg.timers.negative_ttl_mins),
    };
    let addr = p.prefix.addr();
    for len in start..=p.prefix.prefix_len() {
        let Ok(net) = IpNet::new(addr, len) else {
            break;
        };
        let cand = EidPrefix::new(p.iid, net);
        let blocked = site.prefixes().has_within(&cand, None)
            || allowed.has_within(&cand, container.as_ref());
        if !blocked {
            return (cand, ttl);
        }
    }
    (*p, ttl)
}

macro_rules! resolver_ctx {
    ($e:expr) => {
        (
            &mut $e.resolver,
            super::map_resolver::Ctx {
                cfg: &$e.cfg,
                site: &$e.site,
                allowed: &$e.allowed,
                counters: &mut $e.counters,
                rng: &mut $e.rng,
                out: &mut $e.out,
            },
        )
    };
}

impl Engine {
    /// The Map-Resolver and what it uses of the rest of the engine.
    pub(crate) fn resolver_ctx(&mut self) -> (&mut MapResolver, Ctx<'_>) {
        resolver_ctx!(self)
    }

    /// Whether a Map-Request from `src` is admitted ([`RateLimiter::admit`]).
    pub(crate) fn admit(&mut self, now: Duration, src: IpAddr) -> bool {
        let (r, mut cx) = self.resolver_ctx();
        r.admit(now, src, &mut cx)
    }

    /// SMRs for a change under `p` ([`MapResolver::send_smrs`]).
    pub(crate) fn send_smrs(&mut self, now: Duration, p: &EidPrefix) {
        let (r, mut cx) = self.resolver_ctx();
        r.send_smrs(now, p, &mut cx);
    }

    /// The negative Map-Reply prefix for `p` ([`negative_prefix`]).
    pub fn negative_prefix(&self, p: &EidPrefix) -> (EidPrefix, u32) {
        negative_prefix(&self.cfg, &self.site, &self.allowed, p)
    }

    /// A Map-Request, plain or from an ECM, that arrived on our RLOC `local` (when known).
    /// `reply_port` is where the reply goes: the UDP source port of a plain request, the
    /// inner UDP source port of an ECM (RFC 9301 §5.8).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn process_request(
        &mut self,
        now: Duration,
        src: SocketAddr,
        local: Option<IpAddr>,
        reply_port: u16,
        q: &MapRequest,
        ecm: bool,
        signed: bool,
    ) {
        // Counted and rate-limited before parsing (Engine::handle_datagram).
        if q.smr {
            self.process_smr(now, q);
            return;
        }
        let reply_ip = q.reply_rloc().unwrap_or(src.ip());
        let dst = SocketAddr::new(reply_ip, reply_port);
        if q.probe {
            if ecm {
                // RLOC-probes are sent directly, never through the mapping system.
                self.counters.unsupported_messages += 1;
                return;
            }
            // The reply goes back where the probe came from: a key offered in it is bound to
            // that address, and only its owner can read our answer (RFC 8061 §12.2).
            self.answer_probe(now, src, local, q, signed);
            return;
        }
        let src = self.rloc_for(reply_ip);
        let (r, mut cx) = self.resolver_ctx();
        r.answer_request(now, q, ReplyTo { dst, src }, &mut cx);
    }

    /// RLOC-probe (RFC 9301 §6.3.2): the authoritative mapping of ours that covers the
    /// target (or the lispers.net form: the prefix in the Source-EID and an empty target),
    /// with the p bit on the locator that was probed: the RLOC the probe arrived on (so a
    /// multihomed node answers a probe of each RLOC from that RLOC, and a dead path of one
    /// does not take the answers for the other with it), else our RLOC nearest the prober.
    fn answer_probe(
        &mut self,
        now: Duration,
        src: SocketAddr,
        local: Option<IpAddr>,
        q: &MapRequest,
        signed: bool,
    ) {
        let dst = src;
        let wanted: Option<EidPrefix> = q
            .records
            .iter()
            .find_map(|r| match EidKey::from_wire(&r.eid, r.mask_len) {
                Some(EidKey::Prefix(p)) => Some(p),
                _ => None,
            })
            .or_else(|| match EidKey::from_wire(&q.source_eid, 32) {
                Some(EidKey::Prefix(p)) => Some(p),
                _ => None,
            });
        let probed = local.or_else(|| self.rloc_for(dst.ip()));
        let mut records = Vec::new();
        for d in self.cfg.database.clone() {
            if wanted.is_some_and(|w| {
                !(d.eid.prefix.contains(&w.prefix) || w.prefix.contains(&d.eid.prefix))
            }) {
                continue;
            }
            let (eid, ml) = d.eid.to_wire();
            let mut rlocs = self.own_rlocs();
            for r in &mut rlocs {
                if r.locator.ip() == probed {
                    r.flags |= RlocRecord::PROBED;
                    // lisp-crypto: our key goes in the probed locator's record.
                    if let Some(p) = probed
                        && let Some(lcaf) = self.accept_offered_key(now, q, src.ip(), p, signed)
                    {
                        r.locator = lcaf;
                    }
                }
            }
            let mut rec = EidRecord::new(eid, ml, self.cfg.timers.map_reply_ttl_mins, rlocs);
            rec.authoritative = true;
            records.push(rec);
        }
        if records.is_empty() {
            return;
        }
        let mut reply = MapReply::new(q.nonce, records);
        reply.probe = true;
        let Ok(mut payload) = ControlMessage::MapReply(reply).to_bytes() else {
            return;
        };
        // Signed toward the peer group, so the ITR can trust the key in it (and that it has
        // none).
        if self.cfg.encryption.is_some()
            && self.crypto_profile(src.ip()) == super::config::CryptoProfile::Decent
        {
            self.sign_key_exchange(&mut payload);
        }
        self.counters.probes_answered += 1;
        self.out.control(probed, dst, payload);
    }

    /// Withdraws one of our prefixes: registers it with TTL 0 wherever we registered it.
    pub(crate) fn withdraw(&mut self, now: Duration, p: EidPrefix) {
        let (eid, ml) = p.to_wire();
        let rec = EidRecord::new(eid, ml, 0, vec![]);
        self.register_with_map_servers(now, std::slice::from_ref(&rec), false);
        self.send_register_set(now, vec![rec], false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::Delivery;

    /// A full requester table takes no new prefix: Map-Requests for ever new EIDs (every
    /// negative answer is a prefix of its own) cannot grow it past its bound, not even with
    /// empty lists until the next housekeeping.
    #[test]
    fn a_full_requester_table_takes_no_new_prefix() {
        let mut e = Engine::new(crate::sim::node_config(1, Delivery::Replicate));
        let itr = IpAddr::from([192, 0, 2, 1]);
        let p = |k: u32| {
            let net = ipnet::Ipv4Net::new(std::net::Ipv4Addr::from(0x0a00_0000 + (k << 8)), 24);
            EidPrefix::new(0, ipnet::IpNet::V4(net.expect("a /24")))
        };
        for k in 0..MAX_REQUESTERS as u32 {
            e.resolver
                .remember_requester(Duration::ZERO, p(k), itr, &mut e.counters);
        }
        assert_eq!(e.resolver.requesters.len(), MAX_REQUESTERS);
        assert_eq!(e.counters.requesters_not_remembered, 0);
        for k in 0..1000 {
            e.resolver.remember_requester(
                Duration::ZERO,
                p(MAX_REQUESTERS as u32 + k),
                itr,
                &mut e.counters,
            );
        }
        assert_eq!(e.resolver.requesters.len(), MAX_REQUESTERS);
        assert_eq!(e.resolver.requesters_total, MAX_REQUESTERS);
        assert_eq!(e.counters.requesters_not_remembered, 1000);
        // A known prefix is still refreshed.
        e.resolver
            .remember_requester(Duration::from_secs(5), p(7), itr, &mut e.counters);
        assert_eq!(
            e.resolver.requesters[&p(7)],
            vec![(itr, Duration::from_secs(5))]
        );
    }
}
