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

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};
use udp_io::{DataSender, Outer};

use crate::control::{Engine, EngineConfig, LocalRloc, MappingSystem};
use crate::dataplane::{Decapsulated, Drop, Encapsulated, Xtr, XtrConfig};
use config::{NodeConfig, RlocSource};

/// How often interface RLOCs are re-read.
const RLOC_REFRESH: Duration = Duration::from_secs(10);

/// Resolves the configured RLOCs to addresses (interfaces through netlink).
async fn resolve_rlocs(cfg: &NodeConfig) -> anyhow::Result<Vec<LocalRloc>> {
    let mut out = Vec::new();
    for r in &cfg.rlocs {
        match &r.source {
            RlocSource::Address(a) => out.push(LocalRloc {
                address: *a,
                priority: r.priority,
                weight: r.weight,
            }),
            RlocSource::Interface { name, v4, v6 } => {
                let (_, addrs) = interfaces::addresses(name).await?;
                for a in addrs {
                    if (a.is_ipv4() && *v4) || (a.is_ipv6() && *v6) {
                        out.push(LocalRloc {
                            address: a,
                            priority: r.priority,
                            weight: r.weight,
                        });
                    }
                }
            }
        }
    }
    Ok(out)
}

/// Where this node's own Map-Resolver answers (for lig from the web UI): the first listen
/// address, else the first RLOC, on the control port.
pub async fn own_map_resolver(cfg: &NodeConfig) -> anyhow::Result<SocketAddr> {
    let ip = match cfg.listen.first() {
        Some(a) => *a,
        None => resolve_rlocs(cfg)
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
    let rlocs = resolve_rlocs(&cfg).await?;
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
        register_nonce_base: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_micros() as u64),
        rng_seed: rand::random(),
    };
    let sockets::Opened {
        sockets,
        control: mut rx,
        data: mut data_rx,
    } = sockets::open(&cfg, &rlocs).await?;

    // The data plane: one TUN device per configured Instance-ID.
    let mut tuns: Vec<tun::Tun> = Vec::new();
    for inst in &cfg.instances {
        if tuns.is_empty() {
            match tun::remove_stale_rules(&cfg.instances).await {
                Ok(0) => {}
                Ok(n) => info!(rules = n, "removed the routing rules an earlier run left"),
                Err(e) => warn!("cannot look for rules an earlier run left: {e:#}"),
            }
        }
        let t = match tun::Tun::create(inst, cfg.underlay_mtu).await {
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
        info!(device = %inst.tun, iid = inst.instance_id, addresses = ?inst.addresses, mtu = t.mtu, table = ?inst.table, "TUN device up");
        tuns.push(t);
    }
    let (tun_tx, mut tun_rx) = mpsc::channel::<tun::TunBatch>(256);
    for (k, t) in tuns.iter().enumerate() {
        t.spawn_reader(k, tun_tx.clone());
    }
    drop(tun_tx);
    let xtr = Xtr::new(XtrConfig {
        database: cfg.database.iter().map(|d| d.eid).collect(),
        rlocs: rlocs.iter().map(|r| r.address).collect(),
        encryption: cfg.encryption,
        allow_clear: cfg.allow_clear,
        underlay_mtu: cfg.underlay_mtu,
        rekey_packets: cfg.timers.rekey_packets,
        rng_seed: rand::random(),
    });
    let start = Instant::now();
    let engine = Engine::new(engine_cfg);
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
    let mut node = Node {
        out: if tuns.is_empty() {
            None
        } else {
            let out = DataSender::open();
            info!(ports = ?out.ports(), "LISP data leaves from these UDP ports, by flow");
            Some(out)
        },
        tun_out: tuns.iter().map(|_| TunOut::default()).collect(),
        control_sockets: sockets.control_port(cfg.control_port),
        sockets,
        tuns,
        engine,
        xtr,
        start,
        gro: tun_rs::GROTable::default(),
        tx_buf: Vec::new(),
        engine_due: start,
        engine_driven: true,
        members_seen: 0,
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
            Some(batch) = data_rx.recv() => node.on_data(batch).await,
            Some((k, batch)) = tun_rx.recv() => node.on_tun(k, batch).await,
            Some(req) = requests.recv() => node.on_request(req),
            Some((index, addrs)) = dns_rx.recv() => {
                let now = node.now();
                node.engine.set_pull_servers(now, index, addrs);
                node.engine_driven = true;
            }
            _ = tokio::time::sleep_until(node.deadline().into()) => {}
            _ = tokio::signal::ctrl_c() => break,
            _ = sigterm.recv() => break,
            _ = sigusr1.recv() => log_counters(&node.engine, node.xtr.stats()),
        }
        node.refresh_rlocs().await;
    }
    log_counters(&node.engine, node.xtr.stats());
    for t in node.tuns.iter_mut() {
        t.remove_rules().await;
    }
    info!("leaving the peer group");
    let now = node.now();
    node.engine.leave(now);
    flush(&mut node.engine, &node.sockets).await;
    Ok(())
}

/// Buffers kept for reuse per TUN device (a batch of 64 GRO reads holds more; the rest go).
const SPARE_BUFFERS: usize = 512;

/// Inner packets decapsulated for one TUN device, written together (GRO) at the end of a
/// batch: each buffer holds [`tun::HEADROOM`] bytes, then the packet.
#[derive(Default)]
struct TunOut {
    bufs: Vec<Vec<u8>>,
    /// Buffers of earlier batches, reused so that the steady state allocates nothing.
    spare: Vec<Vec<u8>>,
}

/// A running node: the sans-IO control engine and data plane, and the devices and sockets
/// they are driven through. One handler per event; the clock is read once per event.
struct Node {
    cfg: NodeConfig,
    start: Instant,
    engine: Engine,
    xtr: Xtr,
    tuns: Vec<tun::Tun>,
    /// Per TUN device (in the order of `tuns`): what waits to be written into it.
    tun_out: Vec<TunOut>,
    gro: tun_rs::GROTable,
    sockets: sockets::Sockets,
    /// The sockets on the control port: encrypted data to a lispers.net peer leaves from the
    /// port of our probes (PROTOCOL.md §5.2 item 12).
    control_sockets: Vec<(SocketAddr, Arc<UdpSocket>)>,
    /// The sockets LISP data leaves from (none without a TUN device).
    out: Option<DataSender>,
    /// The buffer transmits of the data plane are swapped into (reused).
    tx_buf: Vec<u8>,
    /// The engine's timers, output and key events are looked at when it is due or was just
    /// driven, not for every data packet that only hit the map-cache.
    engine_due: Instant,
    engine_driven: bool,
    members_seen: usize,
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
        if let Some(t) = self.xtr.poll_timeout() {
            d = d.min(self.start + t);
        }
        if !self.tuns.is_empty() {
            d = d.min(self.next_route_sync);
        }
        d
    }

    /// Before each wait: the engine's timers when due or driven, the exchange with the data
    /// plane, everything both want to send, and the routes into the TUN devices.
    async fn wake(&mut self) {
        let now = self.now();
        if self.engine_driven
            || self.xtr.has_control_requests()
            || Instant::now() >= self.engine_due
        {
            self.engine_driven = false;
            self.engine.handle_timeout(now);
            self.engine.exchange(now, &mut self.xtr);
            flush(&mut self.engine, &self.sockets).await;
            self.flush_data();
            while let Some((iid, packet)) = self.xtr.poll_to_tun() {
                if let Some(t) = self.tuns.iter().find(|t| t.instance_id == iid) {
                    let _ = t.write(&packet).await;
                }
            }
            let members = self.engine.members().len();
            if members != self.members_seen {
                info!(members, "peer group membership changed");
                self.members_seen = members;
            }
            self.engine_due = self.start + self.engine.poll_timeout();
        }
        self.sync_routes().await;
    }

    /// Control datagrams: a batch at once, so the engine's timers, output and bookkeeping
    /// run once per batch, not once per datagram, and a flood of control messages costs
    /// their handling, not the node loop's.
    fn on_control(&mut self, batch: Vec<sockets::Received>) {
        let now = self.now();
        for (local, from, bytes) in batch {
            log_control("received", from, &bytes, false);
            self.engine.handle_datagram(now, from, local, &bytes);
        }
        self.engine_driven = true;
    }

    /// LISP data (RFC 9300 §7): decapsulated by the data plane; our EIDs' packets are
    /// written into the TUN devices at the end of the batch, control carried in data goes
    /// to the engine.
    async fn on_data(&mut self, batch: Vec<sockets::DataIn>) {
        let now = self.now();
        for mut d in batch {
            if d.buf.len() > d.segment {
                self.xtr.stats_mut().coalesced_reads += 1;
            }
            for datagram in d.buf.chunks_mut(d.segment) {
                let control = match self.xtr.decapsulate(now, d.from, datagram) {
                    Decapsulated::Deliver { iid, packet } => {
                        match self.tuns.iter().position(|t| t.instance_id == iid) {
                            Some(k) => {
                                let o = &mut self.tun_out[k];
                                let mut b = o.spare.pop().unwrap_or_default();
                                b.clear();
                                b.resize(tun::HEADROOM, 0);
                                b.extend_from_slice(packet);
                                o.bufs.push(b);
                            }
                            None => self.xtr.stats_mut().drop(Drop::NoDevice),
                        }
                        false
                    }
                    Decapsulated::Control { .. } => true,
                    Decapsulated::Dropped(_) => false,
                };
                if control {
                    log_control("received", d.from, datagram, true);
                    self.engine
                        .handle_replicated(now, &datagram[crate::wire::DataHeader::LEN..]);
                    self.engine_driven = true;
                }
            }
        }
        self.xtr.flush_counters();
        self.write_tuns().await;
    }

    /// Packets read from TUN device `k`: encapsulated into batches and sent.
    async fn on_tun(&mut self, k: usize, batch: Vec<Vec<u8>>) {
        let now = self.now();
        if batch.len() > 1 {
            self.xtr.stats_mut().split_reads += 1;
        }
        let iid = self.tuns[k].instance_id;
        for packet in &batch {
            if let Encapsulated::IcmpToTun(error) =
                self.xtr
                    .encapsulate(now, iid, packet, self.engine.map_cache())
            {
                let _ = self.tuns[k].write(&error).await;
            }
        }
        self.flush_data();
    }

    /// A query of the API, answered from the engine's and the data plane's state.
    fn on_request(&mut self, req: handle::Request) {
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
                let v = view::Viewer {
                    engine: &self.engine,
                    stats: self.xtr.stats(),
                    send_keys: self.xtr.send_keys(),
                    recv_keys: self.xtr.recv_keys(),
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

    /// Sends what the data plane staged: one datagram or a GSO batch per transmit.
    fn flush_data(&mut self) {
        while let Some(t) = self.xtr.poll_transmit(&mut self.tx_buf) {
            let sent = if t.from_control_port {
                let sock = self
                    .control_sockets
                    .iter()
                    .filter(|(a, _)| a.is_ipv4() == t.dst.is_ipv4())
                    .min_by_key(|(a, _)| Some(a.ip()) != t.src)
                    .map(|(_, s)| s);
                sock.is_some_and(|s| s.try_send_to(&self.tx_buf, t.dst).is_ok())
            } else {
                let outer = Outer {
                    src: t.src,
                    dst: t.dst,
                    ttl: t.ttl,
                    tos: t.tos,
                };
                match self.out.as_mut() {
                    Some(out) => match out.send(t.flow, &outer, &self.tx_buf, t.segment) {
                        Ok(()) => true,
                        Err(e) => {
                            debug!(dst = %t.dst, "data send failed: {e}");
                            false
                        }
                    },
                    None => false,
                }
            };
            if !sent {
                self.xtr.transmit_failed(&t);
            }
        }
    }

    /// Writes what a batch decapsulated into the TUN devices.
    async fn write_tuns(&mut self) {
        for (t, o) in self.tuns.iter().zip(self.tun_out.iter_mut()) {
            if o.bufs.is_empty() {
                continue;
            }
            let n = o.bufs.len() as u64;
            if t.write_batch(&mut self.gro, &mut o.bufs).await.is_err() {
                self.xtr.stats_mut().drop_n(Drop::NoDevice, n);
            }
            o.spare.append(&mut o.bufs);
            o.spare.truncate(SPARE_BUFFERS);
        }
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
            let wanted = remote_prefixes(&self.engine, self.xtr.ours(), t.instance_id);
            match t.sync_routes(&wanted).await {
                Ok((0, 0)) => {}
                Ok((added, removed)) => {
                    info!(iid = t.instance_id, added, removed, "EID routes updated")
                }
                Err(e) => warn!(iid = t.instance_id, "cannot update EID routes: {e:#}"),
            }
        }
    }

    /// Every [`RLOC_REFRESH`]: the RLOCs of the configured interfaces are read again.
    async fn refresh_rlocs(&mut self) {
        if Instant::now() < self.next_rloc_refresh {
            return;
        }
        self.next_rloc_refresh = Instant::now() + RLOC_REFRESH;
        if !self
            .cfg
            .rlocs
            .iter()
            .any(|r| matches!(r.source, RlocSource::Interface { .. }))
        {
            return;
        }
        match resolve_rlocs(&self.cfg).await {
            Ok(r) if !r.is_empty() => {
                self.xtr.set_rlocs(r.iter().map(|r| r.address).collect());
                let now = self.now();
                self.engine.set_rlocs(now, r);
                self.engine_driven = true;
            }
            Ok(_) => warn!("the RLOC interfaces have no address"),
            Err(e) => warn!("cannot read RLOC interfaces: {e:#}"),
        }
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
    if matches!(engine.config().mapping_system, MappingSystem::Pull(_))
        || !engine.config().map_resolvers.is_empty()
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

async fn flush(engine: &mut Engine, sockets: &sockets::Sockets) {
    let mut out = Vec::new();
    while let Some(t) = engine.poll_transmit() {
        log_control(
            "sent",
            t.dst,
            &t.payload,
            t.src_port == crate::wire::DATA_PORT,
        );
        out.push(t);
    }
    if !out.is_empty() {
        sockets.send_all(out.into_iter()).await;
    }
}
