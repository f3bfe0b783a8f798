//! A deterministic simulator of a LISP-Decent peer group: N control engines on a virtual
//! network with a virtual clock, delay, jitter, loss, partitions and dead nodes. Whole meshes
//! run in milliseconds of real time, and the same seed gives the same run.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::control::{
    AllowedName, AllowedPrefix, DatabaseMapping, Delivery, Engine, EngineConfig, LocalRloc,
    MappingSystem, PeerGroup, SitePolicy, Timers,
};
use crate::crypto::auth::{AuthKey, KeyRing, alg};
use crate::dataplane::{Datagrams, Decapsulated, Encapsulated, KeyEvent, Part, Xtr, XtrConfig};
use crate::mapping::{EidKey, EidPrefix};
use crate::wire::{CONTROL_PORT, DATA_PORT};

/// The shared site key of simulated meshes.
pub const SIM_KEY: &str = "sim-site-key";
/// The peer group of simulated meshes.
pub const SIM_GROUP: Ipv4Addr = Ipv4Addr::new(224, 1, 1, 1);

/// RLOC of simulated node `i` (1-based): 198.18.0.0/15 plus `i`.
pub fn rloc(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(
        u32::from(Ipv4Addr::new(198, 18, 0, 0)) + i as u32,
    ))
}

/// EID-prefix of simulated node `i`: 10.(i / 256).(i % 256).0/24.
pub fn eid(i: usize) -> EidPrefix {
    let net = format!("10.{}.{}.0/24", (i >> 8) & 0xff, i & 0xff);
    EidPrefix::new(0, net.parse().expect("valid prefix"))
}

/// The configuration of simulated node `i` in a peer group using `delivery`; node 1 is
/// everyone's bootstrap seed.
pub fn node_config(i: usize, delivery: Delivery) -> EngineConfig {
    let key = AuthKey::new(Some(1), SIM_KEY).with_algorithm(alg::HMAC_SHA_256_128);
    let mut xtr_id = [0u8; 16];
    xtr_id[8..].copy_from_slice(&(i as u64).to_be_bytes());
    EngineConfig {
        name: format!("n{i}"),
        xtr_id,
        site_id: [0; 8],
        rlocs: vec![LocalRloc {
            address: rloc(i),
            priority: 1,
            weight: 100,
        }],
        database: vec![DatabaseMapping { eid: eid(i) }],
        mapping_system: MappingSystem::Push(PeerGroup {
            group: IpAddr::V4(SIM_GROUP),
            delivery,
            seeds: vec![rloc(1)],
            lispers_membership_encoding: false,
        }),
        site: SitePolicy {
            keys: KeyRing::new(vec![key.clone()]),
            own_key: Some((key, alg::HMAC_SHA_256_128)),
            allowed: vec![AllowedPrefix {
                eid: EidPrefix::new(0, "10.0.0.0/8".parse().expect("valid prefix")),
                accept_more_specifics: true,
            }],
            allowed_names: vec![AllowedName {
                pattern: "n*".into(),
                instance_id: 0,
            }],
            accept_unauthenticated_membership: false,
        },
        timers: Timers::default(),
        encryption: None,
        crypto_peers: Vec::new(),
        register_name: true,
        map_servers: Vec::new(),
        map_resolvers: Vec::new(),
        nat: crate::control::NatConfig {
            use_rtr: true,
            ..Default::default()
        },
        via_rtr: None,
        register_nonce_base: 1,
        rng_seed: i as u64,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct InFlight {
    src: SocketAddr,
    dst: SocketAddr,
    payload: Vec<u8>,
}

/// The data plane the simulator gives a node with engine configuration `cfg`: its EIDs,
/// RLOCs and suite, clear data refused when encryption is on, a 1500-byte underlay.
pub fn xtr_config(cfg: &EngineConfig) -> XtrConfig {
    XtrConfig {
        database: cfg.database.iter().map(|d| d.eid).collect(),
        rlocs: cfg.rlocs.iter().map(|r| r.address).collect(),
        encryption: cfg.encryption,
        allow_clear: false,
        underlay_mtu: 1500,
        rekey_packets: cfg.timers.rekey_packets,
        rng_seed: cfg.rng_seed,
    }
}

/// The virtual network and its nodes: each a control engine and a data plane ([`Xtr`]);
/// LISP data (port 4341) goes through the data plane, the rest to the engine.
pub struct Sim {
    pub now: Duration,
    pub nodes: Vec<Option<Engine>>,
    /// The data plane of each node (beside `nodes`).
    pub xtrs: Vec<Option<Xtr>>,
    /// What each node's data plane decapsulated for its TUN devices: (Instance-ID, packet).
    pub tun: Vec<Vec<(u32, Vec<u8>)>>,
    /// The ICMP errors each node's data plane wrote back into its TUN devices.
    pub icmp: Vec<Vec<(u32, Vec<u8>)>>,
    /// Every key event each node's engine gave its data plane, in order (see
    /// [`take_key_events`](Self::take_key_events)).
    key_log: Vec<Vec<KeyEvent>>,
    /// One-way delay of every datagram.
    pub delay: Duration,
    /// Extra random delay, up to this much.
    pub jitter: Duration,
    /// Probability that a datagram is lost.
    pub loss: f64,
    by_addr: HashMap<IpAddr, usize>,
    queue: BinaryHeap<Reverse<(Duration, u64, InFlight)>>,
    seq: u64,
    rng: StdRng,
    /// Nodes cut off from each other: datagrams between different sides are dropped.
    side: HashMap<usize, u8>,
    /// Datagrams sent (whatever became of them).
    pub sent: u64,
    /// Addresses cut off: datagrams from or to them are lost.
    pub blackhole: HashSet<IpAddr>,
    /// NATs ([`Sim::nat`]): each inside address and the public address it is translated to.
    nats: HashMap<IpAddr, IpAddr>,
    /// Address pairs between which nothing passes ([`Sim::cut`]).
    cuts: Vec<(IpAddr, IpAddr)>,
    /// NAT bindings (endpoint-independent): inside address and port to public port, and
    /// back.
    nat_out: HashMap<SocketAddr, SocketAddr>,
    nat_in: HashMap<SocketAddr, SocketAddr>,
    /// The next public port a NAT hands out.
    nat_next_port: u16,
    /// When set, every datagram sent is kept here (source, destination, payload).
    pub capture: Option<Vec<(SocketAddr, SocketAddr, Vec<u8>)>>,
    pub delivered: u64,
}

impl Sim {
    pub fn new(delay: Duration, seed: u64) -> Self {
        Sim {
            now: Duration::ZERO,
            nodes: Vec::new(),
            xtrs: Vec::new(),
            tun: Vec::new(),
            icmp: Vec::new(),
            key_log: Vec::new(),
            delay,
            jitter: Duration::ZERO,
            loss: 0.0,
            by_addr: HashMap::new(),
            queue: BinaryHeap::new(),
            seq: 0,
            rng: StdRng::seed_from_u64(seed),
            side: HashMap::new(),
            sent: 0,
            capture: None,
            blackhole: HashSet::new(),
            nats: HashMap::new(),
            cuts: Vec::new(),
            nat_out: HashMap::new(),
            nat_in: HashMap::new(),
            nat_next_port: 20000,
            delivered: 0,
        }
    }

    /// Starts a node now; returns its index.
    pub fn add(&mut self, mut cfg: EngineConfig) -> usize {
        let i = self.nodes.len();
        // The virtual clock stands in for the wall clock our register nonces count from, so
        // a node started again continues above its earlier nonces.
        cfg.register_nonce_base = cfg.register_nonce_base.max(self.now.as_micros() as u64 + 1);
        for r in &cfg.rlocs {
            self.by_addr.insert(r.address, i);
        }
        self.add_with_xtr(cfg, |_| {})
    }

    /// Starts a node now whose data plane configuration `adjust` changes first.
    pub fn add_with_xtr(
        &mut self,
        cfg: EngineConfig,
        adjust: impl FnOnce(&mut XtrConfig),
    ) -> usize {
        let i = self.nodes.len();
        let mut x = xtr_config(&cfg);
        adjust(&mut x);
        let mut e = Engine::new(cfg);
        e.handle_timeout(self.now);
        self.nodes.push(Some(e));
        self.xtrs.push(Some(Xtr::new(x)));
        self.tun.push(Vec::new());
        self.icmp.push(Vec::new());
        self.key_log.push(Vec::new());
        self.flush(i);
        i
    }

    /// The key events node `i`'s engine gave its data plane since the last call.
    pub fn take_key_events(&mut self, i: usize) -> Vec<KeyEvent> {
        self.key_log
            .get_mut(i)
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Node `i`'s RLOCs become `rlocs` (its interface addresses changed: it roams): what
    /// is sent to its old addresses is lost from now on, and its engine and data plane are
    /// told, as the node runtime tells them after an address event.
    pub fn move_node(&mut self, i: usize, rlocs: Vec<crate::control::LocalRloc>) {
        self.by_addr.retain(|_, n| *n != i);
        for r in &rlocs {
            self.by_addr.insert(r.address, i);
        }
        let now = self.now;
        if let Some(Some(x)) = self.xtrs.get_mut(i) {
            x.set_rlocs(rlocs.iter().map(|r| r.address).collect());
        }
        if let Some(Some(e)) = self.nodes.get_mut(i) {
            e.set_rlocs(now, rlocs);
        }
        self.flush(i);
    }

    /// Replaces node `i` by a fresh engine and data plane (a restart: nothing kept).
    pub fn restart(&mut self, i: usize, cfg: EngineConfig) {
        let x = xtr_config(&cfg);
        let mut e = Engine::new(cfg);
        e.handle_timeout(self.now);
        self.nodes[i] = Some(e);
        self.xtrs[i] = Some(Xtr::new(x));
        self.flush(i);
    }

    pub fn xtr(&self, i: usize) -> Option<&Xtr> {
        self.xtrs.get(i).and_then(Option::as_ref)
    }

    /// An inner packet from node `i`'s TUN device of Instance-ID `iid`: encapsulated by its
    /// data plane against its engine's map-cache, and what that gives sent.
    pub fn send_packet(&mut self, i: usize, iid: u32, packet: &[u8]) -> Option<Encapsulated> {
        let now = self.now;
        let (Some(Some(e)), Some(Some(x))) = (self.nodes.get(i), self.xtrs.get_mut(i)) else {
            return None;
        };
        // Read into a buffer with room around the packet, as the node's TUN reader does, and
        // encapsulated where it lies.
        let at = crate::dataplane::xtr::PACKET_AT;
        let mut read = vec![0u8; at + packet.len() + crate::dataplane::xtr::TAILROOM];
        read[at..at + packet.len()].copy_from_slice(packet);
        let range = at..at + packet.len();
        let r = x.encapsulate_in_place(now, iid, 0, &mut read, range, e.map_cache());
        if let Encapsulated::IcmpToTun(error) = &r {
            self.icmp[i].push((iid, error.clone()));
        }
        self.flush_read(i, Some(&read));
        Some(r)
    }

    /// Stops a node for good (it sends nothing more and receives nothing).
    pub fn kill(&mut self, i: usize) {
        self.nodes[i] = None;
        self.xtrs[i] = None;
    }

    /// Puts nodes on sides; datagrams only flow within a side. `heal` undoes it.
    pub fn partition(&mut self, sides: &[&[usize]]) {
        self.side.clear();
        for (s, members) in sides.iter().enumerate() {
            for m in *members {
                self.side.insert(*m, s as u8);
            }
        }
    }

    pub fn heal(&mut self) {
        self.side.clear();
    }

    pub fn engine(&self, i: usize) -> Option<&Engine> {
        self.nodes.get(i).and_then(Option::as_ref)
    }

    pub fn engine_mut(&mut self, i: usize) -> Option<&mut Engine> {
        self.nodes.get_mut(i).and_then(Option::as_mut)
    }

    /// Hands a datagram to node `to` as if it came from `src` (for injecting packets).
    pub fn inject(&mut self, src: SocketAddr, dst: SocketAddr, payload: Vec<u8>) {
        self.enqueue(src, dst, payload);
    }

    fn connected(&self, a: usize, b: usize) -> bool {
        match (self.side.get(&a), self.side.get(&b)) {
            (Some(x), Some(y)) => x == y,
            _ => true,
        }
    }

    /// Puts `inside` behind a NAT whose public address is `public` (masquerade with an
    /// endpoint-independent mapping: a binding per inside address and port, made by the
    /// first datagram out, from public port 20000 up). Datagrams from outside reach an
    /// inside address only through a binding; nodes behind the same NAT reach each other
    /// directly.
    pub fn nat(&mut self, inside: IpAddr, public: IpAddr) {
        self.nats.insert(inside, public);
    }

    /// Drops every datagram between the addresses `a` and `b` (as they appear on the wire
    /// between NATs: a NAT's public address), both ways, from now on.
    pub fn cut(&mut self, a: IpAddr, b: IpAddr) {
        self.cuts.push((a, b));
    }

    /// The NAT forgets its bindings (a NAT that restarted, or whose entries timed out):
    /// the next datagram out gets a new public port.
    pub fn nat_forget(&mut self) {
        self.nat_out.clear();
        self.nat_in.clear();
    }

    /// A datagram from `src` to `dst` as it leaves its NAT: the source translated when it
    /// is inside one and the destination is not behind the same NAT.
    fn nat_translate(&mut self, src: SocketAddr, dst: SocketAddr) -> SocketAddr {
        let Some(public) = self.nats.get(&src.ip()).copied() else {
            return src;
        };
        if self.nats.get(&dst.ip()) == Some(&public) {
            return src;
        }
        if let Some(p) = self.nat_out.get(&src) {
            return *p;
        }
        let p = SocketAddr::new(public, self.nat_next_port);
        self.nat_next_port = self.nat_next_port.wrapping_add(1).max(20000);
        self.nat_out.insert(src, p);
        self.nat_in.insert(p, src);
        p
    }

    fn enqueue(&mut self, src: SocketAddr, dst: SocketAddr, payload: Vec<u8>) {
        self.sent += 1;
        let src = self.nat_translate(src, dst);
        if self
            .cuts
            .iter()
            .any(|&(a, b)| (src.ip(), dst.ip()) == (a, b) || (src.ip(), dst.ip()) == (b, a))
        {
            return;
        }
        // From outside, an inside address is not reachable (it is not routed there).
        if self.nats.contains_key(&dst.ip()) && self.nats.get(&src.ip()) != self.nats.get(&dst.ip())
        {
            return;
        }
        // To a NAT's public address: through a binding, or nowhere.
        let dst = if self.nats.values().any(|p| *p == dst.ip()) {
            match self.nat_in.get(&dst) {
                Some(inside) => *inside,
                None => return,
            }
        } else {
            dst
        };
        if let Some(c) = self.capture.as_mut() {
            c.push((src, dst, payload.clone()));
        }
        if self.loss > 0.0 && self.rng.random::<f64>() < self.loss {
            return;
        }
        if self.blackhole.contains(&src.ip()) || self.blackhole.contains(&dst.ip()) {
            return;
        }
        let jitter = if self.jitter.is_zero() {
            Duration::ZERO
        } else {
            self.jitter.mul_f64(self.rng.random::<f64>())
        };
        self.seq += 1;
        self.queue.push(Reverse((
            self.now + self.delay + jitter,
            self.seq,
            InFlight { src, dst, payload },
        )));
    }

    /// Moves everything node `i` wants to send onto the network, after the exchange of its
    /// engine and data plane (call it after driving an engine directly through
    /// [`engine_mut`](Self::engine_mut)). A GSO batch leaves as its datagrams.
    pub fn flush(&mut self, i: usize) {
        self.flush_read(i, None);
    }

    /// [`flush`](Self::flush), with the buffer of the packet just encapsulated in place
    /// (slot 0), from which its datagram is gathered.
    fn flush_read(&mut self, i: usize, read: Option<&[u8]>) {
        let now = self.now;
        let mut out = Vec::new();
        if let (Some(Some(e)), Some(Some(x))) = (self.nodes.get_mut(i), self.xtrs.get_mut(i)) {
            // The key events are logged on their way (the tests look at them).
            while let Some(k) = e.poll_key_event() {
                self.key_log[i].push(k.clone());
                x.handle_key_event(now, k);
            }
            e.exchange(now, x);
            while let Some((iid, p)) = x.poll_to_tun() {
                self.icmp[i].push((iid, p));
            }
            let mut d = Datagrams::default();
            while let Some(t) = x.poll_transmit_parts(&mut d) {
                let port = if t.from_control_port {
                    CONTROL_PORT
                } else if t.from_data_port {
                    DATA_PORT
                } else {
                    // The flow's source port, as the node picks one of its ports by it.
                    61000 + (t.flow % 16) as u16
                };
                let src = SocketAddr::new(t.src.unwrap_or(rloc(i + 1)), port);
                let datagrams: Option<Vec<Vec<u8>>> = d
                    .parts
                    .iter()
                    .map(|p| match p {
                        Part::Own(r) => d.buf.get(r.clone()).map(<[u8]>::to_vec),
                        Part::Slot { slot: 0, range } => {
                            read.and_then(|b| b.get(range.clone())).map(<[u8]>::to_vec)
                        }
                        Part::Slot { .. } => None,
                    })
                    .collect();
                match datagrams {
                    Some(ds) => out.extend(ds.into_iter().map(|b| (src, t.dst, b))),
                    None => x.transmit_failed(&t),
                }
            }
        }
        // What the engine sends without a source leaves from its first RLOC.
        let home = self
            .engine(i)
            .and_then(|e| e.config().rlocs.first())
            .map_or(rloc(i + 1), |r| r.address);
        if let Some(e) = self.engine_mut(i) {
            while let Some(t) = e.poll_transmit() {
                let src = SocketAddr::new(t.src.unwrap_or(home), t.src_port);
                out.push((src, t.dst, t.payload));
            }
        }
        for (src, dst, payload) in out {
            self.enqueue(src, dst, payload);
        }
    }

    fn deliver(&mut self, f: InFlight) {
        // A source outside the mesh (an injected packet) reaches every side.
        let from = self.by_addr.get(&f.src.ip()).copied();
        let targets: Vec<usize> = if f.dst.ip().is_multicast() {
            (0..self.nodes.len()).collect()
        } else {
            self.by_addr.get(&f.dst.ip()).copied().into_iter().collect()
        };
        for to in targets {
            if from.is_some_and(|from| !self.connected(from, to)) {
                continue;
            }
            let now = self.now;
            let (Some(Some(e)), Some(Some(x))) = (self.nodes.get_mut(to), self.xtrs.get_mut(to))
            else {
                continue;
            };
            if f.dst.port() == DATA_PORT {
                let mut datagram = f.payload.clone();
                match x.decapsulate_at(now, f.src, Some(f.dst.ip()), &mut datagram) {
                    Decapsulated::Deliver { iid, packet } => {
                        self.tun[to].push((iid, packet.to_vec()))
                    }
                    Decapsulated::Control { payload } => e.handle_replicated(now, f.src, payload),
                    Decapsulated::Forward { iid, packet } => {
                        let _ = x.forward(now, iid, packet, e.map_cache());
                    }
                    Decapsulated::Dropped(_) => {}
                }
                x.flush_counters();
            } else {
                e.handle_datagram(now, f.src, f.dst, &f.payload);
            }
            self.delivered += 1;
            self.flush(to);
        }
    }

    fn next_timer(&self) -> Option<(Duration, usize)> {
        self.nodes
            .iter()
            .zip(&self.xtrs)
            .enumerate()
            .filter_map(|(i, (n, x))| {
                let e = n.as_ref()?.poll_timeout();
                let x = x.as_ref().and_then(Xtr::poll_timeout).unwrap_or(e);
                Some((e.min(x), i))
            })
            .min()
    }

    /// When the next event happens.
    pub fn next_event(&self) -> Option<Duration> {
        let p = self.queue.peek().map(|Reverse((t, _, _))| *t);
        let t = self.next_timer().map(|(t, _)| t);
        match (p, t) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Runs the next event (a delivery or a timer); false when there is none before `limit`.
    pub fn step(&mut self, limit: Duration) -> bool {
        let next_packet = self.queue.peek().map(|Reverse((t, _, _))| *t);
        let next_timer = self.next_timer();
        let t = match (next_packet, next_timer) {
            (Some(p), Some((tt, _))) => p.min(tt),
            (Some(p), None) => p,
            (None, Some((tt, _))) => tt,
            (None, None) => return false,
        };
        if t > limit {
            self.now = limit;
            return false;
        }
        self.now = self.now.max(t);
        if next_packet == Some(t) {
            if let Some(Reverse((_, _, f))) = self.queue.pop() {
                self.deliver(f);
            }
        } else if let Some((_, i)) = next_timer {
            let now = self.now;
            if let Some(e) = self.engine_mut(i) {
                e.handle_timeout(now);
            }
            // The data plane's timers run in the exchange.
            self.flush(i);
        }
        true
    }

    /// Runs until `done` holds (checked after every event) or `limit` passes; returns
    /// whether `done` held.
    pub fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&Sim) -> bool) -> bool {
        while !done(self) {
            if !self.step(limit) {
                return done(self);
            }
        }
        true
    }

    /// Like [`run_until`](Self::run_until), checking `done` at most once per `every` of
    /// virtual time (for large meshes, where a check costs more than an event).
    pub fn run_until_every(
        &mut self,
        limit: Duration,
        every: Duration,
        mut done: impl FnMut(&Sim) -> bool,
    ) -> bool {
        let mut next_check = self.now;
        loop {
            // Check on schedule, and always before the clock would jump past a check.
            if self.now >= next_check || self.next_event().is_none_or(|t| t > next_check) {
                if done(self) {
                    return true;
                }
                next_check = self.now + every;
            }
            if !self.step(limit) {
                return done(self);
            }
        }
    }

    /// Runs until the virtual clock reaches `t`.
    pub fn run_to(&mut self, t: Duration) {
        while self.step(t) {}
        self.now = self.now.max(t);
    }

    /// Whether every live node holds the database mappings of every live node.
    pub fn converged(&self) -> bool {
        let wanted: HashSet<EidKey> = self
            .nodes
            .iter()
            .flatten()
            .flat_map(|e| e.config().database.iter().map(|d| EidKey::Prefix(d.eid)))
            .collect();
        self.nodes
            .iter()
            .flatten()
            .all(|e| wanted.iter().all(|k| e.site_db().get(k).is_some()))
    }

    /// How many live nodes hold a registration of `p`.
    pub fn holders(&self, p: EidPrefix) -> usize {
        self.nodes
            .iter()
            .flatten()
            .filter(|e| e.site_db().get(&EidKey::Prefix(p)).is_some())
            .count()
    }
}

/// An authoritative EID-record for `eid`/`mask_len` at one RLOC (priority 1, weight 100,
/// local and reachable), `ttl` minutes: what the tests, benchmarks and load generator
/// register.
pub fn one_rloc_record(
    eid: crate::wire::Address,
    mask_len: u8,
    ttl: u32,
    rloc: IpAddr,
) -> crate::wire::EidRecord {
    let mut r = crate::wire::EidRecord::new(
        eid,
        mask_len,
        ttl,
        vec![crate::wire::RlocRecord {
            priority: 1,
            weight: 100,
            m_priority: 255,
            m_weight: 0,
            flags: 5,
            locator: crate::wire::Address::from(rloc),
        }],
    );
    r.authoritative = true;
    r
}

/// A map-cache entry for `eid` with `rlocs` up (priority 1, equal weights), installed at
/// time zero and live until `expires`: what tests and benchmarks give an `Xtr` to look up.
pub fn cache_entry(
    eid: EidPrefix,
    rlocs: &[IpAddr],
    expires: Duration,
) -> crate::mapping::MapCacheEntry {
    use crate::mapping::{CachedRloc, MapCacheEntry, MappingSource, RlocState};
    MapCacheEntry {
        eid,
        rlocs: rlocs
            .iter()
            .map(|a| CachedRloc {
                record: crate::wire::RlocRecord {
                    priority: 1,
                    weight: 100,
                    m_priority: 255,
                    m_weight: 0,
                    flags: 1,
                    locator: crate::wire::Address::from(*a),
                },
                state: RlocState::Up,
                rtt: None,
                via: None,
            })
            .collect(),
        action: 0,
        ttl: u32::try_from(expires.as_secs() / 60)
            .unwrap_or(u32::MAX)
            .max(1),
        installed: Duration::ZERO,
        expires,
        source: MappingSource::LocalDatabase,
    }
}

/// A Map-Register of `records` from `xtr_id` with `nonce` (P bit set, TTLs as given),
/// signed with HMAC-SHA-256-128 under key-id 1 and `key`.
pub fn signed_register(
    records: Vec<crate::wire::EidRecord>,
    xtr_id: [u8; 16],
    nonce: crate::wire::Nonce,
    key: &[u8],
) -> Vec<u8> {
    use crate::wire::{Authentication, ControlMessage, MapRegister, XtrTrailer};
    let reg = MapRegister {
        proxy_reply: true,
        security: false,
        eid_notify: false,
        use_ttl: true,
        merge: false,
        want_notify: false,
        reserved: 0,
        nonce,
        auth: Authentication::unsigned(1, alg::HMAC_SHA_256_128),
        records,
        trailer: Some(XtrTrailer {
            xtr_id,
            site_id: [0; 8],
        }),
    };
    let mut b = ControlMessage::MapRegister(reg)
        .to_bytes()
        .expect("a register of at most 255 records emits");
    crate::crypto::auth::sign(&mut b, key).expect("an HMAC-SHA-256 field signs");
    b
}
