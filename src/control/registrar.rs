//! The ETR registrar (RFC 9301 §8.2) and LISP-Decent group delivery (RFC 9962 §4, §5):
//! our Map-Registers go to our own Map-Server, to every member of the peer group (underlay
//! multicast, or one LISP-data-encapsulated copy per member), to bootstrap seeds, or in pull
//! mode to the Map-Server set each EID hashes to. A component of the engine ([`Registrar`]):
//! its logic takes a [`Ctx`]; what our own registers change in our database is handed back
//! for the engine to pass on (SMRs, its map-cache).

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::mapping::{EidKey, GroupEid, rle_locator};
use crate::wire::{
    Address, Authentication, CONTROL_PORT, ControlMessage, DATA_PORT, EidRecord, MapNotify,
    MapRegister, Nonce, RleEntry, RlocRecord, XtrTrailer,
};

use super::config::EngineConfig;
use super::config::{Delivery, MappingSystem};
use super::engine::{Engine, Transmit};
use super::map_server::signed;

/// What a Map-Register is for: its flags follow (RFC 9301 §5.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RegisterKind {
    /// Our own mappings to the peer group.
    Own { want_notify: bool },
    /// Our `(0/0, G)` membership: proxy-reply and merge set (RFC 9962 §4).
    Membership { want_notify: bool },
    /// Our own mappings to a Map-Server outside the group: a Map-Notify is always asked for.
    MapServer { proxy_reply: bool },
}

/// Records per Map-Register are capped so a register stays well inside one unfragmented
/// datagram; a database larger than this goes out in several registers.
const MAX_REGISTER_BYTES: usize = 1200;
/// Inner IP TTL of a replicated Map-Register.
const REPLICATION_TTL: u8 = 64;

/// A greeting's first retransmission; each next one waits twice as long.
pub(crate) const GREETING_RETRY: Duration = Duration::from_secs(1);
/// Sends of one greeting at most.
pub(crate) const GREETING_TRIES: u32 = 4;
/// Greetings waiting for their Map-Notify at most (one per member).
const MAX_GREETINGS: usize = 4096;
/// Lost members are chased this often for [`CHASE_FAST_FOR`], then every [`CHASE_SLOW`] until
/// [`CHASE_FOR`] has passed; at most [`MAX_LOST`] at a time.
const CHASE_FAST: Duration = Duration::from_secs(1);
const CHASE_FAST_FOR: Duration = Duration::from_secs(600);
const CHASE_SLOW: Duration = Duration::from_secs(10);
const CHASE_FOR: Duration = Duration::from_secs(86_400);
const MAX_LOST: usize = 1024;
/// Register nonces to seeds awaiting a Map-Notify, at most.
const MAX_SEED_NONCES: usize = 1024;
/// After the first register round, the gaps to the repeats of a joining node (rounds at
/// 0, 0.5, 1.5, 2.5 and 3.5 s).
const JOIN_REPEATS: [Duration; 4] = [
    Duration::from_millis(500),
    Duration::from_millis(1000),
    Duration::from_millis(1000),
    Duration::from_millis(1000),
];

/// The RLOC-records of our own mappings: our RLOCs, local and reachable.
/// Behind a NAT, the RTR we register through first (draft §5.1.1,
/// [`super::rtr::locators_via`]).
pub(crate) fn own_rlocs(cfg: &super::config::EngineConfig) -> Vec<RlocRecord> {
    let own = local_rlocs(cfg);
    match cfg.via_rtr {
        Some(rtr) => super::rtr::locators_via(rtr, own),
        None => own,
    }
}

fn local_rlocs(cfg: &super::config::EngineConfig) -> Vec<RlocRecord> {
    cfg.rlocs
        .iter()
        .map(|r| RlocRecord {
            priority: r.priority,
            weight: r.weight,
            m_priority: 255,
            m_weight: 0,
            flags: RlocRecord::LOCAL | RlocRecord::REACHABLE,
            locator: Address::from(r.address),
        })
        .collect()
}

/// Every database mapping, and the node name as a distinguished-name EID (as lispers.net
/// registers it).
pub(crate) fn own_records(cfg: &EngineConfig) -> Vec<EidRecord> {
    let ttl = cfg.timers.record_ttl_mins;
    let rlocs = own_rlocs(cfg);
    let mut v: Vec<EidRecord> = cfg
        .database
        .iter()
        .map(|d| {
            let (eid, ml) = d.eid.to_wire();
            let mut r = EidRecord::new(eid, ml, ttl, rlocs.clone());
            r.authoritative = true;
            r
        })
        .collect();
    if cfg.register_name && !cfg.name.is_empty() {
        let (eid, ml) = EidKey::Name {
            iid: 0,
            name: cfg.name.as_bytes().to_vec(),
        }
        .to_wire(false);
        let mut r = EidRecord::new(eid, ml, ttl, rlocs);
        r.authoritative = true;
        v.push(r);
    }
    v
}

/// Our `(0/0, G)` membership record: an RLE holding our RLOC(s) at level 128, in
/// lispers.net's encoding (priority 255, M-priority 1 / M-weight 100, L+R, AFI List
/// {AFI 0, RLE}) (RFC 9962 §4; PROTOCOL.md §2.1).
/// The RLE holds our RLOCs of the group's family, or all of them when we have none of it
/// (a node that moved to the other family's underlay stays a member, reached there).
fn membership_record(cfg: &EngineConfig, g: &GroupEid, lispers_padding: bool) -> EidRecord {
    let of_group = |r: &&super::config::LocalRloc| r.address.is_ipv4() == g.group.addr().is_ipv4();
    let any_of_group = cfg.rlocs.iter().any(|r| of_group(&r));
    let entries = cfg
        .rlocs
        .iter()
        .filter(|r| !any_of_group || of_group(r))
        .map(|r| RleEntry {
            reserved: 0,
            rsvd3: 0,
            level: 128,
            address: Address::from(r.address),
            name: None,
        })
        .collect();
    let (eid, ml) = EidKey::Group(*g).to_wire(lispers_padding);
    let rloc = RlocRecord {
        priority: 255,
        weight: 0,
        m_priority: 1,
        m_weight: 100,
        flags: RlocRecord::LOCAL | RlocRecord::REACHABLE,
        locator: rle_locator(entries, lispers_padding),
    };
    let mut r = EidRecord::new(eid, ml, cfg.timers.record_ttl_mins, vec![rloc]);
    r.authoritative = true;
    r
}

/// Our membership record, in replicate mode. Behind a NAT (through an RTR) it is withdrawn
/// (Record TTL 0): no member can send us copies, and everything reaches us through the RTR.
fn own_membership(cfg: &EngineConfig) -> Option<EidRecord> {
    match &cfg.mapping_system {
        MappingSystem::Push(pg) if pg.delivery == Delivery::Replicate => {
            let g = GroupEid::any_source(0, pg.group);
            let mut r = membership_record(cfg, &g, pg.lispers_membership_encoding);
            if cfg.via_rtr.is_some() {
                r.ttl = 0;
            }
            Some(r)
        }
        _ => None,
    }
}

/// Where to reach `member`, an address of the group's membership: itself when we have an
/// RLOC of its family, else another RLOC its xTR registered (its EID registrations under the
/// same xTR-ID) of a family we have: a member on the other family's underlay than ours (one
/// of us moved between IPv4 and IPv6). Only then is the database scanned.
pub(crate) fn reach(
    cfg: &EngineConfig,
    site: &crate::mapping::SiteDb,
    member: IpAddr,
) -> Option<IpAddr> {
    if super::probe::source_rloc(cfg, member).is_some() {
        return Some(member);
    }
    let g = group_key(cfg)?;
    let xtr = site
        .group(&g)?
        .regs()
        .iter()
        .find(|r| r.rle_addresses().any(|a| a == member))?
        .xtr_id;
    site.prefixes()
        .iter()
        .flat_map(|(_, e)| e.regs())
        .filter(|r| r.xtr_id == xtr)
        .flat_map(|r| r.rlocs.iter())
        .filter(|l| l.priority != 255)
        .filter_map(|l| l.locator.ip())
        .find(|a| super::probe::source_rloc(cfg, *a).is_some())
}

/// Registers to our RTR, carried in data from our data port (draft §5.1.1).
fn to_rtr(rtr: IpAddr, regs: &[(Nonce, Vec<u8>)], cx: &mut Ctx<'_>) {
    let Some(src) = super::probe::source_rloc(cx.cfg, rtr) else {
        return;
    };
    for (_, r) in regs {
        let nonce: u32 = rand::RngExt::random::<u32>(&mut *cx.rng);
        cx.counters.map_registers_sent += 1;
        super::rtr::send_in_data(cx.out, src, rtr, SocketAddr::new(rtr, DATA_PORT), nonce, r);
    }
}

/// One Map-Register straight to `dst`:4342, from our RLOC nearest it.
pub(crate) fn unicast_register(
    cfg: &EngineConfig,
    counters: &mut super::counters::Counters,
    out: &mut super::outbox::Outbox,
    dst: IpAddr,
    payload: Vec<u8>,
) {
    counters.map_registers_sent += 1;
    out.control(
        super::probe::source_rloc(cfg, dst),
        SocketAddr::new(dst, CONTROL_PORT),
        payload,
    );
}

/// The peer group's `(0/0, G)` key, in push mode.
pub(crate) fn group_key(cfg: &EngineConfig) -> Option<GroupEid> {
    match &cfg.mapping_system {
        MappingSystem::Push(g) => Some(GroupEid::any_source(0, g.group)),
        MappingSystem::Pull(_) => None,
    }
}

/// Our registrations sent to one member that greeted or joined, waiting for its Map-Notify
/// (one per register), and when to send them again.
#[derive(Debug, Clone)]
pub(crate) struct Greeting {
    pub nonces: Vec<Nonce>,
    pub next: Duration,
    pub backoff: Duration,
}

/// The ETR registrar (RFC 9301 §5.6, RFC 9962 §4): our Map-Register rounds, the greetings
/// of members that joined, the seeds, the members learned from Map-Notifies and the chase
/// of members that went away. Bounded: greetings by `MAX_GREETINGS`, nonces by the rounds
/// in flight, lost members by the group.
pub(crate) struct Registrar {
    /// When the next round of Map-Registers is due.
    pub(crate) register_due: Duration,
    pub(crate) last_register: Option<Duration>,
    /// Peers that have had our current registrations since our last full round.
    pub(crate) greeted: std::collections::HashSet<IpAddr>,
    /// Greetings waiting for their Map-Notifies.
    pub(crate) greetings: HashMap<IpAddr, Greeting>,
    /// When each greeting goes again (valid while `greetings[peer].next` is that time).
    pub(crate) greeting_timers: super::timers::TimerTable<IpAddr>,
    /// Which greeting each outstanding register nonce belongs to.
    pub(crate) greeting_nonces: HashMap<Nonce, IpAddr>,
    /// Repeats of the first register round done so far (joining).
    pub(crate) join_rounds: u8,
    /// Peer-group members learned from Map-Notifies, with their expiry.
    /// Each with the member whose Notify told us of it: a later Notify from that member
    /// that no longer lists it takes it out (a member that died leaves with its
    /// registration at the seed, not a record TTL later).
    pub(crate) learned_members: HashMap<IpAddr, (Duration, IpAddr)>,
    /// Unicast registers to seeds waiting for their Map-Notify: nonce to seed.
    /// Each with whether it carried our `(0/0, G)` membership.
    pub(crate) seed_nonces: HashMap<Nonce, (Vec<IpAddr>, bool)>,
    /// Seeds that have answered a register with a Map-Notify.
    pub(crate) acked_seeds: std::collections::HashSet<IpAddr>,
    /// Seeds that have answered a register of our membership (head-end replication: until
    /// one has, the seed does not know us as a member and the registers go again).
    pub(crate) acked_seed_memberships: std::collections::HashSet<IpAddr>,
    /// Wait before re-sending to seeds that have not answered (1 s, doubling, at most the
    /// register interval; PROTOCOL.md §4).
    pub(crate) seed_backoff: Duration,
    /// Nonces of our recent Map-Registers (to tell a solicited Map-Notify from one to Ack).
    pub(crate) sent_register_nonces: VecDeque<Nonce>,
    /// Our Map-Register nonces, counting up.
    pub(crate) register_nonce: super::register_replay::NonceCounter,
    /// Members whose registrations expired: since when, and when they are next chased.
    pub(crate) lost: HashMap<IpAddr, (Duration, Duration)>,
}

/// What the registrar uses of the rest of the engine: the configuration, the database (our
/// own registers are delivered to our Map-Server too, RFC 9962 §4), the Map-Server (its
/// membership rounds), the pull-mode Map-Server sets, the counters, the RNG, the outbox,
/// and where the EIDs our own registers changed are left for the engine to pass on.
pub(crate) struct Ctx<'a> {
    pub cfg: &'a EngineConfig,
    pub site: &'a mut crate::mapping::SiteDb,
    pub allowed: &'a crate::mapping::PrefixTable<bool>,
    pub map_server: &'a mut super::map_server::MapServer,
    pub pull_servers: &'a HashMap<u32, Vec<IpAddr>>,
    pub counters: &'a mut super::counters::Counters,
    pub rng: &'a mut rand::rngs::StdRng,
    pub out: &'a mut super::outbox::Outbox,
    pub changed: &'a mut Vec<EidKey>,
}

impl Registrar {
    /// A registrar that has sent nothing yet; its first round is due at once.
    pub(crate) fn new(register_nonce: super::register_replay::NonceCounter) -> Self {
        Registrar {
            register_due: Duration::ZERO,
            last_register: None,
            greeted: HashSet::new(),
            greetings: HashMap::new(),
            greeting_timers: Default::default(),
            greeting_nonces: HashMap::new(),
            join_rounds: 0,
            learned_members: HashMap::new(),
            seed_nonces: HashMap::new(),
            acked_seeds: HashSet::new(),
            acked_seed_memberships: HashSet::new(),
            seed_backoff: Duration::from_secs(1),
            sent_register_nonces: VecDeque::new(),
            register_nonce,
            lost: HashMap::new(),
        }
    }

    /// The members to replicate to: the merged RLE of the `(0/0, G)` entry in `site` and
    /// the members Map-Notifies told us of, our own RLOCs left out.
    pub(crate) fn members(&self, site: &crate::mapping::SiteDb, cfg: &EngineConfig) -> Vec<IpAddr> {
        let entry = group_key(cfg).and_then(|g| site.group(&g));
        let mut m: Vec<IpAddr> = entry.map(|e| e.rle_members()).unwrap_or_default();
        // Not our own membership: after a move it still holds our old RLOCs for a while.
        let ours: Vec<IpAddr> = entry
            .into_iter()
            .flat_map(|e| e.regs())
            .filter(|r| r.xtr_id == cfg.xtr_id)
            .flat_map(|r| r.rle_addresses())
            .collect();
        for a in self.learned_members.keys() {
            if !m.contains(a) {
                m.push(*a);
            }
        }
        m.retain(|a| !ours.contains(a) && !super::probe::is_own_rloc(cfg, *a));
        m.sort();
        m
    }

    /// Builds signed Map-Registers holding `records` for the peer group, split by size; each
    /// with its nonce.
    fn build_registers(
        &mut self,
        records: &[EidRecord],
        membership: bool,
        want_notify: bool,
        cx: &mut Ctx<'_>,
    ) -> Vec<(Nonce, Vec<u8>)> {
        let key = cx.cfg.site.own_key.clone();
        let kind = if membership {
            RegisterKind::Membership { want_notify }
        } else {
            RegisterKind::Own { want_notify }
        };
        self.build_registers_for(records, kind, key, cx.cfg)
    }

    /// Builds Map-Registers of `kind` holding `records`, signed with `key` (or alg-id 0
    /// without one), split by size; each with its nonce.
    pub(crate) fn build_registers_for(
        &mut self,
        records: &[EidRecord],
        kind: RegisterKind,
        key: Option<(crate::crypto::auth::AuthKey, u8)>,
        cfg: &EngineConfig,
    ) -> Vec<(Nonce, Vec<u8>)> {
        let (key, alg) = match key {
            Some((k, a)) => (Some(k), a),
            None => (None, 0),
        };
        let (proxy_reply, merge, want_notify) = match kind {
            RegisterKind::Own { want_notify } => (false, false, want_notify),
            RegisterKind::Membership { want_notify } => (true, true, want_notify),
            RegisterKind::MapServer { proxy_reply } => (proxy_reply, false, true),
        };
        let mut out = Vec::new();
        let mut batch: Vec<EidRecord> = Vec::new();
        let mut size = 0;
        let flush =
            |me: &mut Registrar, batch: &mut Vec<EidRecord>, out: &mut Vec<(Nonce, Vec<u8>)>| {
                if batch.is_empty() {
                    return;
                }
                let nonce = me.register_nonce.next_nonce();
                let reg = MapRegister {
                    proxy_reply,
                    security: false,
                    eid_notify: false,
                    use_ttl: true,
                    merge,
                    want_notify,
                    reserved: 0,
                    nonce,
                    auth: Authentication::unsigned(
                        key.as_ref().and_then(|k| k.key_id).unwrap_or(0),
                        alg,
                    ),
                    records: std::mem::take(batch),
                    trailer: Some(XtrTrailer {
                        xtr_id: cfg.xtr_id,
                        site_id: cfg.site_id,
                    }),
                };
                if let Some(bytes) = signed(
                    &ControlMessage::MapRegister(reg),
                    key.as_ref().map(|k| &k.secret[..]),
                ) {
                    me.sent_register_nonces.push_back(nonce);
                    while me.sent_register_nonces.len() > 64 {
                        me.sent_register_nonces.pop_front();
                    }
                    out.push((nonce, bytes));
                }
            };
        // A distinguished-name EID goes in a Map-Register of its own: OOR's Map-Server gives
        // up on a message at an AFI 17 record, and must still take (and acknowledge) our
        // prefixes (PROTOCOL.md §8.2 O3).
        let is_name = |r: &EidRecord| matches!(r.eid, crate::wire::Address::Name(_));
        for r in records.iter().filter(|r| !is_name(r)) {
            let mut tmp = Vec::new();
            let len = r.emit(&mut tmp).map(|_| tmp.len()).unwrap_or(0);
            if !batch.is_empty() && (size + len > MAX_REGISTER_BYTES || batch.len() == 255) {
                flush(self, &mut batch, &mut out);
                size = 0;
            }
            size += len;
            batch.push(r.clone());
        }
        flush(self, &mut batch, &mut out);
        for r in records.iter().filter(|r| is_name(r)) {
            batch.push(r.clone());
            flush(self, &mut batch, &mut out);
        }
        out
    }

    /// One round of registrations: at start, every register interval, and at once after a
    /// change (RFC 9301 §8.2; convergence must not wait for the interval).
    pub(crate) fn send_registrations(&mut self, now: Duration, cx: &mut Ctx<'_>) {
        self.last_register = Some(now);
        self.register_due = now + cx.cfg.timers.register_interval;
        // Joining: the first round goes again at 0.5, 1.5, 2.5 and 3.5 s, so a member that
        // lost it (underlay multicast has no retransmission) hears of us within seconds.
        if let Some(gap) = JOIN_REPEATS.get(usize::from(self.join_rounds)) {
            self.join_rounds += 1;
            self.register_due = self.register_due.min(now + *gap);
        }
        self.greeted = self.members(cx.site, cx.cfg).into_iter().collect();
        // A seed re-announces the membership it holds every round (head-end replication):
        // two members that lost each other (their registers lost three times running, or a
        // greeting never answered) find each other again within a round, instead of never.
        if let MappingSystem::Push(pg) = &cx.cfg.mapping_system
            && pg.delivery == Delivery::Replicate
            && pg
                .seeds
                .iter()
                .any(|s| super::probe::is_own_rloc(cx.cfg, *s))
            && !self.members(cx.site, cx.cfg).is_empty()
        {
            cx.map_server
                .notify_due
                .get_or_insert(now + super::engine::NOTIFY_COALESCE);
        }
        let records = own_records(cx.cfg);
        self.send_register_set(now, records.clone(), false, cx);
        if let Some(rec) = own_membership(cx.cfg) {
            self.send_register_set(now, vec![rec], true, cx);
        }
    }

    /// Leaves the peer group: every registration of ours is re-sent with Record TTL 0, so
    /// every member drops it now instead of at its expiry (RFC 9962 §4).
    pub(crate) fn leave(&mut self, now: Duration, cx: &mut Ctx<'_>) {
        let mut records = own_records(cx.cfg);
        records.iter_mut().for_each(|r| r.ttl = 0);
        self.send_register_set(now, records, false, cx);
        if let Some(mut m) = own_membership(cx.cfg) {
            m.ttl = 0;
            self.send_register_set(now, vec![m], true, cx);
        }
    }

    /// Sends our registrations to one peer we have not sent them to since the last full
    /// round: a newcomer learns the group's database from every member at once, without
    /// waiting for the register interval and without a round to everyone.
    /// The greeting asks for a Map-Notify and is sent again, freshly built, after 1 s, 2 s
    /// and 4 s until one answers each of its registers (RFC 9301 §5.6: a Map-Register with the
    /// M bit is retransmitted with exponential backoff), so a lost greeting costs a second,
    /// not a register interval.
    /// A configured Map-Server or Map-Resolver is never greeted, and with head-end
    /// replication (whose greetings are LISP data packets of Instance-ID 0xFFFFFF) only a peer
    /// in the `(0/0, G)` membership gets a full greeting.
    pub(crate) fn greet(&mut self, now: Duration, peer: IpAddr, cx: &mut Ctx<'_>) {
        if super::probe::is_own_rloc(cx.cfg, peer)
            || super::external::is_external_system(cx.cfg, peer)
        {
            return;
        }
        if let MappingSystem::Push(pg) = &cx.cfg.mapping_system
            && pg.delivery == Delivery::Replicate
            && !self.members(cx.site, cx.cfg).contains(&peer)
        {
            // Not (yet) a member: a joiner whose membership register is still on its way, or
            // a plain xTR. It gets our own mappings in plain unicast Map-Registers, never the
            // membership and never an Instance-ID 0xFFFFFF packet; a joiner is greeted
            // properly once its membership arrives.
            let records = own_records(cx.cfg);
            for (_, r) in self.build_registers(&records, false, true, cx) {
                unicast_register(cx.cfg, cx.counters, cx.out, peer, r);
            }
            return;
        }
        if !self.greeted.insert(peer) {
            return;
        }
        self.send_greeting(now, peer, GREETING_RETRY, cx);
    }

    /// Behind a NAT: our mappings to our RTR, through our binding (each probe of the RTR
    /// comes with them, so an RTR whose binding for us changed, because the NAT forgot the
    /// old one, learns the new one with the keys).
    pub(crate) fn register_with_rtr(&mut self, rtr: IpAddr, cx: &mut Ctx<'_>) {
        let regs = self.build_registers(&own_records(cx.cfg), false, false, cx);
        to_rtr(rtr, &regs, cx);
    }

    /// Sends our registrations (and our membership, with head-end replication) to one peer,
    /// asking for Map-Notifies; returns their nonces.
    fn send_own_registers_to(&mut self, peer: IpAddr, cx: &mut Ctx<'_>) -> Vec<Nonce> {
        let MappingSystem::Push(pg) = &cx.cfg.mapping_system.clone() else {
            return Vec::new();
        };
        let mut sets = vec![(own_records(cx.cfg), false)];
        if let Some(m) = own_membership(cx.cfg) {
            sets.push((vec![m], true));
        }
        let mut nonces = Vec::new();
        for (records, membership) in sets {
            for (nonce, r) in self.build_registers(&records, membership, true, cx) {
                nonces.push(nonce);
                match pg.delivery {
                    Delivery::Replicate => self.replicate(peer, pg.group, &r, cx),
                    Delivery::Multicast { .. } => {
                        unicast_register(cx.cfg, cx.counters, cx.out, peer, r);
                    }
                }
            }
        }
        nonces
    }

    fn send_greeting(&mut self, now: Duration, peer: IpAddr, backoff: Duration, cx: &mut Ctx<'_>) {
        let nonces = self.send_own_registers_to(peer, cx);
        if nonces.is_empty() {
            return;
        }
        if self.greetings.len() < MAX_GREETINGS || self.greetings.contains_key(&peer) {
            self.forget_greeting(&peer);
            for n in &nonces {
                self.greeting_nonces.insert(*n, peer);
            }
            self.greeting_timers.schedule(peer, now + backoff);
            self.greetings.insert(
                peer,
                Greeting {
                    nonces,
                    next: now + backoff,
                    backoff,
                },
            );
        }
    }

    /// A member whose registration expired without being withdrawn (partitioned away, or
    /// dead) is sent our registrations every second for ten minutes, then every ten seconds
    /// for a day, until it registers with us again: when a partition heals, the two sides find
    /// each other within a second, not at their next register round (which may be a minute
    /// away, and with head-end replication never comes: neither side lists the other as a
    /// member any more). With head-end replication only members (the registerers of an
    /// expired `(0/0, G)` registration) are chased, so no plain xTR is sent Instance-ID
    /// 0xFFFFFF packets.
    pub(crate) fn lose_member(&mut self, now: Duration, peer: IpAddr, cx: &mut Ctx<'_>) {
        if super::probe::is_own_rloc(cx.cfg, peer)
            || super::external::is_external_system(cx.cfg, peer)
            || (self.lost.len() >= MAX_LOST && !self.lost.contains_key(&peer))
        {
            return;
        }
        self.lost.entry(peer).or_insert((now, now + CHASE_FAST));
        // When it is back, it is greeted again (its registrations of ours are gone too).
        self.greeted.remove(&peer);
    }

    /// A member's RLOC answers again after it was marked down (a partition healed): it is
    /// greeted again, and with head-end replication the membership is announced again (a
    /// Notify round), so members that met no one but each other's seed while it was cut off
    /// find each other now, not at the seed's next register round.
    pub(crate) fn member_back(&mut self, now: Duration, rloc: IpAddr, cx: &mut Ctx<'_>) {
        let MappingSystem::Push(pg) = &cx.cfg.mapping_system else {
            return;
        };
        let replicate = pg.delivery == Delivery::Replicate;
        if replicate && !self.members(cx.site, cx.cfg).contains(&rloc) {
            return;
        }
        if replicate {
            cx.map_server
                .notify_due
                .get_or_insert(now + super::engine::NOTIFY_COALESCE);
        }
        // Our registrations again too: a greeting that gave up while it was cut off is
        // otherwise repeated only at our next register round.
        self.greeted.remove(&rloc);
        self.greet(now, rloc, cx);
    }

    /// Sends the chases that are due (housekeeping, every second).
    pub(crate) fn chase_lost_members(&mut self, now: Duration, cx: &mut Ctx<'_>) {
        let due: Vec<(IpAddr, Duration)> = self
            .lost
            .iter()
            .filter(|(_, (_, next))| *next <= now)
            .map(|(p, (since, _))| (*p, *since))
            .collect();
        for (peer, since) in due {
            let lost_for = now.saturating_sub(since);
            if lost_for >= CHASE_FOR {
                self.lost.remove(&peer);
                continue;
            }
            let gap = if lost_for < CHASE_FAST_FOR {
                CHASE_FAST
            } else {
                CHASE_SLOW
            };
            self.lost.insert(peer, (since, now + gap));
            cx.counters.lost_members_chased += 1;
            self.send_own_registers_to(peer, cx);
        }
    }

    /// Greetings not answered in time go again, up to [`GREETING_TRIES`] times.
    pub(crate) fn retransmit_greetings(&mut self, now: Duration, cx: &mut Ctx<'_>) {
        let greetings = &self.greetings;
        let due: Vec<(IpAddr, Duration)> = self
            .greeting_timers
            .due(now, |p, at| greetings.get(&p).is_some_and(|g| g.next == at))
            .into_iter()
            .filter_map(|p| Some((p, self.greetings.get(&p)?.backoff)))
            .collect();
        for (peer, backoff) in due {
            self.forget_greeting(&peer);
            if backoff < GREETING_RETRY * (1 << (GREETING_TRIES - 1)) {
                self.send_greeting(now, peer, backoff * 2, cx);
            }
        }
    }

    fn forget_greeting(&mut self, peer: &IpAddr) {
        if let Some(g) = self.greetings.remove(peer) {
            for n in g.nonces {
                self.greeting_nonces.remove(&n);
            }
        }
    }

    /// A Map-Notify answered one register of a greeting.
    pub(crate) fn greeting_answered(&mut self, nonce: &Nonce) {
        let Some(peer) = self.greeting_nonces.remove(nonce) else {
            return;
        };
        if let Some(g) = self.greetings.get_mut(&peer) {
            g.nonces.retain(|n| n != nonce);
            if g.nonces.is_empty() {
                self.greetings.remove(&peer);
            }
        }
    }

    /// Sends `records` everywhere our registrations go.
    pub(crate) fn send_register_set(
        &mut self,
        now: Duration,
        records: Vec<EidRecord>,
        membership: bool,
        cx: &mut Ctx<'_>,
    ) {
        if records.is_empty() {
            return;
        }
        let system = &cx.cfg.mapping_system.clone();
        match system {
            MappingSystem::Push(pg) => {
                let regs = self.build_registers(&records, membership, false, cx);
                let members = self.members(cx.site, cx.cfg);
                match pg.delivery {
                    Delivery::Multicast { ttl } => {
                        for (_, r) in &regs {
                            cx.counters.map_registers_sent += 1;
                            cx.out.push(Transmit {
                                src: super::probe::source_rloc(cx.cfg, pg.group),
                                src_port: CONTROL_PORT,
                                dst: SocketAddr::new(pg.group, CONTROL_PORT),
                                ttl: Some(ttl),
                                payload: r.clone(),
                            });
                        }
                    }
                    Delivery::Replicate => {
                        for m in &members {
                            for (_, r) in &regs {
                                self.replicate(*m, pg.group, r, cx);
                            }
                        }
                    }
                }
                // Behind a NAT: our RTR learns where we are from our registers arriving
                // through our binding (a replicated copy does, when it is a member).
                if let Some(rtr) = cx.cfg.via_rtr
                    && !(pg.delivery == Delivery::Replicate && members.contains(&rtr))
                {
                    to_rtr(rtr, &regs, cx);
                }
                // Our own Map-Server too (RFC 9962 §4: a register to the group reaches every
                // member, the sender included); after the copies, so that what a change
                // triggers here (SMRs) leaves after the registrations.
                for (_, r) in &regs {
                    self.deliver_locally(now, r, cx);
                }
                // Bootstrap: seeds we do not know as members yet get unicast registers,
                // asking for a Map-Notify.
                let seeds: Vec<IpAddr> = pg
                    .seeds
                    .iter()
                    .copied()
                    .filter(|s| {
                        !super::probe::is_own_rloc(cx.cfg, *s)
                            && !members.contains(s)
                            && super::probe::source_rloc(cx.cfg, *s).is_some()
                    })
                    .collect();
                if !seeds.is_empty() {
                    let unicast = self.build_registers(&records, membership, true, cx);
                    // With head-end replication a seed must also have taken our membership:
                    // until then it neither greets us nor tells the others of us.
                    let replicate = pg.delivery == Delivery::Replicate;
                    let unacked = seeds.iter().any(|s| {
                        !self.acked_seeds.contains(s)
                            || (replicate && !self.acked_seed_memberships.contains(s))
                    });
                    if !unacked {
                        self.seed_backoff = Duration::from_secs(1);
                    } else if !membership {
                        // Until a seed answers with a Map-Notify, try again soon.
                        let retry = now + self.seed_backoff;
                        // The join repeats are rounds of their own: they do not spend the
                        // backoff.
                        if usize::from(self.join_rounds) >= JOIN_REPEATS.len() {
                            self.seed_backoff =
                                (self.seed_backoff * 2).min(cx.cfg.timers.register_interval);
                        }
                        self.register_due = self.register_due.min(retry);
                    }
                    // Answers that never come (a seed refusing our name) are forgotten
                    // in bulk: the table stays bounded.
                    if self.seed_nonces.len() >= MAX_SEED_NONCES {
                        self.seed_nonces.clear();
                    }
                    for s in seeds {
                        for (nonce, r) in &unicast {
                            self.seed_nonces
                                .entry(*nonce)
                                .or_insert_with(|| (Vec::new(), membership))
                                .0
                                .push(s);
                            unicast_register(cx.cfg, cx.counters, cx.out, s, r.clone());
                        }
                    }
                }
            }
            MappingSystem::Pull(pull) => {
                // Group the records by the Map-Server set they hash to.
                let mut by_set: std::collections::BTreeMap<u32, Vec<EidRecord>> =
                    Default::default();
                for r in records {
                    let text = crate::wire::eid_text(&r.eid, r.mask_len);
                    by_set
                        .entry(pull.hash.index(&text, pull.modulus))
                        .or_default()
                        .push(r);
                }
                for (index, recs) in by_set {
                    let servers = cx.pull_servers.get(&index).cloned().unwrap_or_default();
                    let regs = self.build_registers(&recs, false, true, cx);
                    for s in servers {
                        if super::probe::is_own_rloc(cx.cfg, s) {
                            for (_, r) in &regs {
                                self.deliver_locally(now, r, cx);
                            }
                            continue;
                        }
                        for (_, r) in &regs {
                            unicast_register(cx.cfg, cx.counters, cx.out, s, r.clone());
                        }
                    }
                }
            }
        }
    }

    /// One Map-Register straight to `dst`:4342.
    fn deliver_locally(&mut self, now: Duration, bytes: &[u8], cx: &mut Ctx<'_>) {
        let Ok(ControlMessage::MapRegister(reg)) = ControlMessage::parse(bytes) else {
            return;
        };
        let me = cx
            .cfg
            .rlocs
            .first()
            .map_or(IpAddr::from([127, 0, 0, 1]), |r| r.address);
        let mut ms = super::map_server::Ctx {
            cfg: cx.cfg,
            site: &mut *cx.site,
            allowed: cx.allowed,
            counters: &mut *cx.counters,
            rng: &mut *cx.rng,
            out: &mut *cx.out,
        };
        let Some(done) = cx.map_server.register(
            now,
            SocketAddr::new(me, CONTROL_PORT),
            bytes,
            &reg,
            super::engine::Arrival::Local,
            &mut ms,
        ) else {
            return;
        };
        // What changed is passed on by the engine (SMRs, its own map-cache) once the
        // registrar is done; greetings are the registrar's own.
        cx.changed.extend(done.changed);
        for p in done.greet {
            self.greet(now, p, cx);
        }
    }

    /// One head-end-replicated copy: LISP data header with Instance-ID 0xFFFFFF (never
    /// encrypted), inner IP from our RLOC to the group, inner UDP to 4342, the register.
    /// The copy goes to the member where we can reach it ([`reach`]), from our RLOC of
    /// that family; the inner header is of the group's family. Without an RLOC of the
    /// group's family (we moved to the other family's underlay) the register goes to the
    /// member as a plain Map-Register instead.
    fn replicate(&mut self, member: IpAddr, group: IpAddr, register: &[u8], cx: &mut Ctx<'_>) {
        let Some(to) = reach(cx.cfg, cx.site, member) else {
            cx.counters.members_unreachable_by_family += 1;
            return;
        };
        let Some(outer) = super::probe::source_rloc(cx.cfg, to) else {
            return;
        };
        let Some(src) = super::probe::source_rloc(cx.cfg, group) else {
            unicast_register(cx.cfg, cx.counters, cx.out, to, register.to_vec());
            return;
        };
        let nonce: u32 = rand::RngExt::random::<u32>(&mut *cx.rng);
        let Some(pkt) = super::rtr::in_data(src, group, REPLICATION_TTL, nonce, register) else {
            return;
        };
        cx.counters.replicated_copies_sent += 1;
        cx.counters.map_registers_sent += 1;
        cx.out.push(Transmit {
            src: Some(outer),
            src_port: DATA_PORT,
            dst: SocketAddr::new(to, DATA_PORT),
            ttl: None,
            payload: pkt,
        });
    }

    /// A Map-Notify to us: the answer to one of our Map-Registers, or an unsolicited one
    /// carrying the peer group's membership, which we learn and acknowledge.
    pub(crate) fn process_notify(
        &mut self,
        now: Duration,
        src: SocketAddr,
        bytes: &[u8],
        n: &MapNotify,
        cx: &mut Ctx<'_>,
    ) {
        if cx.cfg.site.keys.verify(bytes).is_err() {
            cx.counters.map_notify_rejected_auth += 1;
            return;
        }
        // An answer to one of our registers (periodic, to a seed, or a greeting) echoes our
        // records; only an unsolicited Notify is the teller's view of the membership, and
        // only that one is acknowledged.
        let solicited = self.sent_register_nonces.contains(&n.nonce)
            || self.seed_nonces.contains_key(&n.nonce)
            || self.greeting_nonces.contains_key(&n.nonce);
        let mut learned = Vec::new();
        if let Some(g) = group_key(cx.cfg) {
            let teller = src.ip();
            let mut told = solicited;
            for rec in &n.records {
                if EidKey::from_wire(&rec.eid, rec.mask_len) != Some(EidKey::Group(g)) {
                    continue;
                }
                if !told {
                    // The membership as this member holds it now replaces what it told us.
                    told = true;
                    self.learned_members.retain(|_, (_, from)| *from != teller);
                }
                let expires = now + Duration::from_secs(u64::from(rec.ttl.max(1)) * 60);
                for l in &rec.rlocs {
                    for e in crate::mapping::rle_entries(&l.locator)
                        .into_iter()
                        .flatten()
                    {
                        if let Some(a) = e.address.ip()
                            && !super::probe::is_own_rloc(cx.cfg, a)
                        {
                            self.learned_members.insert(a, (expires, teller));
                            learned.push(a);
                        }
                    }
                }
            }
        }
        for a in learned {
            self.greet(now, a, cx);
        }
        self.greeting_answered(&n.nonce);
        if let Some((seeds, membership)) = self.seed_nonces.remove(&n.nonce) {
            // OOR may answer from another of its addresses: then the ack counts for every
            // seed that register went to.
            let acked = if seeds.contains(&src.ip()) {
                vec![src.ip()]
            } else {
                seeds
            };
            if membership {
                self.acked_seed_memberships.extend(acked);
            } else {
                self.acked_seeds.extend(acked);
            }
        }
        if !solicited {
            self.send_notify_ack(src, n, cx);
        }
    }

    /// Map-Notify-Ack: the real record count and the records copied (lispers.net's MS needs
    /// at least one record; PROTOCOL.md §3.7).
    fn send_notify_ack(&mut self, dst: SocketAddr, n: &MapNotify, cx: &mut Ctx<'_>) {
        let Some((key, alg)) = cx.cfg.site.own_key.clone() else {
            return;
        };
        let ack = MapNotify {
            reserved: 0,
            nonce: n.nonce,
            auth: Authentication::unsigned(key.key_id.unwrap_or(0), alg),
            records: n.records.clone(),
            trailer: None,
            unflagged_trailer: false,
        };
        if let Some(bytes) = signed(
            &crate::wire::ControlMessage::MapNotifyAck(ack),
            Some(&key.secret),
        ) {
            cx.counters.map_notify_acks_sent += 1;
            cx.out
                .control(super::probe::source_rloc(cx.cfg, dst.ip()), dst, bytes);
        }
    }
}

macro_rules! registrar_ctx {
    ($e:expr, $changed:expr) => {
        (
            &mut $e.registrar,
            super::registrar::Ctx {
                cfg: &$e.cfg,
                site: &mut $e.site,
                allowed: &$e.allowed,
                map_server: &mut $e.map_server,
                pull_servers: &$e.itr.pull_servers,
                counters: &mut $e.counters,
                rng: &mut $e.rng,
                out: &mut $e.out,
                changed: $changed,
            },
        )
    };
}

impl Engine {
    /// Runs `f` on the registrar with its context, then passes on what our own registers
    /// delivered locally changed (SMRs, our map-cache).
    fn with_registrar<R>(
        &mut self,
        now: Duration,
        f: impl FnOnce(&mut Registrar, &mut Ctx<'_>) -> R,
    ) -> R {
        let mut changed = Vec::new();
        let r = {
            let (reg, mut cx) = registrar_ctx!(self, &mut changed);
            f(reg, &mut cx)
        };
        for k in &changed {
            self.mapping_changed(now, k);
        }
        r
    }

    /// The RLOC-records of our own mappings ([`own_rlocs`]).
    pub(crate) fn own_rlocs(&self) -> Vec<RlocRecord> {
        own_rlocs(&self.cfg)
    }

    /// Every database mapping and the node name ([`own_records`]).
    pub(crate) fn own_records(&self) -> Vec<EidRecord> {
        own_records(&self.cfg)
    }

    /// The members to replicate to ([`Registrar::members`]).
    pub fn members(&self) -> Vec<IpAddr> {
        self.registrar.members(&self.site, &self.cfg)
    }

    /// One round of registrations ([`Registrar::send_registrations`]), and to the
    /// configured Map-Servers.
    pub(crate) fn send_registrations(&mut self, now: Duration) {
        self.with_registrar(now, |r, cx| r.send_registrations(now, cx));
        let records = self.own_records();
        self.register_with_map_servers(now, &records, true);
    }

    /// Leaves the peer group and the configured Map-Servers: every registration of ours
    /// again with Record TTL 0 ([`Registrar::leave`]).
    pub fn leave(&mut self, now: Duration) {
        let mut records = self.own_records();
        records.iter_mut().for_each(|r| r.ttl = 0);
        self.register_with_map_servers(now, &records, false);
        self.with_registrar(now, |r, cx| r.leave(now, cx));
    }

    /// Our registrations to one peer ([`Registrar::greet`]).
    pub(crate) fn greet(&mut self, now: Duration, peer: IpAddr) {
        self.with_registrar(now, |r, cx| r.greet(now, peer, cx));
    }

    /// A member's registrations expired ([`Registrar::lose_member`]).
    pub(crate) fn lose_member(&mut self, now: Duration, peer: IpAddr) {
        self.with_registrar(now, |r, cx| r.lose_member(now, peer, cx));
    }

    /// A member's RLOC answers again ([`Registrar::member_back`]).
    pub(crate) fn member_back(&mut self, now: Duration, rloc: IpAddr) {
        self.with_registrar(now, |r, cx| r.member_back(now, rloc, cx));
    }

    /// The registrar's timers: greetings to send again, lost members to chase.
    pub(crate) fn registrar_timers(&mut self, now: Duration, housekeeping: bool) {
        self.with_registrar(now, |r, cx| {
            r.retransmit_greetings(now, cx);
            if housekeeping {
                r.learned_members.retain(|_, (t, _)| *t > now);
                r.chase_lost_members(now, cx);
            }
        });
    }

    /// `records` everywhere our registrations go ([`Registrar::send_register_set`]).
    pub(crate) fn send_register_set(
        &mut self,
        now: Duration,
        records: Vec<EidRecord>,
        membership: bool,
    ) {
        self.with_registrar(now, |r, cx| {
            r.send_register_set(now, records, membership, cx)
        });
    }

    /// One Map-Register straight to `dst`:4342.
    /// Behind a NAT: our mappings to our RTR through our binding.
    pub(crate) fn register_with_rtr(&mut self, now: Duration, rtr: IpAddr) {
        self.with_registrar(now, |r, cx| r.register_with_rtr(rtr, cx));
    }

    pub(crate) fn send_unicast_register(&mut self, dst: IpAddr, payload: Vec<u8>) {
        unicast_register(&self.cfg, &mut self.counters, &mut self.out, dst, payload);
    }

    /// A Map-Notify to us: an answer from a configured Map-Server, else the registrar's
    /// ([`Registrar::process_notify`]).
    pub(crate) fn process_notify(
        &mut self,
        now: Duration,
        src: SocketAddr,
        bytes: &[u8],
        n: &MapNotify,
    ) {
        self.counters.map_notifies_received += 1;
        if self.map_server_notify(now, bytes, n) {
            return;
        }
        self.with_registrar(now, |r, cx| r.process_notify(now, src, bytes, n, cx));
    }
}
