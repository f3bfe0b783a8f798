//! The ETR registrar (RFC 9301 §8.2) and LISP-Decent group delivery (RFC 9962 §4, §5):
//! our Map-Registers go to our own Map-Server, to every member of the peer group (underlay
//! multicast, or one LISP-data-encapsulated copy per member), to bootstrap seeds, or in pull
//! mode to the Map-Server set each EID hashes to.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::mapping::{EidKey, GroupEid, rle_locator};
use crate::wire::{
    Address, Authentication, CONTROL_INSTANCE_ID, CONTROL_PORT, ControlMessage, DATA_PORT,
    DataHeader, EidRecord, IpUdp, MapNotify, MapRegister, Nonce, RleEntry, RlocRecord, XtrTrailer,
};

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
pub(crate) fn own_rlocs(cfg: &super::config::EngineConfig) -> Vec<RlocRecord> {
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

impl Engine {
    /// The RLOC-records of our own mappings ([`own_rlocs`]).
    pub(crate) fn own_rlocs(&self) -> Vec<RlocRecord> {
        own_rlocs(&self.cfg)
    }

    /// Every database mapping, and the node name as a distinguished-name EID (as lispers.net
    /// registers it).
    pub(crate) fn own_records(&self) -> Vec<EidRecord> {
        let ttl = self.cfg.timers.record_ttl_mins;
        let rlocs = self.own_rlocs();
        let mut v: Vec<EidRecord> = self
            .cfg
            .database
            .iter()
            .map(|d| {
                let (eid, ml) = d.eid.to_wire();
                let mut r = EidRecord::new(eid, ml, ttl, rlocs.clone());
                r.authoritative = true;
                r
            })
            .collect();
        if self.cfg.register_name && !self.cfg.name.is_empty() {
            let (eid, ml) = EidKey::Name {
                iid: 0,
                name: self.cfg.name.as_bytes().to_vec(),
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
    fn membership_record(&self, g: &GroupEid, lispers_padding: bool) -> EidRecord {
        let entries = self
            .cfg
            .rlocs
            .iter()
            .filter(|r| r.address.is_ipv4() == g.group.addr().is_ipv4())
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
        let mut r = EidRecord::new(eid, ml, self.cfg.timers.record_ttl_mins, vec![rloc]);
        r.authoritative = true;
        r
    }

    /// Builds signed Map-Registers holding `records` for the peer group, split by size; each
    /// with its nonce.
    fn build_registers(
        &mut self,
        records: &[EidRecord],
        membership: bool,
        want_notify: bool,
    ) -> Vec<(Nonce, Vec<u8>)> {
        let key = self.cfg.site.own_key.clone();
        let kind = if membership {
            RegisterKind::Membership { want_notify }
        } else {
            RegisterKind::Own { want_notify }
        };
        self.build_registers_for(records, kind, key)
    }

    /// Builds Map-Registers of `kind` holding `records`, signed with `key` (or alg-id 0
    /// without one), split by size; each with its nonce.
    pub(crate) fn build_registers_for(
        &mut self,
        records: &[EidRecord],
        kind: RegisterKind,
        key: Option<(crate::crypto::auth::AuthKey, u8)>,
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
            |engine: &mut Engine, batch: &mut Vec<EidRecord>, out: &mut Vec<(Nonce, Vec<u8>)>| {
                if batch.is_empty() {
                    return;
                }
                let nonce = engine.registrar.register_nonce.next_nonce();
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
                        xtr_id: engine.cfg.xtr_id,
                        site_id: engine.cfg.site_id,
                    }),
                };
                if let Some(bytes) = signed(
                    &ControlMessage::MapRegister(reg),
                    key.as_ref().map(|k| &k.secret[..]),
                ) {
                    engine.registrar.sent_register_nonces.push_back(nonce);
                    while engine.registrar.sent_register_nonces.len() > 64 {
                        engine.registrar.sent_register_nonces.pop_front();
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
    pub(crate) fn send_registrations(&mut self, now: Duration) {
        self.registrar.last_register = Some(now);
        self.registrar.register_due = now + self.cfg.timers.register_interval;
        // Joining: the first round goes again at 0.5, 1.5, 2.5 and 3.5 s, so a member that
        // lost it (underlay multicast has no retransmission) hears of us within seconds.
        if let Some(gap) = JOIN_REPEATS.get(usize::from(self.registrar.join_rounds)) {
            self.registrar.join_rounds += 1;
            self.registrar.register_due = self.registrar.register_due.min(now + *gap);
        }
        self.registrar.greeted = self.members().into_iter().collect();
        // A seed re-announces the membership it holds every round (head-end replication):
        // two members that lost each other (their registers lost three times running, or a
        // greeting never answered) find each other again within a round, instead of never.
        if let MappingSystem::Push(pg) = &self.cfg.mapping_system
            && pg.delivery == Delivery::Replicate
            && pg.seeds.iter().any(|s| self.is_own_rloc(*s))
            && !self.members().is_empty()
        {
            self.map_server
                .notify_due
                .get_or_insert(now + super::engine::NOTIFY_COALESCE);
        }
        let records = self.own_records();
        self.send_register_set(now, records.clone(), false);
        if let Some(rec) = self.own_membership() {
            self.send_register_set(now, vec![rec], true);
        }
        self.register_with_map_servers(now, &records, true);
    }

    /// Leaves the peer group: every registration of ours is re-sent with Record TTL 0, so
    /// every member drops it now instead of at its expiry (RFC 9962 §4).
    pub fn leave(&mut self, now: Duration) {
        let mut records = self.own_records();
        records.iter_mut().for_each(|r| r.ttl = 0);
        self.register_with_map_servers(now, &records, false);
        self.send_register_set(now, records, false);
        if let Some(mut m) = self.own_membership() {
            m.ttl = 0;
            self.send_register_set(now, vec![m], true);
        }
    }

    /// Our membership record, in replicate mode.
    fn own_membership(&self) -> Option<EidRecord> {
        match &self.cfg.mapping_system {
            MappingSystem::Push(pg) if pg.delivery == Delivery::Replicate => {
                let g = GroupEid::any_source(0, pg.group);
                Some(self.membership_record(&g, pg.lispers_membership_encoding))
            }
            _ => None,
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
    pub(crate) fn greet(&mut self, now: Duration, peer: IpAddr) {
        if self.is_own_rloc(peer) || self.is_external_system(peer) {
            return;
        }
        if let MappingSystem::Push(pg) = &self.cfg.mapping_system
            && pg.delivery == Delivery::Replicate
            && !self.members().contains(&peer)
        {
            // Not (yet) a member: a joiner whose membership register is still on its way, or
            // a plain xTR. It gets our own mappings in plain unicast Map-Registers, never the
            // membership and never an Instance-ID 0xFFFFFF packet; a joiner is greeted
            // properly once its membership arrives.
            let records = self.own_records();
            for (_, r) in self.build_registers(&records, false, true) {
                self.send_unicast_register(peer, r);
            }
            return;
        }
        if !self.registrar.greeted.insert(peer) {
            return;
        }
        self.send_greeting(now, peer, GREETING_RETRY);
    }

    /// Sends our registrations (and our membership, with head-end replication) to one peer,
    /// asking for Map-Notifies; returns their nonces.
    fn send_own_registers_to(&mut self, peer: IpAddr) -> Vec<Nonce> {
        let MappingSystem::Push(pg) = self.cfg.mapping_system.clone() else {
            return Vec::new();
        };
        let mut sets = vec![(self.own_records(), false)];
        if let Some(m) = self.own_membership() {
            sets.push((vec![m], true));
        }
        let mut nonces = Vec::new();
        for (records, membership) in sets {
            for (nonce, r) in self.build_registers(&records, membership, true) {
                nonces.push(nonce);
                match pg.delivery {
                    Delivery::Replicate => self.replicate(peer, pg.group, &r),
                    Delivery::Multicast { .. } => {
                        self.send_unicast_register(peer, r);
                    }
                }
            }
        }
        nonces
    }

    fn send_greeting(&mut self, now: Duration, peer: IpAddr, backoff: Duration) {
        let nonces = self.send_own_registers_to(peer);
        if nonces.is_empty() {
            return;
        }
        if self.registrar.greetings.len() < MAX_GREETINGS
            || self.registrar.greetings.contains_key(&peer)
        {
            self.forget_greeting(&peer);
            for n in &nonces {
                self.registrar.greeting_nonces.insert(*n, peer);
            }
            self.registrar.greeting_timers.schedule(peer, now + backoff);
            self.registrar.greetings.insert(
                peer,
                super::engine::Greeting {
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
    pub(crate) fn lose_member(&mut self, now: Duration, peer: IpAddr) {
        if self.is_own_rloc(peer)
            || self.is_external_system(peer)
            || (self.registrar.lost.len() >= MAX_LOST && !self.registrar.lost.contains_key(&peer))
        {
            return;
        }
        self.registrar
            .lost
            .entry(peer)
            .or_insert((now, now + CHASE_FAST));
        // When it is back, it is greeted again (its registrations of ours are gone too).
        self.registrar.greeted.remove(&peer);
    }

    /// A member's RLOC answers again after it was marked down (a partition healed): it is
    /// greeted again, and with head-end replication the membership is announced again (a
    /// Notify round), so members that met no one but each other's seed while it was cut off
    /// find each other now, not at the seed's next register round.
    pub(crate) fn member_back(&mut self, now: Duration, rloc: IpAddr) {
        let MappingSystem::Push(pg) = &self.cfg.mapping_system else {
            return;
        };
        let replicate = pg.delivery == Delivery::Replicate;
        if replicate && !self.members().contains(&rloc) {
            return;
        }
        if replicate {
            self.map_server
                .notify_due
                .get_or_insert(now + super::engine::NOTIFY_COALESCE);
        }
        // Our registrations again too: a greeting that gave up while it was cut off is
        // otherwise repeated only at our next register round.
        self.registrar.greeted.remove(&rloc);
        self.greet(now, rloc);
    }

    /// Sends the chases that are due (housekeeping, every second).
    pub(crate) fn chase_lost_members(&mut self, now: Duration) {
        let due: Vec<(IpAddr, Duration)> = self
            .registrar
            .lost
            .iter()
            .filter(|(_, (_, next))| *next <= now)
            .map(|(p, (since, _))| (*p, *since))
            .collect();
        for (peer, since) in due {
            let lost_for = now.saturating_sub(since);
            if lost_for >= CHASE_FOR {
                self.registrar.lost.remove(&peer);
                continue;
            }
            let gap = if lost_for < CHASE_FAST_FOR {
                CHASE_FAST
            } else {
                CHASE_SLOW
            };
            self.registrar.lost.insert(peer, (since, now + gap));
            self.counters.lost_members_chased += 1;
            self.send_own_registers_to(peer);
        }
    }

    /// Greetings not answered in time go again, up to [`GREETING_TRIES`] times.
    pub(crate) fn retransmit_greetings(&mut self, now: Duration) {
        let greetings = &self.registrar.greetings;
        let due: Vec<(IpAddr, Duration)> = self
            .registrar
            .greeting_timers
            .due(now, |p, at| greetings.get(&p).is_some_and(|g| g.next == at))
            .into_iter()
            .filter_map(|p| Some((p, self.registrar.greetings.get(&p)?.backoff)))
            .collect();
        for (peer, backoff) in due {
            self.forget_greeting(&peer);
            if backoff < GREETING_RETRY * (1 << (GREETING_TRIES - 1)) {
                self.send_greeting(now, peer, backoff * 2);
            }
        }
    }

    fn forget_greeting(&mut self, peer: &IpAddr) {
        if let Some(g) = self.registrar.greetings.remove(peer) {
            for n in g.nonces {
                self.registrar.greeting_nonces.remove(&n);
            }
        }
    }

    /// A Map-Notify answered one register of a greeting.
    pub(crate) fn greeting_answered(&mut self, nonce: &Nonce) {
        let Some(peer) = self.registrar.greeting_nonces.remove(nonce) else {
            return;
        };
        if let Some(g) = self.registrar.greetings.get_mut(&peer) {
            g.nonces.retain(|n| n != nonce);
            if g.nonces.is_empty() {
                self.registrar.greetings.remove(&peer);
            }
        }
    }

    /// Sends `records` everywhere our registrations go.
    pub(crate) fn send_register_set(
        &mut self,
        now: Duration,
        records: Vec<EidRecord>,
        membership: bool,
    ) {
        if records.is_empty() {
            return;
        }
        let system = self.cfg.mapping_system.clone();
        match system {
            MappingSystem::Push(pg) => {
                let regs = self.build_registers(&records, membership, false);
                let members = self.members();
                match pg.delivery {
                    Delivery::Multicast { ttl } => {
                        for (_, r) in &regs {
                            self.counters.map_registers_sent += 1;
                            self.push(Transmit {
                                src: self.rloc_for(pg.group),
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
                                self.replicate(*m, pg.group, r);
                            }
                        }
                    }
                }
                // Our own Map-Server too (RFC 9962 §4: a register to the group reaches every
                // member, the sender included); after the copies, so that what a change
                // triggers here (SMRs) leaves after the registrations.
                for (_, r) in &regs {
                    self.deliver_locally(now, r);
                }
                // Bootstrap: seeds we do not know as members yet get unicast registers,
                // asking for a Map-Notify.
                let seeds: Vec<IpAddr> = pg
                    .seeds
                    .iter()
                    .copied()
                    .filter(|s| !self.is_own_rloc(*s) && !members.contains(s))
                    .collect();
                if !seeds.is_empty() {
                    let unicast = self.build_registers(&records, membership, true);
                    // With head-end replication a seed must also have taken our membership:
                    // until then it neither greets us nor tells the others of us.
                    let replicate = pg.delivery == Delivery::Replicate;
                    let unacked = seeds.iter().any(|s| {
                        !self.registrar.acked_seeds.contains(s)
                            || (replicate && !self.registrar.acked_seed_memberships.contains(s))
                    });
                    if !unacked {
                        self.registrar.seed_backoff = Duration::from_secs(1);
                    } else if !membership {
                        // Until a seed answers with a Map-Notify, try again soon.
                        let retry = now + self.registrar.seed_backoff;
                        // The join repeats are rounds of their own: they do not spend the
                        // backoff.
                        if usize::from(self.registrar.join_rounds) >= JOIN_REPEATS.len() {
                            self.registrar.seed_backoff = (self.registrar.seed_backoff * 2)
                                .min(self.cfg.timers.register_interval);
                        }
                        self.registrar.register_due = self.registrar.register_due.min(retry);
                    }
                    // Answers that never come (a seed refusing our name) are forgotten
                    // in bulk: the table stays bounded.
                    if self.registrar.seed_nonces.len() >= MAX_SEED_NONCES {
                        self.registrar.seed_nonces.clear();
                    }
                    for s in seeds {
                        for (nonce, r) in &unicast {
                            self.registrar
                                .seed_nonces
                                .entry(*nonce)
                                .or_insert_with(|| (Vec::new(), membership))
                                .0
                                .push(s);
                            self.send_unicast_register(s, r.clone());
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
                    let servers = self
                        .itr
                        .pull_servers
                        .get(&index)
                        .cloned()
                        .unwrap_or_default();
                    let regs = self.build_registers(&recs, false, true);
                    for s in servers {
                        if self.is_own_rloc(s) {
                            for (_, r) in &regs {
                                self.deliver_locally(now, r);
                            }
                            continue;
                        }
                        for (_, r) in &regs {
                            self.send_unicast_register(s, r.clone());
                        }
                    }
                }
            }
        }
    }

    /// One Map-Register straight to `dst`:4342.
    pub(crate) fn send_unicast_register(&mut self, dst: IpAddr, payload: Vec<u8>) {
        self.counters.map_registers_sent += 1;
        self.push(Transmit {
            src: self.rloc_for(dst),
            src_port: CONTROL_PORT,
            dst: SocketAddr::new(dst, CONTROL_PORT),
            ttl: None,
            payload,
        });
    }

    fn deliver_locally(&mut self, now: Duration, bytes: &[u8]) {
        if let Ok(ControlMessage::MapRegister(reg)) = ControlMessage::parse(bytes) {
            let me = self
                .cfg
                .rlocs
                .first()
                .map_or(IpAddr::from([127, 0, 0, 1]), |r| r.address);
            self.process_register(
                now,
                SocketAddr::new(me, CONTROL_PORT),
                bytes,
                &reg,
                super::engine::Arrival::Local,
            );
        }
    }

    /// One head-end-replicated copy: LISP data header with Instance-ID 0xFFFFFF (never
    /// encrypted), inner IP from our RLOC to the group, inner UDP to 4342, the register.
    fn replicate(&mut self, member: IpAddr, group: IpAddr, register: &[u8]) {
        let Some(src) = self.rloc_for(member) else {
            return;
        };
        if src.is_ipv4() != group.is_ipv4() {
            return;
        }
        let nonce: u32 = rand::RngExt::random::<u32>(&mut self.rng) & 0x00ff_ffff;
        let mut pkt = vec![0u8; DataHeader::LEN];
        let hdr = DataHeader::with_instance(CONTROL_INSTANCE_ID, nonce, 0);
        if hdr.emit(&mut pkt).is_err() {
            return;
        }
        let Ok(inner) = IpUdp::new(src, group, REPLICATION_TTL, CONTROL_PORT, CONTROL_PORT) else {
            return;
        };
        if inner.emit(register, &mut pkt).is_err() {
            return;
        }
        self.counters.replicated_copies_sent += 1;
        self.counters.map_registers_sent += 1;
        self.push(Transmit {
            src: Some(src),
            src_port: DATA_PORT,
            dst: SocketAddr::new(member, DATA_PORT),
            ttl: None,
            payload: pkt,
        });
    }
}

impl Engine {
    /// A Map-Notify to us: the answer to one of our Map-Registers, or an unsolicited one
    /// carrying the peer group's membership, which we learn and acknowledge.
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
        if self.cfg.site.keys.verify(bytes).is_err() {
            self.counters.map_notify_rejected_auth += 1;
            return;
        }
        // An answer to one of our registers (periodic, to a seed, or a greeting) echoes our
        // records; only an unsolicited Notify is the teller's view of the membership, and
        // only that one is acknowledged.
        let solicited = self.registrar.sent_register_nonces.contains(&n.nonce)
            || self.registrar.seed_nonces.contains_key(&n.nonce)
            || self.registrar.greeting_nonces.contains_key(&n.nonce);
        let mut learned = Vec::new();
        if let Some(g) = self.group_key() {
            let teller = src.ip();
            let mut told = solicited;
            for rec in &n.records {
                if EidKey::from_wire(&rec.eid, rec.mask_len) != Some(EidKey::Group(g)) {
                    continue;
                }
                if !told {
                    // The membership as this member holds it now replaces what it told us.
                    told = true;
                    self.registrar
                        .learned_members
                        .retain(|_, (_, from)| *from != teller);
                }
                let expires = now + Duration::from_secs(u64::from(rec.ttl.max(1)) * 60);
                for l in &rec.rlocs {
                    for e in crate::mapping::rle_entries(&l.locator)
                        .into_iter()
                        .flatten()
                    {
                        if let Some(a) = e.address.ip()
                            && !self.is_own_rloc(a)
                        {
                            self.registrar.learned_members.insert(a, (expires, teller));
                            learned.push(a);
                        }
                    }
                }
            }
        }
        for a in learned {
            self.greet(now, a);
        }
        self.greeting_answered(&n.nonce);
        if let Some((seeds, membership)) = self.registrar.seed_nonces.remove(&n.nonce) {
            // OOR may answer from another of its addresses: then the ack counts for every
            // seed that register went to.
            let acked = if seeds.contains(&src.ip()) {
                vec![src.ip()]
            } else {
                seeds
            };
            if membership {
                self.registrar.acked_seed_memberships.extend(acked);
            } else {
                self.registrar.acked_seeds.extend(acked);
            }
        }
        if !solicited {
            self.send_notify_ack(src, n);
        }
    }

    /// Map-Notify-Ack: the real record count and the records copied (lispers.net's MS needs
    /// at least one record; PROTOCOL.md §3.7).
    fn send_notify_ack(&mut self, dst: SocketAddr, n: &MapNotify) {
        let Some((key, alg)) = self.cfg.site.own_key.clone() else {
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
            self.counters.map_notify_acks_sent += 1;
            self.push(Transmit {
                src: self.rloc_for(dst.ip()),
                src_port: CONTROL_PORT,
                dst,
                ttl: None,
                payload: bytes,
            });
        }
    }
}
