//! The node runtime: configuration, state, sockets, timers and signals around the sans-IO
//! control engine (the `quinn` half of the quinn / quinn-proto split).

pub mod config;
pub mod dns;
pub mod handle;
pub mod interfaces;
pub mod lig;
pub mod sockets;
pub mod state;
pub mod tun;
pub mod udp_io;
pub mod view;
pub mod worker;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};
use worker::{ToWorker, Workers};

use crate::control::{Engine, EngineConfig, LocalRloc, MappingSystem};
use crate::dataplane::XtrConfig;
use crate::mapping::PrefixTable;
use config::{NodeConfig, RlocSource};

/// How often interface RLOCs are re-read when no change was signalled (netlink events make
/// the node re-read them at once; this is the fallback should an event be lost).
const RLOC_REFRESH: Duration = Duration::from_secs(10);
/// After an address or link change, the node waits this long for the rest of the burst (an
/// address replaced is a removal and an addition) before it re-reads its interface RLOCs.
const RLOC_SETTLE: Duration = Duration::from_millis(20);

/// Resolves the configured RLOCs to addresses (interfaces through netlink).
async fn resolve_rlocs(
    cfg: &NodeConfig,
    mut ages: Option<&mut AddressAges>,
) -> anyhow::Result<Vec<LocalRloc>> {
    let mut out = Vec::new();
    let mut present = Vec::new();
    if let Some(a) = ages.as_deref_mut() {
        a.reads += 1;
    }
    for r in &cfg.rlocs {
        match &r.source {
            RlocSource::Address(a) => out.push(LocalRloc {
                address: *a,
                priority: r.priority,
                weight: r.weight,
            }),
            RlocSource::Interface { name, v4, v6 } => {
                let (_, addrs) = interfaces::addresses(name).await?;
                for v6_family in [false, true] {
                    let mut family: Vec<IpAddr> = addrs
                        .iter()
                        .copied()
                        .filter(|a| a.is_ipv6() == v6_family)
                        .filter(|a| (a.is_ipv4() && *v4) || (a.is_ipv6() && *v6))
                        .collect();
                    present.extend(family.iter().copied());
                    let age = |a: &IpAddr| ages.as_deref_mut().map_or(0, |g| g.first_read(*a));
                    let read: Vec<u64> = family.iter().map(age).collect();
                    let newest = read.iter().copied().max().unwrap_or(0);
                    // Make-before-break: an address that appeared after the others is the one
                    // the node is moving to; it is registered as preferred (and listed first,
                    // so it is also the source on a tie), the older ones one priority lower
                    // while they last.
                    let mut order: Vec<usize> = (0..family.len()).collect();
                    order.sort_by_key(|i| std::cmp::Reverse(read[*i]));
                    family = order.iter().map(|i| family[*i]).collect();
                    for (i, a) in order.iter().zip(family) {
                        let priority = if read[*i] < newest && r.priority < 254 {
                            r.priority + 1
                        } else {
                            r.priority
                        };
                        out.push(LocalRloc {
                            address: a,
                            priority,
                            weight: r.weight,
                        });
                    }
                }
            }
        }
    }
    if let Some(a) = ages {
        a.first.retain(|k, _| present.contains(k));
    }
    Ok(out)
}

/// When each interface address was first read (the number of the read), so that one that
/// appears while others are there is preferred: a node that moves gets its new address
/// before the old one goes (make-before-break).
#[derive(Debug, Default)]
struct AddressAges {
    first: std::collections::HashMap<IpAddr, u64>,
    reads: u64,
}

impl AddressAges {
    /// The read `a` was first seen in (this one, for a new address).
    fn first_read(&mut self, a: IpAddr) -> u64 {
        *self.first.entry(a).or_insert(self.reads)
    }
}

/// Where this node's own Map-Resolver answers (for lig from the web UI): the first listen
/// address, else the first RLOC, on the control port.
pub async fn own_map_resolver(cfg: &NodeConfig) -> anyhow::Result<SocketAddr> {
    let ip = match cfg.listen.first() {
        Some(a) => *a,
        None => resolve_rlocs(cfg, None)
            .await?
            .first()
            .map(|r| r.address)
            .context("no RLOC address: the configured interfaces have no usable address")?,
    };
    Ok(SocketAddr::new(ip, cfg.control_port))
}

/// Runs a node until SIGINT or SIGTERM; then it leaves the peer group and returns. Queries
/// from the API arrive on `requests` and are answered between packets. This is the set-up:
/// the sockets, the TUN devices, the engine and the data plane; [`Node`] runs the loop.
pub async fn run(cfg: NodeConfig, mut requests: handle::Requests) -> anyhow::Result<()> {
    let xtr_id = state::xtr_id(&cfg.state_dir)?;
    let mut address_ages = AddressAges::default();
    let rlocs = resolve_rlocs(&cfg, Some(&mut address_ages)).await?;
    if rlocs.is_empty() {
        bail!("no RLOC address: the configured interfaces have no usable address");
    }
    let engine_cfg = EngineConfig {
        name: cfg.name.clone(),
        xtr_id,
        site_id: cfg.site_id,
        rlocs: rlocs.clone(),
        database: cfg.database.clone(),
        mapping_system: cfg.mapping_system.clone(),
        site: cfg.site.clone(),
        timers: cfg.timers.clone(),
        encryption: cfg.encryption,
        crypto_peers: cfg.crypto_peers.clone(),
        register_name: cfg.register_name,
        map_servers: cfg.map_servers.clone(),
        map_resolvers: cfg.map_resolvers.clone(),
        nat: cfg.nat.clone(),
        via_rtr: None,
        register_nonce_base: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_micros() as u64),
        rng_seed: rand::random(),
    };
    // Without a TUN device the data port carries only control in data: one worker.
    let workers = if cfg.instances.is_empty() {
        1
    } else {
        cfg.workers
    };
    let sockets::Opened {
        sockets,
        control: mut rx,
        data: data_sockets,
        joined,
    } = sockets::open(&cfg, &rlocs, workers).await?;

    // The data plane: one TUN device per configured Instance-ID, one queue per worker.
    let mut tuns: Vec<tun::Tun> = Vec::new();
    for inst in &cfg.instances {
        if tuns.is_empty() {
            match tun::remove_stale_rules(&cfg.instances).await {
                Ok(0) => {}
                Ok(n) => info!(rules = n, "removed the routing rules an earlier run left"),
                Err(e) => warn!("cannot look for rules an earlier run left: {e:#}"),
            }
        }
        let t = match tun::Tun::create(inst, cfg.underlay_mtu, workers).await {
            Ok(t) => t,
            Err(e) => {
                // A run that fails leaves nothing behind: the devices go with the process,
                // the rules and routes of the ones made so far are taken out here.
                for t in tuns.iter_mut() {
                    t.remove_rules().await;
                }
                return Err(e);
            }
        };
        info!(device = %inst.tun, iid = inst.instance_id, addresses = ?inst.addresses, mtu = t.mtu, table = ?inst.table, queues = workers, "TUN device up");
        tuns.push(t);
    }
    let start = Instant::now();
    let engine = Engine::new(engine_cfg);
    let mut queues: Vec<_> = tuns
        .iter_mut()
        .map(|t| t.take_queues().into_iter())
        .collect();
    let snapshot = Arc::new(engine.map_cache().clone());
    let mut setups = Vec::new();
    let heard = crate::dataplane::liveness::Heard::new();
    for data in data_sockets {
        setups.push(worker::Setup {
            xtr: XtrConfig {
                database: cfg.database.iter().map(|d| d.eid).collect(),
                rlocs: rlocs.iter().map(|r| r.address).collect(),
                encryption: cfg.encryption,
                allow_clear: cfg.allow_clear,
                underlay_mtu: cfg.underlay_mtu,
                rekey_packets: cfg.timers.rekey_packets,
                rng_seed: rand::random(),
            },
            heard: heard.clone(),
            cache: snapshot.clone(),
            tuns: queues.iter_mut().filter_map(|q| q.next()).collect(),
            data,
            control_out: sockets.control_port(cfg.control_port)?,
        });
    }
    let (workers, mut worker_requests, mut replicated) = match Workers::spawn(start, setups) {
        Ok(w) => w,
        Err(e) => {
            for t in tuns.iter_mut() {
                t.remove_rules().await;
            }
            return Err(e);
        }
    };
    info!(
        name = %cfg.name,
        xtr_id = %hex::encode(xtr_id),
        rlocs = ?rlocs.iter().map(|r| r.address).collect::<Vec<_>>(),
        database = ?cfg.database.iter().map(|d| d.eid.to_string()).collect::<Vec<_>>(),
        "node started"
    );
    let (dns_tx, mut dns_rx) = mpsc::channel::<(u32, Vec<IpAddr>)>(256);
    if let (MappingSystem::Pull(p), Some(d)) = (&cfg.mapping_system, &cfg.dns) {
        dns::spawn(p.clone(), d.clone(), dns_tx)?;
    } else {
        drop(dns_tx);
    }
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut sigusr1 =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1())?;
    // Address and link changes, when an RLOC comes from an interface (RFC 9962 §1: xTRs
    // roam and tell each other their new RLOCs).
    let mut net_changes = if node_uses_interfaces(&cfg) {
        match interfaces::watch() {
            Ok(rx) => Some(rx),
            Err(e) => {
                warn!(
                    "cannot watch address changes ({e:#}): interface RLOCs are re-read every {} s",
                    RLOC_REFRESH.as_secs()
                );
                None
            }
        }
    } else {
        None
    };
    let mut ours = PrefixTable::new();
    for d in &cfg.database {
        ours.insert(d.eid, ());
    }
    let mut node = Node {
        address_ages,
        sockets,
        joined,
        tuns,
        ours,
        workers,
        published: engine.map_cache().generation(),
        next_publish: start,
        engine,
        start,
        engine_due: start,
        engine_driven: true,
        members_seen: 0,
        nat_seen: Default::default(),
        next_rloc_refresh: start + RLOC_REFRESH,
        next_route_sync: start,
        routed_generation: u64::MAX,
        cfg,
    };
    loop {
        node.wake().await;
        tokio::select! {
            got = rx.recv() => {
                let Some(batch) = got else { bail!("all sockets closed") };
                node.on_control(batch);
            }
            Some(r) = worker_requests.recv() => {
                let now = node.now();
                node.engine.handle_request(now, r);
                node.engine_driven = true;
            }
            Some((from, payload)) = replicated.recv() => node.on_replicated(from, &payload),
            Some(req) = requests.recv() => node.on_request(req).await,
            Some((index, addrs)) = dns_rx.recv() => {
                let now = node.now();
                node.engine.set_pull_servers(now, index, addrs);
                node.engine_driven = true;
            }
            Some(()) = next_change(&mut net_changes) => node.on_net_change(),
            _ = tokio::time::sleep_until(node.deadline().into()) => {}
            _ = tokio::signal::ctrl_c() => break,
            _ = sigterm.recv() => break,
            _ = sigusr1.recv() => log_counters(&node.engine, &node.workers.report().await.stats),
        }
        node.refresh_rlocs().await;
    }
    log_counters(&node.engine, &node.workers.report().await.stats);
    for t in node.tuns.iter_mut() {
        t.remove_rules().await;
    }
    info!("leaving the peer group");
    let now = node.now();
    node.engine.leave(now);
    flush(&mut node.engine, &node.sockets, &node.workers).await;
    node.workers.stop();
    Ok(())
}

/// The map-cache is published to the workers at most this often (and never more than a
/// twentieth of the control task's time goes to copying it, however large it grows).
const PUBLISH_GAP: Duration = Duration::from_millis(2);

/// A running node: the sans-IO control engine, the data-plane workers it feeds, and the
/// devices and sockets of the control plane. One handler per event; the clock is read once
/// per event.
struct Node {
    cfg: NodeConfig,
    /// Underlay multicast: where the peer group is joined (re-joined when the interface
    /// changes).
    joined: Option<sockets::Joined>,
    /// When each interface address was first seen ([`AddressAges`]).
    address_ages: AddressAges,
    start: Instant,
    engine: Engine,
    workers: Workers,
    /// The TUN devices (their routes and rules; the workers read and write their queues).
    tuns: Vec<tun::Tun>,
    /// Our own EID-prefixes (never routed into a TUN device).
    ours: PrefixTable<()>,
    sockets: sockets::Sockets,
    /// The map-cache generation the workers have.
    published: u64,
    next_publish: Instant,
    /// The engine's timers, output and key events are looked at when it is due or was just
    /// driven.
    engine_due: Instant,
    engine_driven: bool,
    members_seen: usize,
    /// What the log last said of each RLOC and NAT.
    nat_seen: std::collections::BTreeMap<IpAddr, bool>,
    next_rloc_refresh: Instant,
    next_route_sync: Instant,
    routed_generation: u64,
}

impl Node {
    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    /// The next time the loop must wake up by itself.
    fn deadline(&self) -> Instant {
        let mut d = self.engine_due.min(self.next_rloc_refresh);
        if self.map_cache_changed() {
            d = d.min(self.next_publish);
        }
        if !self.tuns.is_empty() {
            d = d.min(self.next_route_sync);
        }
        d
    }

    /// Before each wait: the engine's timers when due or driven, its keys to the workers,
    /// everything it wants to send, the map-cache to the workers when it changed, and the
    /// routes into the TUN devices.
    async fn wake(&mut self) {
        let now = self.now();
        if self.engine_driven || Instant::now() >= self.engine_due {
            self.engine_driven = false;
            self.engine.handle_timeout(now);
            while let Some(e) = self.engine.poll_key_event() {
                self.workers.key(e.prepare());
            }
            flush(&mut self.engine, &self.sockets, &self.workers).await;
            let members = self.engine.members().len();
            if members != self.members_seen {
                info!(members, "peer group membership changed");
                self.members_seen = members;
            }
            self.log_nat_changes();
            self.engine_due = self.start + self.engine.poll_timeout();
        }
        self.publish_map_cache();
        self.sync_routes().await;
    }

    /// Says once when NAT detection finds one of our RLOCs behind a NAT, or no longer.
    fn log_nat_changes(&mut self) {
        for (rloc, n) in self.engine.nat_status() {
            if self.nat_seen.get(rloc) == Some(&n.behind_nat) {
                continue;
            }
            if n.behind_nat && n.rtrs.is_empty() {
                warn!(
                    %rloc,
                    seen_as = %n.global,
                    seen_by = %n.asked,
                    "this RLOC is behind a NAT and no RTR was offered: members not behind \
                     the same NAT cannot reach it (configure a member with [nat] rtr = true)"
                );
            } else if n.behind_nat {
                info!(
                    %rloc,
                    seen_as = %n.global,
                    seen_by = %n.asked,
                    rtrs = ?n.rtrs,
                    "this RLOC is behind a NAT"
                );
            } else {
                info!(%rloc, seen_by = %n.asked, "this RLOC is not behind a NAT");
            }
            self.nat_seen.insert(*rloc, n.behind_nat);
        }
    }

    /// A snapshot of the map-cache for the workers when it changed: packets waiting for a
    /// mapping leave once their worker has it.
    fn publish_map_cache(&mut self) {
        if !self.map_cache_changed() || Instant::now() < self.next_publish {
            return;
        }
        let generation = self.engine.map_cache().generation();
        let t0 = Instant::now();
        let snapshot = Arc::new(self.engine.map_cache().clone());
        self.workers
            .broadcast(|| ToWorker::MapCache(snapshot.clone()));
        self.published = generation;
        self.next_publish = Instant::now() + PUBLISH_GAP.max(t0.elapsed() * 20);
    }

    /// Whether the workers' snapshot is behind the engine's map-cache (without a TUN device
    /// no worker looks anything up: nothing to publish).
    fn map_cache_changed(&self) -> bool {
        !self.tuns.is_empty() && self.engine.map_cache().generation() != self.published
    }

    /// Control datagrams: a batch at once, so the engine's timers, output and bookkeeping
    /// run once per batch, not once per datagram, and a flood of control messages costs
    /// their handling, not the node loop's.
    fn on_control(&mut self, batch: sockets::ControlBatch) {
        let now = self.now();
        for (local, from, bytes) in batch.iter() {
            log_control("received", from, bytes, false);
            self.engine.handle_datagram(now, from, local, bytes);
        }
        self.engine_driven = true;
    }

    /// Control carried in data (Instance-ID 0xFFFFFF, RFC 9962 §4), from a worker.
    fn on_replicated(&mut self, from: SocketAddr, payload: &[u8]) {
        if tracing::enabled!(target: "lisp_decent::control", tracing::Level::DEBUG) {
            let mut d = vec![0u8; crate::wire::DataHeader::LEN];
            d.extend_from_slice(payload);
            log_control("received", from, &d, true);
        }
        let now = self.now();
        self.engine.handle_replicated(now, from, payload);
        self.engine_driven = true;
    }

    /// A query of the API, answered from the engine's and the data plane's state.
    async fn on_request(&mut self, req: handle::Request) {
        use handle::{Answer, Query};
        let now = self.now();
        let answer = match req.query {
            Query::ClearMapCache => {
                let n = self.engine.clear_map_cache();
                info!(entries = n, "map-cache cleared through the API");
                self.engine_driven = true;
                Answer::Cleared(n)
            }
            Query::RegisterNow => {
                info!("Map-Registers requested through the API");
                self.engine.register_now(now);
                self.engine_driven = true;
                Answer::Registering
            }
            q => {
                let data = self.workers.report().await;
                let v = view::Viewer {
                    engine: &self.engine,
                    data: &data,
                    now,
                };
                match q {
                    Query::Status => Answer::Status(Box::new(v.status())),
                    Query::Database => Answer::Database(v.database()),
                    Query::SiteCache => Answer::SiteCache(v.site_cache()),
                    Query::SiteLookup { iid, addr } => Answer::SiteLookup(v.site_lookup(iid, addr)),
                    Query::MapCache => Answer::MapCache(v.map_cache()),
                    Query::Peers => Answer::Peers(v.peers()),
                    Query::Keys => Answer::Keys(v.keys()),
                    Query::Stats => Answer::Stats(Box::new(v.stats())),
                    Query::Metrics => Answer::Metrics(Box::new(v.metrics())),
                    Query::ClearMapCache | Query::RegisterNow => unreachable!("answered above"),
                }
            }
        };
        let _ = req.reply.send(answer);
    }

    /// The routes into the TUN devices follow the database (at once on a change, and
    /// every [`ROUTE_SYNC`]).
    async fn sync_routes(&mut self) {
        if self.tuns.is_empty()
            || (Instant::now() < self.next_route_sync
                && self.engine.generation() == self.routed_generation)
        {
            return;
        }
        self.next_route_sync = Instant::now() + ROUTE_SYNC;
        self.routed_generation = self.engine.generation();
        for t in self.tuns.iter_mut() {
            let wanted = remote_prefixes(&self.engine, &self.ours, t.instance_id);
            match t.sync_routes(&wanted).await {
                Ok((0, 0)) => {}
                Ok((added, removed)) => {
                    info!(iid = t.instance_id, added, removed, "EID routes updated")
                }
                Err(e) => warn!(iid = t.instance_id, "cannot update EID routes: {e:#}"),
            }
        }
    }

    /// An address or link changed: the interface RLOCs are read again once the burst has
    /// settled.
    fn on_net_change(&mut self) {
        self.next_rloc_refresh = self.next_rloc_refresh.min(Instant::now() + RLOC_SETTLE);
    }

    /// After an address or link change, and every [`RLOC_REFRESH`]: the RLOCs of the
    /// configured interfaces are read again; a change goes to the workers and to the engine,
    /// which registers at once with every member.
    async fn refresh_rlocs(&mut self) {
        if Instant::now() < self.next_rloc_refresh {
            return;
        }
        self.next_rloc_refresh = Instant::now() + RLOC_REFRESH;
        if !node_uses_interfaces(&self.cfg) {
            return;
        }
        match resolve_rlocs(&self.cfg, Some(&mut self.address_ages)).await {
            Ok(r) if !r.is_empty() => {
                let addresses: Vec<IpAddr> = r.iter().map(|r| r.address).collect();
                self.rejoin_group(&addresses).await;
                self.workers
                    .broadcast(|| ToWorker::Rlocs(addresses.clone()));
                let now = self.now();
                self.engine.set_rlocs(now, r);
                self.engine_driven = true;
            }
            Ok(_) => warn!("the RLOC interfaces have no address"),
            Err(e) => warn!("cannot read RLOC interfaces: {e:#}"),
        }
    }
}

impl Node {
    /// Underlay multicast: the group's interface may have gone and come back (a new
    /// index: the kernel dropped the membership with the old device) or the RLOC moved to
    /// another interface; the group is joined again there and sent to through it.
    async fn rejoin_group(&mut self, rlocs: &[IpAddr]) {
        let Some(j) = self.joined else {
            return;
        };
        let Ok(ifindex) = sockets::group_interface(&self.cfg, rlocs, j.group).await else {
            return;
        };
        if ifindex == j.ifindex {
            return;
        }
        let Some(sock) = self.sockets.by_local.get(&j.socket) else {
            return;
        };
        let s = socket2::SockRef::from(sock.as_ref());
        let _ = sockets::leave_group(s, j.group, j.ifindex);
        match sockets::join_group(socket2::SockRef::from(sock.as_ref()), j.group, ifindex) {
            Ok(()) => {
                info!(group = %j.group, ifindex, was = j.ifindex, "joined the peer group again");
                self.joined = Some(sockets::Joined { ifindex, ..j });
            }
            Err(e) => warn!(group = %j.group, ifindex, "cannot join the peer group: {e}"),
        }
    }
}

/// Whether an RLOC of the node comes from an interface (and can change under it).
fn node_uses_interfaces(cfg: &NodeConfig) -> bool {
    cfg.rlocs
        .iter()
        .any(|r| matches!(r.source, RlocSource::Interface { .. }))
}

/// The next address or link change, never when nothing is watched.
async fn next_change(rx: &mut Option<mpsc::Receiver<()>>) -> Option<()> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Logs every counter as one JSON object (on SIGUSR1 and when the node stops).
fn log_counters(engine: &Engine, data: &crate::dataplane::DataStats) {
    let all = serde_json::json!({ "control": engine.counters(), "data": data });
    info!(counters = %all, "counters");
}

/// How often the routes into the TUN devices are checked against the database even when
/// no change was signalled. The check compares with the routes this node installed, not with
/// the kernel's table: a route removed by hand comes back only with the next change.
const ROUTE_SYNC: Duration = Duration::from_secs(1);

/// The remote EID-prefixes of an Instance-ID: what the database holds, minus our own. In
/// pull mode the database holds only what this node serves as a Map-Server, and with
/// `[[map_resolver]]`s the mappings lie outside it too, so the site's allowed prefixes are
/// routed into the TUN as well and the ITR looks each packet up.
fn remote_prefixes(
    engine: &Engine,
    ours: &crate::mapping::PrefixTable<()>,
    iid: u32,
) -> std::collections::BTreeSet<ipnet::IpNet> {
    let mut out: std::collections::BTreeSet<ipnet::IpNet> = engine
        .site_db()
        .prefixes()
        .iter()
        .filter(|(p, _)| p.iid == iid && ours.get(p).is_none())
        .map(|(p, _)| p.prefix)
        .collect();
    // Pull mode, Map-Resolvers outside the group, or behind a NAT (where the RTR is the
    // default mapping and replication copies cannot reach us): every EID the site allows
    // goes into the tunnel.
    if matches!(engine.config().mapping_system, MappingSystem::Pull(_))
        || !engine.config().map_resolvers.is_empty()
        || engine.config().via_rtr.is_some()
    {
        out.extend(
            engine
                .config()
                .site
                .allowed
                .iter()
                .filter(|a| a.eid.iid == iid && ours.get(&a.eid).is_none())
                .map(|a| a.eid.prefix),
        );
    }
    out
}

/// At debug level, one line per control message in `decent decode`'s words (the target
/// `lisp_decent::control`, so `--log lisp_decent::control=debug` shows only these).
fn log_control(dir: &str, peer: SocketAddr, bytes: &[u8], data: bool) {
    if tracing::enabled!(target: "lisp_decent::control", tracing::Level::DEBUG) {
        debug!(target: "lisp_decent::control", %peer, "{dir} {}", crate::present::describe::one_line(bytes, data));
    }
}

/// Sends the engine's output: from the control port here, from the data port (control in
/// data, RFC 9962 §4) through the first worker, which holds a socket there.
async fn flush(engine: &mut Engine, sockets: &sockets::Sockets, workers: &Workers) {
    let mut out = Vec::new();
    let mut data_port = Vec::new();
    while let Some(t) = engine.poll_transmit() {
        let in_data = t.src_port == crate::wire::DATA_PORT;
        log_control("sent", t.dst, &t.payload, in_data);
        if in_data {
            data_port.push(t);
        } else {
            out.push(t);
        }
    }
    if !out.is_empty() {
        sockets.send_all(out.into_iter()).await;
    }
    if !data_port.is_empty() {
        workers.send_from_data_port(data_port);
    }
}
