//! The sans-IO LISP-Decent control engine: datagrams and `now` in, datagrams and deadlines
//! out (the quinn-proto / boringtun split). `node` drives it with real sockets and clocks,
//! the simulator with virtual ones.
//!
//! One engine is a node's Map-Server, Map-Resolver, ETR registrar and the control half of
//! its ITR (RFC 9962 §4: every member is all four).

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::dataplane::KeyEvent;
use crate::mapping::{EidKey, EidPrefix, GroupEid, MapCache, SiteDb};
use crate::wire::{
    Address, CONTROL_PORT, ControlMessage, DATA_PORT, MapReply, MapRequest, Reader, msg_type,
};

use super::config::{CryptoProfile, EngineConfig, MappingSystem};
use super::counters::Counters;
use super::probe::ProbeState;

pub(crate) use super::outbox::Outbox;
pub use super::outbox::Transmit;

/// The control engine of one node.
pub struct Engine {
    pub(crate) cfg: EngineConfig,
    pub(crate) site: SiteDb,
    pub(crate) allowed: crate::mapping::PrefixTable<bool>,
    pub(crate) counters: Counters,
    pub(crate) rng: StdRng,
    pub(crate) out: Outbox,
    /// RLOC-probing and the lisp-crypto key exchange (both sides).
    pub(crate) prober: super::probe::Prober,
    /// Map-Request admission (the Map-Resolver's rate limits).
    pub(crate) resolver: super::map_resolver::MapResolver,
    pub(crate) next_housekeeping: Duration,
    /// The key that signs lisp-crypto exchanges in the peer group (from the site key).
    pub(crate) kx_key: Option<crate::crypto::kx_auth::KxKey>,
    /// Every site key's, for checking (a key being rolled over still verifies).
    pub(crate) kx_keys: Vec<crate::crypto::kx_auth::KxKey>,
    /// Bumped on every change of a registered mapping.
    pub(crate) generation: u64,
    /// When each source address last sent us a control message (bounded; for the peers
    /// view).
    pub(crate) heard: HashMap<IpAddr, Duration>,
    /// Map-Servers and Map-Resolvers outside the group.
    pub(crate) external: super::external::External,
    /// Our Map-Registers, greetings, seeds and learned members.
    pub(crate) registrar: super::registrar::Registrar,
    /// The Map-Server beside the database: pending Notifies, replays, SMR targets.
    pub(crate) map_server: super::map_server::MapServer,
    /// The ITR: the map-cache and the Map-Requests in flight.
    pub(crate) itr: super::itr::ItrCache,
    /// NAT detection: our Info-Requests and what they found, and answers to others'.
    pub(crate) nat: super::nat::NatDetector,
    /// As RTR: the nodes behind NATs registered through us.
    pub(crate) rtr: super::rtr::Relay,
    /// Behind a NAT: direct paths to nodes behind other NATs.
    pub(crate) direct: super::direct::Direct,
}

/// At most this many sources are remembered in [`Engine::last_heard`]; spoofed sources
/// cannot grow it without bound.
const MAX_HEARD: usize = 4096;

/// Unsolicited Map-Notify retransmission (RFC 9301 §5.7: 3 tries, 3 s apart).
pub(crate) const NOTIFY_RETRY: Duration = Duration::from_secs(3);
/// Membership changes within this window share one round of Map-Notifies (a burst of joins
/// costs one Notify per member, not one per join and member).
pub(crate) const NOTIFY_COALESCE: Duration = Duration::from_millis(20);
/// The gap to the second announcement of a membership change.
pub(crate) const NOTIFY_REPEAT: Duration = Duration::from_secs(1);
/// The shortest gap between two rounds of Map-Registers triggered by a change.
pub(crate) const QUICK_REGISTER_GAP: Duration = Duration::from_secs(1);
/// The shortest gap before the round of Map-Registers that tells the members our new RLOCs
/// (a node that roams is unreachable at the old ones until they know; the node re-reads its
/// addresses at most every 20 ms, so a flapping interface costs at most ten rounds a second).
pub(crate) const ROAM_REGISTER_GAP: Duration = Duration::from_millis(100);
const HOUSEKEEPING: Duration = Duration::from_secs(1);

impl Engine {
    pub fn new(cfg: EngineConfig) -> Self {
        let mut allowed = crate::mapping::PrefixTable::new();
        for a in &cfg.site.allowed {
            allowed.insert(a.eid, a.accept_more_specifics);
        }
        let register_nonce = super::register_replay::NonceCounter::new(cfg.register_nonce_base);
        let servers = cfg.map_servers.len();
        let kx_keys = cfg
            .site
            .keys
            .keys
            .iter()
            .map(|k| crate::crypto::kx_auth::KxKey::from_site_key(&k.secret))
            .collect();
        let kx_key = cfg
            .site
            .own_key
            .as_ref()
            .map(|(k, _)| crate::crypto::kx_auth::KxKey::from_site_key(&k.secret));
        Engine {
            rng: StdRng::seed_from_u64(cfg.rng_seed),
            cfg,
            site: SiteDb::new(),
            allowed,
            counters: Counters::default(),
            out: Outbox::default(),
            resolver: Default::default(),
            next_housekeeping: Duration::ZERO,
            generation: 0,
            prober: super::probe::Prober::default(),
            kx_key,
            kx_keys,
            heard: HashMap::new(),
            external: super::external::External::new(servers),
            registrar: super::registrar::Registrar::new(register_nonce),
            map_server: Default::default(),
            itr: Default::default(),
            nat: Default::default(),
            rtr: Default::default(),
            direct: Default::default(),
        }
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// The registrations this node's Map-Server holds (the peer group's database).
    pub fn site_db(&self) -> &SiteDb {
        &self.site
    }

    pub fn map_cache(&self) -> &MapCache {
        &self.itr.map_cache
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// When `addr` last sent us a well-formed control message (directly or replicated).
    pub fn last_heard(&self, addr: IpAddr) -> Option<Duration> {
        self.heard.get(&addr).copied()
    }

    /// The ETR side of lisp-crypto: how many ITR addresses hold key offers (bounded by
    /// `MAX_ETR_PEERS`).
    pub fn etr_key_peers(&self) -> usize {
        self.prober.etr_peers()
    }

    /// Forgets every cached mapping (an operator's "clear map-cache"); the lookups that
    /// follow fill it again from the database or with Map-Requests.
    pub fn clear_map_cache(&mut self) -> usize {
        let n = self.itr.map_cache.len();
        self.itr.map_cache = MapCache::new();
        n
    }

    /// Sends a full round of Map-Registers at the next timeout, whatever the interval.
    pub fn register_now(&mut self, now: Duration) {
        self.registrar.register_due = now;
    }

    /// A number that changes whenever a registered mapping does (for the node to follow
    /// the database with routes without comparing it whole).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.transmits.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) wants to be called next.
    pub fn poll_timeout(&self) -> Duration {
        let mut t = self.registrar.register_due.min(self.next_housekeeping);
        if let Some(e) = self.site.next_expiry() {
            t = t.min(e);
        }
        if let Some(n) = self.map_server.next_timer() {
            t = t.min(n);
        }
        if let Some(n) = self.prober.next_due() {
            t = t.min(n);
        }
        if let Some(n) = self.registrar.greeting_timers.next() {
            t = t.min(n);
        }
        if let Some(n) = self.external.next_retry() {
            t = t.min(n);
        }
        if let Some(n) = self.direct.next_due() {
            t = t.min(n);
        }
        if self.cfg.site.own_key.is_some() {
            t = t.min(self.nat.next_due());
        }
        t
    }

    /// Runs every timer that is due at `now`.
    pub fn handle_timeout(&mut self, now: Duration) {
        if now >= self.registrar.register_due {
            self.send_registrations(now);
        }
        let expired = self.site.expire(now);
        if !expired.is_empty() {
            self.counters.registrations_expired += expired.len() as u64;
            let replicate = matches!(&self.cfg.mapping_system,
                MappingSystem::Push(g) if g.delivery == super::config::Delivery::Replicate);
            for (key, _, registerer) in &expired {
                self.mapping_changed(now, key);
                if matches!(self.cfg.mapping_system, MappingSystem::Push(_))
                    && (!replicate || matches!(key, EidKey::Group(_)))
                {
                    self.lose_member(now, *registerer);
                }
            }
        }
        if self.map_server.membership_round_due(now) {
            self.notify_rle_members(now);
        }
        let (ms, mut cx) = self.map_server_ctx();
        ms.retransmit_notifies(now, &mut cx);
        self.retransmit_to_map_servers(now);
        let (prober, mut cx) = self.prober_ctx();
        prober.send_due(now, &mut cx);
        if std::mem::take(&mut self.prober.rtr_probed)
            && let Some(rtr) = self.cfg.via_rtr
        {
            self.register_with_rtr(now, rtr);
        }
        self.direct.send_due(
            now,
            &self.cfg,
            self.kx_key.as_ref(),
            &mut self.counters,
            &mut self.rng,
            &mut self.out,
        );
        if now >= self.nat.next_due() {
            let candidates = self.info_candidates();
            self.nat.send_due(
                now,
                &self.cfg,
                &candidates,
                &mut self.counters,
                &mut self.rng,
                &mut self.out,
            );
        }
        self.registrar_timers(now, now >= self.next_housekeeping);
        if now >= self.next_housekeeping {
            self.next_housekeeping = now + HOUSEKEEPING;
            self.heard
                .retain(|_, t| now.saturating_sub(*t) < Duration::from_secs(3600));
            self.itr.expire(now);
            self.track_probed_rlocs(now);
            self.prober.expire_offers(now);
            self.rtr.expire(now, &mut self.out);
            self.map_server.register_nonces.expire(now);
            self.resolver.expire(now);
        }
    }

    /// Handles one received UDP datagram. `dst` is the local address and port it arrived on
    /// (port 4341 carries LISP-Decent replication, 4342 control messages).
    pub fn handle_datagram(
        &mut self,
        now: Duration,
        src: SocketAddr,
        dst: SocketAddr,
        payload: &[u8],
    ) {
        self.counters.packets_received += 1;
        if dst.port() == DATA_PORT {
            // LISP data is the data plane's (`dataplane::Xtr::decapsulate`); what it finds to
            // be control carried in data comes in through `handle_replicated`.
            self.counters.data_packets_ignored += 1;
            return;
        }
        // Map-Requests are rate-limited before they are parsed: a flood from random sources
        // costs a token-bucket lookup each, not a parse.
        if matches!(
            payload.first().map(|b| b >> 4),
            Some(msg_type::MAP_REQUEST | msg_type::ECM)
        ) {
            self.counters.map_requests_received += 1;
            if !self.admit(now, src.ip()) {
                self.counters.map_requests_rate_limited += 1;
                return;
            }
        }
        // NAT detection: a request costs a reply, so it is rate-limited as a Map-Request.
        if payload.first().map(|b| b >> 4) == Some(msg_type::INFO) {
            if !self.admit(now, src.ip()) {
                self.counters.info_rate_limited += 1;
                return;
            }
            match ControlMessage::parse(payload) {
                Ok(ControlMessage::Info(m)) => {
                    self.nat.handle(
                        now,
                        &self.cfg,
                        src,
                        dst,
                        payload,
                        &m,
                        &mut self.counters,
                        &mut self.out,
                    );
                    self.update_rtr(now);
                }
                _ => self.counters.packets_malformed += 1,
            }
            return;
        }
        // A key exchange signed with the site key ends with a trailer (crypto::kx_auth).
        if let Some((message, _)) = crate::crypto::kx_auth::split(payload)
            && let Ok(m) = ControlMessage::parse(message)
        {
            let signed = self.kx_keys.iter().any(|k| k.verify(payload));
            if !signed {
                self.counters.key_exchange_bad_signature += 1;
            }
            self.handle_control(now, src, message, &m, Arrival::Direct(dst.ip()), signed);
            return;
        }
        match ControlMessage::parse(payload) {
            Ok(m) => self.handle_control(now, src, payload, &m, Arrival::Direct(dst.ip()), false),
            Err(_) => self.counters.packets_malformed += 1,
        }
    }

    /// Control carried in data (RFC 9962 §4: LISP-Decent replication): what the data plane
    /// found under Instance-ID 0xFFFFFF, clear, after the LISP header, from `from` (the
    /// outer source: a NAT's binding for a node behind one): an IP / UDP header to port
    /// 4342, then the message. To the group's address: a Map-Register, Map-Notify or
    /// Map-Notify-Ack of the replication. To one of our RLOCs: NAT traversal's control
    /// ([`super::rtr`]): as RTR, the registers and probes of nodes behind NATs; behind a
    /// NAT, our RTR's answers.
    pub fn handle_replicated(&mut self, now: Duration, from: SocketAddr, payload: &[u8]) {
        self.counters.packets_received += 1;
        let mut r = Reader::new(payload);
        let Ok((ip, mut body)) = crate::wire::IpUdp::parse(&mut r) else {
            self.counters.packets_malformed += 1;
            return;
        };
        let to_group = match &self.cfg.mapping_system {
            MappingSystem::Push(g) => ip.ip.dst() == g.group,
            MappingSystem::Pull(_) => false,
        };
        let to_us = !to_group && self.is_own_rloc(ip.ip.dst());
        if !(to_group || to_us) || ip.dport != CONTROL_PORT {
            self.counters.data_packets_ignored += 1;
            return;
        }
        let inner = body.rest();
        let kind = inner.first().map(|b| b >> 4);
        let sender = SocketAddr::new(ip.ip.src(), ip.sport);
        if to_us {
            self.handle_nat_control(now, from, ip.ip.dst(), sender, inner, kind);
            return;
        }
        // Replication carries the group's registrations and their notifications only; a
        // Map-Request has no business there (and would go around the rate limit).
        if !matches!(
            kind,
            Some(msg_type::MAP_REGISTER | msg_type::MAP_NOTIFY | msg_type::MAP_NOTIFY_ACK)
        ) {
            self.counters.data_packets_ignored += 1;
            return;
        }
        self.counters.replicated_received += 1;
        match ControlMessage::parse(inner) {
            Ok(ControlMessage::MapRegister(reg)) => {
                self.register_in_data(now, from, sender, inner, &reg)
            }
            Ok(m) => self.handle_control(now, sender, inner, &m, Arrival::Group, false),
            Err(_) => self.counters.packets_malformed += 1,
        }
    }

    /// A Map-Register carried in data from `from` (its inner source `sender`), processed
    /// as the group's. As RTR, a node behind a NAT that registered us as its locator is
    /// bound at `from`, the binding its register came through.
    fn register_in_data(
        &mut self,
        now: Duration,
        from: SocketAddr,
        sender: SocketAddr,
        bytes: &[u8],
        reg: &crate::wire::MapRegister,
    ) {
        if self.process_register(now, sender, bytes, reg, Arrival::Group) && self.cfg.nat.rtr {
            let (cfg, counters, out) = (&self.cfg, &mut self.counters, &mut self.out);
            self.rtr
                .learn(now, cfg, (from, sender.ip()), reg, counters, out);
        }
    }

    /// A message and whether it carried a valid site-key signature of a key exchange
    /// (`crypto::kx_auth`): the message without the trailer when it has one.
    fn split_signed<'a>(&self, payload: &'a [u8]) -> (&'a [u8], bool) {
        match crate::crypto::kx_auth::split(payload) {
            Some((message, _)) => (message, self.kx_keys.iter().any(|k| k.verify(payload))),
            None => (payload, false),
        }
    }

    /// NAT traversal's control carried in data to one of our RLOCs (`local`), from `from`.
    fn handle_nat_control(
        &mut self,
        now: Duration,
        from: SocketAddr,
        local: IpAddr,
        sender: SocketAddr,
        inner: &[u8],
        kind: Option<u8>,
    ) {
        match kind {
            // As RTR: an RLOC-probe of a node behind a NAT (its key exchange with us, and
            // the keep-alive of its binding), answered through the binding, with the key
            // bound to the binding.
            // Behind a NAT: the probe of a node behind another NAT trying a direct path
            // (`super::direct`), answered the same way.
            Some(msg_type::MAP_REQUEST) if self.cfg.nat.rtr || self.cfg.via_rtr.is_some() => {
                if !self.admit(now, from.ip()) {
                    self.counters.map_requests_rate_limited += 1;
                    return;
                }
                self.counters.rtr_control_received += 1;
                let (message, signed) = self.split_signed(inner);
                let Ok(ControlMessage::MapRequest(q)) = ControlMessage::parse(message) else {
                    self.counters.packets_malformed += 1;
                    return;
                };
                if !q.probe || q.smr {
                    self.counters.data_packets_ignored += 1;
                    return;
                }
                let (sent, keys) = (self.out.transmits.len(), self.out.keys.len());
                self.process_request(now, from, Some(local), from.port(), &q, false, signed);
                // Behind a NAT: a node we were introduced to probes us from elsewhere than
                // the binding the RTR knows (its NAT gave this flow another port): its
                // direct path is there.
                if signed && self.cfg.via_rtr.is_some() {
                    self.direct.seen_at(now, from, sender.ip());
                }
                // What the answer produced goes back through the binding, carried in data;
                // the key it agreed is the binding's.
                let answers: Vec<Transmit> = self.out.transmits.drain(sent..).collect();
                for t in answers {
                    let nonce = rand::RngExt::random::<u32>(&mut self.rng);
                    super::rtr::send_in_data(
                        &mut self.out,
                        local,
                        sender.ip(),
                        from,
                        nonce,
                        &t.payload,
                    );
                }
                let agreed: Vec<KeyEvent> = self.out.keys.drain(keys..).collect();
                for k in agreed {
                    self.out.keys.push_back(match k {
                        KeyEvent::Recv {
                            suite, key_id, key, ..
                        } => KeyEvent::Binding {
                            at: from,
                            suite,
                            key_id,
                            key,
                            // As RTR we seal toward it under the reverse key; a node
                            // behind a NAT answering a direct probe keys its own way.
                            reverse: self.cfg.via_rtr.is_none(),
                        },
                        other => other,
                    });
                }
            }
            // As RTR: a register sent to us rather than replicated (a node behind a NAT
            // whose RTR is not a member it replicates to).
            Some(msg_type::MAP_REGISTER) if self.cfg.nat.rtr => {
                self.counters.rtr_control_received += 1;
                match ControlMessage::parse(inner) {
                    Ok(ControlMessage::MapRegister(reg)) => {
                        self.register_in_data(now, from, sender, inner, &reg)
                    }
                    _ => self.counters.packets_malformed += 1,
                }
            }
            // Behind a NAT: our RTR's answer to our probe (matched by its nonce).
            Some(msg_type::MAP_REPLY) if self.cfg.via_rtr.is_some() => {
                let (message, signed) = self.split_signed(inner);
                let rtr = self.cfg.via_rtr.map(|a| SocketAddr::new(a, DATA_PORT));
                match ControlMessage::parse(message) {
                    // The answer of a node behind another NAT to our direct probe.
                    Ok(ControlMessage::MapReply(r)) if self.direct.owns(&r.nonce) => {
                        let (counters, out) = (&mut self.counters, &mut self.out);
                        self.direct.answered(now, from, &r, signed, counters, out);
                    }
                    // Our RTR introduces a node behind another NAT (signed with the site
                    // key, through our binding).
                    Ok(ControlMessage::MapReply(r))
                        if signed
                            && Some(from) == rtr
                            && !super::direct::introduced(&r).is_empty() =>
                    {
                        for peer in super::direct::introduced(&r) {
                            let (cfg, counters, rng) =
                                (&self.cfg, &mut self.counters, &mut self.rng);
                            self.direct.introduce(now, cfg, peer, counters, rng);
                        }
                    }
                    Ok(m @ ControlMessage::MapReply(_)) => {
                        self.handle_control(now, from, message, &m, Arrival::Direct(local), signed)
                    }
                    _ => self.counters.packets_malformed += 1,
                }
            }
            _ => self.counters.data_packets_ignored += 1,
        }
    }

    /// Dispatches a parsed control message that arrived as `arrival` says; `signed` when
    /// it carried a valid site-key signature of a key exchange.
    pub(crate) fn handle_control(
        &mut self,
        now: Duration,
        src: SocketAddr,
        bytes: &[u8],
        m: &ControlMessage,
        arrival: Arrival,
        signed: bool,
    ) {
        // The multicast socket's address is the group's, not ours.
        let local = match arrival {
            Arrival::Direct(a) if !a.is_multicast() && self.is_own_rloc(a) => Some(a),
            _ => None,
        };
        if self.heard.len() < MAX_HEARD || self.heard.contains_key(&src.ip()) {
            self.heard.insert(src.ip(), now);
        }
        match m {
            ControlMessage::MapRegister(r) => {
                self.process_register(now, src, bytes, r, arrival);
            }
            ControlMessage::MapNotify(n) => self.process_notify(now, src, bytes, n),
            ControlMessage::MapNotifyAck(n) => {
                let (ms, mut cx) = self.map_server_ctx();
                ms.notify_acked(bytes, n, &mut cx);
            }
            ControlMessage::MapRequest(q) => {
                self.process_request(now, src, local, src.port(), q, false, signed)
            }
            ControlMessage::Ecm(e) => match &*e.inner {
                ControlMessage::MapRequest(q) => {
                    self.process_request(now, src, local, e.inner_header.sport, q, true, false)
                }
                _ => self.counters.unsupported_messages += 1,
            },
            ControlMessage::MapReply(r) => self.process_reply(now, r, signed),
            ControlMessage::MapReferral(_) | ControlMessage::Info(_) => {
                self.counters.unsupported_messages += 1
            }
        }
    }

    /// Whom our Info-Requests go to: the seeds, then the members, then the pull-mode
    /// Map-Servers (every member is a Map-Server that answers, RFC 9962 §1).
    fn info_candidates(&self) -> Vec<IpAddr> {
        let mut c: Vec<IpAddr> = match &self.cfg.mapping_system {
            MappingSystem::Push(pg) => pg.seeds.clone(),
            MappingSystem::Pull(_) => Vec::new(),
        };
        c.extend(self.members());
        c.extend(self.itr.pull_servers.values().flatten().copied());
        c
    }

    /// Behind a NAT: the direct paths to nodes behind other NATs, by binding.
    pub fn direct_paths(&self) -> &HashMap<SocketAddr, super::direct::DirectPeer> {
        self.direct.peers()
    }

    /// As RTR: the nodes behind NATs registered through us (draft §5.3).
    pub fn rtr_bindings(&self) -> &HashMap<crate::mapping::EidPrefix, super::rtr::Bound> {
        self.rtr.bound()
    }

    /// What NAT detection found, per RLOC of ours.
    pub fn nat_status(&self) -> &std::collections::BTreeMap<IpAddr, super::nat::NatStatus> {
        self.nat.status()
    }

    /// Our RLOC of the same family as `peer`.
    pub(crate) fn rloc_for(&self, peer: IpAddr) -> Option<IpAddr> {
        self.source_rloc(peer)
    }

    /// Our RLOC to talk to `peer` from ([`crate::dataplane::select::source_rloc`]).
    pub fn source_rloc(&self, peer: IpAddr) -> Option<IpAddr> {
        super::probe::source_rloc(&self.cfg, peer)
    }

    pub(crate) fn is_own_rloc(&self, a: IpAddr) -> bool {
        super::probe::is_own_rloc(&self.cfg, a)
    }

    /// Signs a key-exchange message with the site key (the peer-group profile); without a
    /// site key it goes unsigned, and a member takes no key from it.
    pub(crate) fn sign_key_exchange(&self, payload: &mut Vec<u8>) {
        super::probe::sign_key_exchange(self.kx_key.as_ref(), payload);
    }

    /// The peer group's `(0/0, G)` key, in push mode.
    pub(crate) fn group_key(&self) -> Option<GroupEid> {
        match &self.cfg.mapping_system {
            MappingSystem::Push(g) => Some(GroupEid::any_source(0, g.group)),
            MappingSystem::Pull(_) => None,
        }
    }

    /// Pull mode: the addresses the node resolved for `<index>.<suffix>`; a change makes
    /// the node register at once.
    pub fn set_pull_servers(&mut self, now: Duration, index: u32, addrs: Vec<IpAddr>) {
        let changed = self.itr.pull_servers.get(&index) != Some(&addrs);
        self.itr.pull_servers.insert(index, addrs);
        if changed {
            self.schedule_quick_register(now);
        }
    }

    /// Replaces the node's RLOCs (an interface address changed): registers with every
    /// member at once ([`ROAM_REGISTER_GAP`] after the last round at the earliest), and
    /// probes and keys from the new addresses.
    pub fn set_rlocs(&mut self, now: Duration, rlocs: Vec<super::config::LocalRloc>) {
        if rlocs != self.cfg.rlocs {
            self.cfg.rlocs = rlocs;
            self.schedule_register_after(now, ROAM_REGISTER_GAP);
            // Keys and probes from the address our packets now come from.
            self.prober.our_rlocs_changed(now, &self.cfg);
            // A new address may be behind a NAT, or no longer.
            self.nat.rlocs_changed(now, &self.cfg);
            self.update_rtr(now);
        }
    }

    /// As RTR: traffic crosses between the nodes behind NATs at `a` and `b`: each is told
    /// where the other is ([`super::direct`]).
    fn introduce(&mut self, a: SocketAddr, b: SocketAddr) {
        for (to, other) in [(a, b), (b, a)] {
            let (eids, private) = self.rtr.at(other);
            let (_, to_private) = self.rtr.at(to);
            let (Some(private), Some(to_private)) = (private, to_private) else {
                continue;
            };
            let Some(own) = self.source_rloc(to.ip()) else {
                continue;
            };
            let nonce: crate::wire::Nonce = rand::RngExt::random(&mut self.rng);
            let Some(bytes) = super::direct::introduction(
                &eids,
                other,
                private,
                own,
                nonce,
                self.kx_key.as_ref(),
            ) else {
                continue;
            };
            self.counters.rtr_introductions += 1;
            let n: u32 = rand::RngExt::random(&mut self.rng);
            super::rtr::send_in_data(&mut self.out, own, to_private, to, n, &bytes);
        }
    }

    /// Behind a NAT, the RTR to register and send through (draft §5.1.1), as NAT detection
    /// last found: when it changes (taken, left, another), our mappings are registered
    /// again at once with the new locators, the data plane is told, and the RTR is probed
    /// (our key with it, and our binding's keep-alive).
    pub(crate) fn update_rtr(&mut self, now: Duration) {
        let rtr = self.nat.rtr(&self.cfg, self.cfg.via_rtr);
        if rtr == self.cfg.via_rtr {
            return;
        }
        match rtr {
            Some(r) => {
                tracing::warn!(rtr = %r, "behind a NAT: registering and sending through the RTR")
            }
            None => tracing::info!(was = ?self.cfg.via_rtr, "no longer through an RTR"),
        }
        self.counters.rtr_changes += 1;
        self.cfg.via_rtr = rtr;
        // What goes into the tunnel changes (everything, while through an RTR).
        self.generation += 1;
        self.out.keys.push_back(KeyEvent::ViaRtr { rtr });
        if rtr.is_none() {
            self.direct.clear(&mut self.out);
        }
        self.schedule_register_after(now, ROAM_REGISTER_GAP);
        if let Some(r) = rtr {
            // A fresh exchange through the binding, even with a key agreed directly before
            // (NAT detection answers after the first probes): the RTR keys it by the
            // binding, and we take its reverse key for what it sends us.
            self.prober
                .probe_now(now, &self.cfg, r, super::probe::any_eid(r));
            self.prober.rekey_now(now, &self.cfg, r);
        }
    }

    /// Replaces the database mappings: registers at once.
    pub fn set_database(&mut self, now: Duration, db: Vec<super::config::DatabaseMapping>) {
        if db != self.cfg.database {
            let old: Vec<EidPrefix> = self.cfg.database.iter().map(|d| d.eid).collect();
            self.cfg.database = db;
            // Withdraw prefixes we no longer have.
            for p in old {
                if !self.cfg.database.iter().any(|d| d.eid == p) {
                    self.withdraw(now, p);
                }
            }
            self.schedule_quick_register(now);
        }
    }

    /// A round of registrations triggered by a change ([`QUICK_REGISTER_GAP`] after the
    /// last round at the earliest).
    pub(crate) fn schedule_quick_register(&mut self, now: Duration) {
        self.schedule_register_after(now, QUICK_REGISTER_GAP);
    }

    /// A round of registrations now, or `gap` after the last round when that is later.
    fn schedule_register_after(&mut self, now: Duration, gap: Duration) {
        let t = match self.registrar.last_register {
            Some(l) => now.max(l + gap),
            None => now,
        };
        self.registrar.register_due = self.registrar.register_due.min(t);
    }
}

/// How a control message reached the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Arrival {
    /// Sent to us, arriving on this local address (ours, or the group's for underlay
    /// multicast, or a wildcard).
    Direct(IpAddr),
    /// A group delivery (replication), which every member also received.
    Group,
    /// Our own register, handed to our own Map-Server without the network.
    Local,
}

impl Engine {
    /// What a data plane asked: resolve a destination, probe an RLOC now (packets wait for
    /// its key), or agree a fresh key. A node with several data-plane workers hands each
    /// worker's requests here; [`exchange`](Self::exchange) does for one [`Xtr`](crate::dataplane::Xtr).
    pub fn handle_request(&mut self, now: Duration, r: crate::dataplane::ControlRequest) {
        use crate::dataplane::ControlRequest;
        match r {
            ControlRequest::Resolve { iid, dst } => {
                self.resolve(now, iid, dst);
            }
            ControlRequest::Probe { rloc, prefix } => self.probe_now(now, rloc, prefix),
            ControlRequest::Rekey { rloc } => self.rekey_now(now, rloc),
            ControlRequest::Check { rloc } => {
                if self.prober.check_now(now, &self.cfg, rloc) {
                    self.counters.path_checks += 1;
                }
            }
            ControlRequest::Introduce { a, b } => self.introduce(a, b),
            ControlRequest::CheckDirect { at } => self.direct.check_now(now, at),
        }
    }

    /// The exchange between the control plane and the data plane at `now` (the contract
    /// of the two sans-IO halves, the same in the node and in the simulator): keys agreed in
    /// RLOC-probes go to the data plane, its requests (resolve, probe now, rekey) come
    /// here, and packets waiting for a mapping leave once the map-cache holds it. A probe
    /// asked for is sent at once (the engine's timers run after the requests).
    pub fn exchange(&mut self, now: Duration, xtr: &mut crate::dataplane::Xtr) {
        // The data plane's timers first: a check it asks for goes out in this exchange.
        xtr.handle_timeout(now, self.map_cache());
        // Each round may release packets that ask for a probe; a few rounds settle it.
        for _ in 0..4 {
            while let Some(e) = self.poll_key_event() {
                xtr.handle_key_event(now, e);
            }
            let mut asked = false;
            while let Some(r) = xtr.poll_control_request() {
                asked = true;
                self.handle_request(now, r);
            }
            xtr.handle_mappings(now, self.map_cache());
            if !asked {
                break;
            }
            self.handle_timeout(now);
        }
    }
}

/// The prober of `$engine` and a [`Ctx`](super::probe::Ctx) on the rest (a macro, so that the caller may
/// borrow the fields the context leaves alone).
macro_rules! prober_ctx {
    ($e:expr) => {
        (
            &mut $e.prober,
            super::probe::Ctx {
                cfg: &$e.cfg,
                counters: &mut $e.counters,
                rng: &mut $e.rng,
                out: &mut $e.out,
                map_cache: &mut $e.itr.map_cache,
                kx_key: $e.kx_key.as_ref(),
            },
        )
    };
}

impl Engine {
    /// The prober and what it uses of the rest of the engine.
    pub(crate) fn prober_ctx(&mut self) -> (&mut super::probe::Prober, super::probe::Ctx<'_>) {
        prober_ctx!(self)
    }

    /// ETR: the key an RLOC-probe offers ([`Prober::accept_offer`]).
    pub(crate) fn accept_offered_key(
        &mut self,
        now: Duration,
        q: &MapRequest,
        from: IpAddr,
        probed: IpAddr,
        signed: bool,
    ) -> Option<Address> {
        let (prober, mut cx) = self.prober_ctx();
        prober.accept_offer(now, &mut cx, q, from, probed, signed)
    }

    /// The probing state of every RLOC in use.
    pub fn probes(&self) -> &HashMap<IpAddr, ProbeState> {
        self.prober.probes()
    }

    /// The lisp-crypto profile spoken with `rloc` ([`crypto_profile`](super::probe::crypto_profile)).
    pub fn crypto_profile(&self, rloc: IpAddr) -> CryptoProfile {
        super::probe::crypto_profile(&self.cfg, rloc)
    }

    /// Probes `rloc` (serving `prefix`) at the next timeout ([`Prober::probe_now`]).
    pub fn probe_now(&mut self, now: Duration, rloc: IpAddr, prefix: EidPrefix) {
        self.prober.probe_now(now, &self.cfg, rloc, prefix);
    }

    /// Agrees a fresh key with `rloc` through a probe now ([`Prober::rekey_now`]).
    pub fn rekey_now(&mut self, now: Duration, rloc: IpAddr) {
        self.prober.rekey_now(now, &self.cfg, rloc);
    }

    /// The probes of the RLOCs in use follow the map-cache and the database.
    pub(crate) fn track_probed_rlocs(&mut self, now: Duration) {
        let members: HashSet<IpAddr> = self.members().into_iter().collect();
        let (site, generation) = (&self.site, self.generation);
        let (prober, mut cx) = prober_ctx!(self);
        prober.track(now, &mut cx, site, generation, &members);
    }

    /// A probe reply: the prober's; an RLOC that comes back up may bring a member back.
    /// False when the nonce is not one of our probes.
    pub(crate) fn probe_answered(&mut self, now: Duration, reply: &MapReply, signed: bool) -> bool {
        let (prober, mut cx) = self.prober_ctx();
        let Some(a) = prober.answered(now, &mut cx, reply, signed) else {
            return false;
        };
        if a.was_down {
            self.member_back(now, a.rloc);
        }
        true
    }

    /// The next lisp-crypto key for the data plane.
    pub fn poll_key_event(&mut self) -> Option<KeyEvent> {
        self.out.keys.pop_front()
    }
}
