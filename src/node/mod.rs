//! The node runtime: configuration, state, sockets, timers and signals around the sans-IO
//! control engine (the `quinn` half of the quinn / quinn-proto split).

pub mod config;
pub mod describe;
pub mod dns;
pub mod handle;
pub mod interfaces;
pub mod lig;
pub mod state;
pub mod tun;
pub mod udp_io;
pub mod view;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};
use udp_io::{DataSender, Outer};

use crate::control::{Delivery, Engine, EngineConfig, LocalRloc, MappingSystem, Transmit};
use crate::dataplane::Drop;
use config::{NodeConfig, RlocSource};

/// How often interface RLOCs are re-read.
const RLOC_REFRESH: Duration = Duration::from_secs(10);

fn bind_udp(addr: SocketAddr, reuse: bool) -> anyhow::Result<Socket> {
    let domain = if addr.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    if reuse {
        s.set_reuse_address(true)?;
        s.set_reuse_port(true)?;
    }
    s.set_nonblocking(true)?;
    s.bind(&addr.into())
        .with_context(|| format!("cannot bind UDP {addr}"))?;
    Ok(s)
}

/// Receive buffer of the data port: a burst arriving while the node loop is busy (a batch of
/// TUN writes, or a flood of garbage to 4341) waits in the kernel instead of pushing the
/// tunnel's own packets out (the default, about 200 KB, overflowed under a 20,000/s garbage
/// flood sent in 10 ms bursts).
const DATA_RECEIVE_BUFFER: usize = 4 << 20;

/// Sets the socket's receive buffer to `bytes`: beyond `net.core.rmem_max` with
/// SO_RCVBUFFORCE where the node may (CAP_NET_ADMIN, which it has for its TUN devices), else
/// as far as SO_RCVBUF goes.
fn widen_receive_buffer(s: &Socket, bytes: usize) {
    use std::os::fd::AsRawFd;
    let v = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: setsockopt on a socket we own with a c_int option value.
    let forced = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    } == 0;
    if !forced && let Err(e) = s.set_recv_buffer_size(bytes) {
        warn!("cannot widen a receive buffer: {e}");
    }
}

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

/// A received datagram: local address it arrived on, sender, bytes.
type Received = (SocketAddr, SocketAddr, Vec<u8>);

/// Reads control datagrams and hands them over in batches: what the socket holds after a
/// wake-up (up to [`CONTROL_BATCH`]) goes in one message, so a burst costs one hand-over and
/// one wake-up of the node loop.
fn spawn_reader(sock: Arc<UdpSocket>, local: SocketAddr, tx: mpsc::Sender<Vec<Received>>) {
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        loop {
            let mut batch = Vec::new();
            match sock.recv_from(&mut buf).await {
                Ok((n, from)) => batch.push((local, from, buf[..n].to_vec())),
                Err(e) => {
                    warn!(%local, "receive error: {e}");
                    continue;
                }
            }
            while batch.len() < CONTROL_BATCH {
                match sock.try_recv_from(&mut buf) {
                    Ok((n, from)) => batch.push((local, from, buf[..n].to_vec())),
                    Err(_) => break,
                }
            }
            if tx.send(batch).await.is_err() {
                return;
            }
        }
    });
}

/// Datagrams read from one data-port socket in one go: each buffer holds one datagram or,
/// with UDP GRO, several of `segment` bytes (the last one may be shorter).
struct DataIn {
    local: SocketAddr,
    from: SocketAddr,
    buf: Vec<u8>,
    segment: usize,
}

/// Control datagrams read and handled in one go, at most.
const CONTROL_BATCH: usize = 64;

/// At most this many reads are handed over together from a data-port socket.
const DATA_BATCH: usize = 64;

/// Adds what one read gave to `batch`; false when there was nothing (or an error).
fn take(
    local: SocketAddr,
    buf: &[u8],
    batch: &mut Vec<DataIn>,
    r: std::io::Result<(usize, SocketAddr, Option<usize>)>,
) -> bool {
    match r {
        Ok((n, from, segment)) => {
            batch.push(DataIn {
                local,
                from,
                buf: buf[..n].to_vec(),
                segment: segment.unwrap_or(n).max(1),
            });
            true
        }
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => false,
        Err(e) => {
            warn!(%local, "receive error: {e}");
            false
        }
    }
}

/// Reads the LISP data port (UDP GRO where the kernel has it) and hands over what arrived
/// since the last wake-up, as one batch.
fn spawn_data_reader(sock: Arc<UdpSocket>, local: SocketAddr, tx: mpsc::Sender<Vec<DataIn>>) {
    use std::os::fd::AsRawFd;
    use tokio::io::Interest;
    let gro = udp_io::enable_gro(sock.as_ref());
    debug!(%local, gro, "data port reader");
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        let fd = sock.as_raw_fd();
        loop {
            let mut batch = Vec::new();
            let r = sock
                .async_io(Interest::READABLE, || udp_io::recv(fd, &mut buf))
                .await;
            take(local, &buf, &mut batch, r);
            while batch.len() < DATA_BATCH {
                let r = sock.try_io(Interest::READABLE, || udp_io::recv(fd, &mut buf));
                if !take(local, &buf, &mut batch, r) {
                    break;
                }
            }
            if !batch.is_empty() && tx.send(batch).await.is_err() {
                return;
            }
        }
    });
}

/// The sockets of a node, by local address and port.
struct Sockets {
    by_local: HashMap<SocketAddr, Arc<UdpSocket>>,
}

impl Sockets {
    fn pick(&self, t: &Transmit) -> Option<&Arc<UdpSocket>> {
        if let Some(src) = t.src
            && let Some(s) = self.by_local.get(&SocketAddr::new(src, t.src_port))
        {
            return Some(s);
        }
        self.by_local
            .iter()
            .filter(|(a, _)| {
                a.port() == t.src_port && a.is_ipv4() == t.dst.is_ipv4() && !a.ip().is_multicast()
            })
            .min_by_key(|(a, _)| *a)
            .map(|(_, s)| s)
    }
}

/// Runs a node until SIGINT or SIGTERM; then it leaves the peer group and returns. Queries
/// from the API arrive on `requests` and are answered between packets.
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
    let (tx, mut rx) = mpsc::channel::<Vec<Received>>(256);
    let (data_tx, mut data_rx) = mpsc::channel::<Vec<DataIn>>(256);
    let mut sockets = Sockets {
        by_local: HashMap::new(),
    };
    let listen: Vec<IpAddr> = if cfg.listen.is_empty() {
        rlocs.iter().map(|r| r.address).collect()
    } else {
        cfg.listen.clone()
    };
    let multicast = match &cfg.mapping_system {
        MappingSystem::Push(g) => match g.delivery {
            Delivery::Multicast { ttl } => Some((g.group, ttl)),
            Delivery::Replicate => None,
        },
        MappingSystem::Pull(_) => None,
    };
    for ip in &listen {
        for port in [cfg.control_port, cfg.data_port] {
            let local = SocketAddr::new(*ip, port);
            let s = bind_udp(local, false)?;
            if port == cfg.data_port {
                widen_receive_buffer(&s, DATA_RECEIVE_BUFFER);
            }
            if let Some((group, ttl)) = multicast
                && port == cfg.control_port
                && ip.is_ipv4() == group.is_ipv4()
            {
                match ip {
                    IpAddr::V4(a) => {
                        s.set_multicast_ttl_v4(u32::from(ttl))?;
                        s.set_multicast_if_v4(a)?;
                    }
                    IpAddr::V6(a) => {
                        s.set_multicast_hops_v6(u32::from(ttl))?;
                        s.set_multicast_if_v6(interfaces::index_of(IpAddr::V6(*a)).await?)?;
                    }
                }
            }
            let sock = Arc::new(UdpSocket::from_std(s.into())?);
            if port == cfg.data_port && !cfg.instances.is_empty() {
                spawn_data_reader(sock.clone(), local, data_tx.clone());
            } else {
                spawn_reader(sock.clone(), local, tx.clone());
            }
            sockets.by_local.insert(local, sock);
        }
    }
    if let Some((group, _)) = multicast {
        // Join the group on the RLOC interface (or the configured one) and listen on G:4342.
        let ifindex = match &cfg.multicast_interface {
            Some(name) => interfaces::addresses(name).await?.0,
            None => {
                let a = rlocs
                    .iter()
                    .map(|r| r.address)
                    .find(|a| a.is_ipv4() == group.is_ipv4())
                    .context("no RLOC of the group's address family")?;
                interfaces::index_of(a).await?
            }
        };
        let local = SocketAddr::new(group, cfg.control_port);
        let s = bind_udp(local, true)?;
        match group {
            IpAddr::V4(g) => {
                s.join_multicast_v4_n(&g, &socket2::InterfaceIndexOrAddress::Index(ifindex))?
            }
            IpAddr::V6(g) => s.join_multicast_v6(&g, ifindex)?,
        }
        info!(%group, ifindex, "joined the peer group");
        let sock = Arc::new(UdpSocket::from_std(s.into())?);
        spawn_reader(sock.clone(), local, tx.clone());
        sockets.by_local.insert(local, sock);
    }
    drop(tx);
    drop(data_tx);

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
    let mut ours = crate::mapping::PrefixTable::new();
    for d in &cfg.database {
        ours.insert(d.eid, ());
    }
    let mut data = DataPath {
        out: if tuns.is_empty() {
            None
        } else {
            let out = DataSender::open();
            info!(ports = ?out.ports(), "LISP data leaves from these UDP ports, by flow");
            Some(out)
        },
        tun_out: tuns.iter().map(|_| TunOut::default()).collect(),
        rekey_packets: cfg.timers.rekey_packets,
        encryption: cfg.encryption,
        allow_clear: cfg.allow_clear,
        underlay_mtu: cfg.underlay_mtu,
        control_sockets: sockets
            .by_local
            .iter()
            .filter(|(a, _)| a.port() == cfg.control_port && !a.ip().is_multicast())
            .map(|(a, s)| (*a, s.clone()))
            .collect(),
        ..DataPath::default()
    };

    let start = Instant::now();
    let mut engine = Engine::new(engine_cfg);
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
    let mut next_rloc_refresh = start + RLOC_REFRESH;
    let mut next_route_sync = start;
    let mut routed_generation = u64::MAX;
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut sigusr1 =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1())?;
    let mut members_seen = 0usize;
    // The engine's timers, output and key events are looked at when it is due or was just
    // driven, not for every data packet that only hit the map-cache.
    let mut engine_due = start;
    let mut engine_driven = true;
    loop {
        if engine_driven || Instant::now() >= engine_due {
            engine_driven = false;
            engine.handle_timeout(start.elapsed());
            flush(&mut engine, &sockets).await;
            while let Some(e) = engine.poll_key_event() {
                data.key_event(&engine, start.elapsed(), e);
            }
            if !data.waiting.is_empty() {
                data.release_waiting(&mut engine, &tuns, start.elapsed())
                    .await;
                flush(&mut engine, &sockets).await;
            }
            let members = engine.members().len();
            if members != members_seen {
                info!(members, "peer group membership changed");
                members_seen = members;
            }
            engine_due = start + engine.poll_timeout();
        }
        if !tuns.is_empty()
            && (Instant::now() >= next_route_sync || engine.generation() != routed_generation)
        {
            next_route_sync = Instant::now() + ROUTE_SYNC;
            routed_generation = engine.generation();
            for t in tuns.iter_mut() {
                let wanted = remote_prefixes(&engine, &ours, t.instance_id);
                match t.sync_routes(&wanted).await {
                    Ok((0, 0)) => {}
                    Ok((added, removed)) => {
                        info!(iid = t.instance_id, added, removed, "EID routes updated")
                    }
                    Err(e) => warn!(iid = t.instance_id, "cannot update EID routes: {e:#}"),
                }
            }
        }
        let mut deadline = engine_due.min(next_rloc_refresh);
        if !tuns.is_empty() {
            deadline = deadline.min(next_route_sync);
        }
        tokio::select! {
            got = rx.recv() => {
                let Some(batch) = got else { bail!("all sockets closed") };
                // A batch at once: the engine's timers, output and bookkeeping run once per
                // batch, not once per datagram, so a flood of control messages costs their
                // handling, not the node loop's.
                let now = start.elapsed();
                for (local, from, bytes) in batch {
                    log_control("received", from, &bytes, local.port() == cfg.data_port);
                    engine.handle_datagram(now, from, local, &bytes);
                }
                engine_driven = true;
            }
            Some(batch) = data_rx.recv() => {
                let now = start.elapsed();
                for mut d in batch {
                    if d.buf.len() > d.segment {
                        data.stats.coalesced_reads += 1;
                    }
                    for datagram in d.buf.chunks_mut(d.segment) {
                        engine_driven |= data.decapsulate(&mut engine, &tuns, &ours, now, d.from, d.local, datagram);
                    }
                }
                data.write_tuns(&tuns).await;
            }
            Some((k, batch)) = tun_rx.recv() => {
                let now = start.elapsed();
                let mut probed = false;
                if batch.len() > 1 {
                    data.stats.split_reads += 1;
                }
                for packet in &batch {
                    probed |= data.encapsulate(&mut engine, &tuns[k], now, packet).await;
                }
                data.flush_out();
                engine_driven = probed || engine.has_output();
            }
            Some(req) = requests.recv() => {
                let answer = data.answer(&mut engine, start.elapsed(), req.query);
                engine_driven |= matches!(answer, handle::Answer::Registering | handle::Answer::Cleared(_));
                let _ = req.reply.send(answer);
            }
            Some((index, addrs)) = dns_rx.recv() => {
                engine.set_pull_servers(start.elapsed(), index, addrs);
                engine_driven = true;
            }
            _ = tokio::time::sleep_until(deadline.into()) => {}
            _ = tokio::signal::ctrl_c() => break,
            _ = sigterm.recv() => break,
            _ = sigusr1.recv() => log_counters(&engine, &data.stats),
        }
        if Instant::now() >= next_rloc_refresh {
            next_rloc_refresh = Instant::now() + RLOC_REFRESH;
            data.recv_keys.expire(start.elapsed());
            if cfg
                .rlocs
                .iter()
                .any(|r| matches!(r.source, RlocSource::Interface { .. }))
            {
                match resolve_rlocs(&cfg).await {
                    Ok(r) if !r.is_empty() => {
                        engine.set_rlocs(start.elapsed(), r);
                        engine_driven = true;
                    }
                    Ok(_) => warn!("the RLOC interfaces have no address"),
                    Err(e) => warn!("cannot read RLOC interfaces: {e:#}"),
                }
            }
        }
    }
    log_counters(&engine, &data.stats);
    for t in tuns.iter_mut() {
        t.remove_rules().await;
    }
    info!("leaving the peer group");
    engine.leave(start.elapsed());
    flush(&mut engine, &sockets).await;
    Ok(())
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

/// Packets held per RLOC while its lisp-crypto key is being agreed.
const KEY_QUEUE: usize = 64;

/// Sealed datagrams to one RLOC waiting to leave in one send (UDP GSO): the same outer
/// header and source port, all of `segment` bytes but possibly the last.
#[derive(Default)]
struct Staged {
    outer: Option<Outer>,
    flow: u64,
    segment: usize,
    /// The last datagram was shorter than `segment`: nothing more may follow it.
    closed: bool,
    buf: Vec<u8>,
    /// Per datagram: the RLOC, Instance-ID and inner length (for the counters).
    sent: Vec<(IpAddr, u32, usize)>,
}

/// Buffers kept for reuse per TUN device (a batch of 64 GRO reads holds more; the rest go).
const SPARE_BUFFERS: usize = 512;

/// Inner packets decapsulated for one TUN device, written together (GRO) at the end of a
/// batch: each buffer holds [`tun::HEADROOM`] bytes, then the packet.
#[derive(Default)]
struct TunOut {
    bufs: Vec<Vec<u8>>,
    /// Per packet: the sending RLOC and inner length (for the counters).
    from: Vec<(IpAddr, usize)>,
    /// Buffers of earlier batches, reused so that the steady state allocates nothing.
    spare: Vec<Vec<u8>>,
}

/// The data path of the node (RFC 9300 §5, §7; RFC 8061), with a buffer reused for every
/// encapsulation.
#[derive(Default)]
struct DataPath {
    stats: crate::dataplane::DataStats,
    buf: Vec<u8>,
    encryption: Option<crate::crypto::lisp_crypto::CipherSuite>,
    allow_clear: bool,
    underlay_mtu: u16,
    /// The sockets LISP data leaves from (none without a TUN device).
    out: Option<DataSender>,
    staged: Staged,
    /// Per TUN device (in the order of `tuns`): what waits to be written into it.
    tun_out: Vec<TunOut>,
    gro: tun_rs::GROTable,
    /// The packet budget of a key, and the RLOCs whose budget is spent (asked once per key).
    rekey_packets: u64,
    rekey_asked: std::collections::HashSet<IpAddr>,
    /// ITR keys per RLOC; RLOCs that answered without a key.
    send_keys: HashMap<IpAddr, crate::crypto::lisp_crypto::SendKey>,
    keyless: std::collections::HashSet<IpAddr>,
    /// ETR keys per ITR address and key-id 1-3 (RFC 8061 §8): the K bits of a packet pick
    /// its key, so the key before a rekey stays usable for packets still in flight; a new
    /// key is used once a packet proves it (return routability).
    recv_keys: crate::dataplane::keys::RecvKeys,
    /// The sockets on the control port: encrypted data to a lispers.net peer leaves from the
    /// port of our probes (PROTOCOL.md §5.2 item 12).
    control_sockets: Vec<(SocketAddr, Arc<UdpSocket>)>,
    /// Packets waiting for a mapping (pull mode).
    waiting: crate::dataplane::waiting::MappingQueue,
    /// Packets waiting for a key: RLOC -> (Instance-ID, packet).
    pending: HashMap<IpAddr, std::collections::VecDeque<(u32, Vec<u8>)>>,
}

impl DataPath {
    /// The views of the node's state at `now`.
    fn viewer<'a>(&'a self, engine: &'a Engine, now: Duration) -> view::Viewer<'a> {
        view::Viewer {
            engine,
            stats: &self.stats,
            send_keys: &self.send_keys,
            recv_keys: &self.recv_keys,
            now,
        }
    }

    /// Answers a query of the API from the engine's and the data path's state.
    fn answer(&self, engine: &mut Engine, now: Duration, q: handle::Query) -> handle::Answer {
        use handle::{Answer, Query};
        match q {
            Query::ClearMapCache => {
                let n = engine.clear_map_cache();
                info!(entries = n, "map-cache cleared through the API");
                Answer::Cleared(n)
            }
            Query::RegisterNow => {
                info!("Map-Registers requested through the API");
                engine.register_now(now);
                Answer::Registering
            }
            Query::Status => Answer::Status(Box::new(self.viewer(engine, now).status())),
            Query::Database => Answer::Database(self.viewer(engine, now).database()),
            Query::SiteCache => Answer::SiteCache(self.viewer(engine, now).site_cache()),
            Query::SiteLookup { iid, addr } => {
                Answer::SiteLookup(self.viewer(engine, now).site_lookup(iid, addr))
            }
            Query::MapCache => Answer::MapCache(self.viewer(engine, now).map_cache()),
            Query::Peers => Answer::Peers(self.viewer(engine, now).peers()),
            Query::Keys => Answer::Keys(self.viewer(engine, now).keys()),
            Query::Stats => Answer::Stats(Box::new(self.viewer(engine, now).stats())),
            Query::Metrics => Answer::Metrics(Box::new(self.viewer(engine, now).metrics())),
        }
    }

    /// ITR: a packet from the TUN of `iid` leaves LISP-encapsulated to the flow's RLOC.
    /// Returns true when it asked the engine for an RLOC-probe (the packet waits for a key).
    /// The sealed datagram is staged: [`DataPath::flush_out`] sends what a batch staged.
    async fn encapsulate(
        &mut self,
        engine: &mut Engine,
        tun: &tun::Tun,
        now: Duration,
        packet: &[u8],
    ) -> bool {
        use crate::dataplane::{FlowKey, encap, icmp, select};
        let iid = tun.instance_id;
        let (Some(flow), Some(dst)) = (FlowKey::of(packet), encap::inner_destination(packet))
        else {
            self.stats.drop(Drop::Malformed);
            return false;
        };
        if !encap::is_unicast_eid(dst) {
            self.stats.drop(Drop::NotUnicast);
            return false;
        }
        let Some(entry) = engine.resolve(now, iid, dst) else {
            // Pull mode: a Map-Request is out; the packet waits (bounded) for the reply.
            if self.waiting.hold(now, iid, dst, packet) {
                self.stats.queued_for_mapping += 1;
            } else {
                self.stats.drop(Drop::NoMapping);
            }
            return engine.has_output();
        };
        if entry.is_negative() {
            self.stats.drop(Drop::Negative);
            return false;
        }
        let hash = flow.hash64();
        let Some(rloc) =
            select::choose(&entry.rlocs, hash).and_then(|i| entry.rlocs[i].record.locator.ip())
        else {
            self.stats.drop(Drop::NoRloc);
            return false;
        };
        // RFC 9300 §7.1: what the tunnel cannot carry with DF set is refused with an ICMP
        // error into the TUN; without DF the outer packet is fragmented by the kernel. The
        // exact overhead is looked at only when the largest one would not fit.
        let overhead = if packet.len() + usize::from(tun::ENCAP_OVERHEAD) > self.underlay_mtu.into()
        {
            self.overhead(rloc)
        } else {
            0
        };
        if packet.len() + overhead > self.underlay_mtu.into() {
            let mtu = self.underlay_mtu.saturating_sub(overhead as u16);
            // From the unreachable side of the tunnel: the kernel takes an error from one
            // of its own addresses for a martian, and the route back to `dst` is the TUN.
            if let Some(error) = icmp::too_big(packet, mtu, dst) {
                self.stats.drop(Drop::TooBig);
                if tun.write(&error).await.is_ok() {
                    self.stats.icmp_too_big += 1;
                }
                return false;
            }
        }
        if self.encryption.is_some()
            && !self.send_keys.contains_key(&rloc)
            && !self.keyless.contains(&rloc)
        {
            // No key yet: hold the packet (bounded) and probe the RLOC now.
            let q = self.pending.entry(rloc).or_default();
            if q.len() < KEY_QUEUE {
                q.push_back((iid, packet.to_vec()));
                self.stats.queued_for_key += 1;
            } else {
                self.stats.drop(Drop::KeyQueueFull);
            }
            let prefix = entry.eid;
            engine.probe_now(now, rloc, prefix);
            return true;
        }
        let src = engine.source_rloc(rloc);
        self.send(src, hash, rloc, iid, packet);
        // The key's packet budget is spent: ask once for a fresh key (RFC 8061 §10).
        if self
            .send_keys
            .get(&rloc)
            .is_some_and(|k| k.packets() >= self.rekey_packets)
            && self.rekey_asked.insert(rloc)
        {
            engine.rekey_now(now, rloc);
            return true;
        }
        false
    }

    /// Sends the packets whose mapping arrived; drops those that waited too long.
    async fn release_waiting(&mut self, engine: &mut Engine, tuns: &[tun::Tun], now: Duration) {
        let (ready, expired) = self.waiting.release(now, |iid, dst| {
            engine.map_cache().lookup(iid, dst, now).is_some()
        });
        self.stats.drop_n(Drop::NoMapping, expired as u64);
        for (iid, packet) in ready {
            match tuns.iter().find(|t| t.instance_id == iid) {
                Some(t) => {
                    self.encapsulate(engine, t, now, &packet).await;
                }
                None => self.stats.drop(Drop::NoDevice),
            }
        }
        self.flush_out();
    }

    /// Bytes the encapsulation to `rloc` adds: outer IP, UDP and LISP headers, and the IV
    /// and tag of lisp-crypto when the packet will be encrypted.
    fn overhead(&self, rloc: IpAddr) -> usize {
        let outer = if rloc.is_ipv4() { 20 } else { 40 } + 8 + crate::wire::DataHeader::LEN;
        let suite = match self.send_keys.get(&rloc) {
            Some(k) => Some(k.suite),
            None if self.keyless.contains(&rloc) => None,
            None => self.encryption,
        };
        outer + suite.map_or(0, |s| s.overhead())
    }

    /// Encapsulates (and encrypts, when there is a key) one packet to `rloc`:4341, from our
    /// RLOC `src`, from the source port of the flow hash `flow`; the datagram is staged.
    fn send(&mut self, src: Option<IpAddr>, flow: u64, rloc: IpAddr, iid: u32, packet: &[u8]) {
        use crate::dataplane::encap;
        let nonce = rand::random::<u32>() & 0x00ff_ffff;
        match self.send_keys.get_mut(&rloc) {
            Some(k) => {
                let hdr = crate::wire::DataHeader::with_instance(iid, nonce, 0);
                if k.seal(hdr, packet, &mut self.buf).is_err() {
                    self.stats.drop(Drop::NoKey);
                    return;
                }
                self.stats.encrypted += 1;
                if k.suite == crate::crypto::lisp_crypto::CipherSuite::LispersCs6 {
                    self.send_from_control_port(src, rloc, iid, packet.len());
                    return;
                }
            }
            None if self.encryption.is_none() || self.allow_clear => {
                encap::encapsulate(&mut self.buf, iid, nonce, 0, packet)
            }
            None => {
                self.stats.drop(Drop::NoKey);
                return;
            }
        }
        let (ttl, tos) = encap::outer_ttl_tos(packet);
        let outer = Outer {
            src,
            dst: SocketAddr::new(rloc, crate::wire::DATA_PORT),
            ttl,
            tos,
        };
        let len = self.buf.len();
        let st = &self.staged;
        let joins = st.outer == Some(outer)
            && st.flow == flow
            && !st.closed
            && len <= st.segment
            && st.sent.len() < udp_io::MAX_SEGMENTS
            && st.buf.len() + len <= udp_io::MAX_GSO_BYTES;
        if !joins {
            self.flush_out();
            self.staged.outer = Some(outer);
            self.staged.flow = flow;
            self.staged.segment = len;
        }
        let st = &mut self.staged;
        st.closed = len < st.segment;
        st.buf.extend_from_slice(&self.buf);
        st.sent.push((rloc, iid, packet.len()));
    }

    /// Sends the datagram in `buf` to a lispers.net peer from our control port: lispers keys
    /// its decryption key by the source port of our probes (PROTOCOL.md §5.2 item 12).
    fn send_from_control_port(&mut self, src: Option<IpAddr>, rloc: IpAddr, iid: u32, len: usize) {
        let sock = self
            .control_sockets
            .iter()
            .filter(|(a, _)| a.is_ipv4() == rloc.is_ipv4())
            .min_by_key(|(a, _)| Some(a.ip()) != src)
            .map(|(_, s)| s);
        let dst = SocketAddr::new(rloc, crate::wire::DATA_PORT);
        match sock.map(|s| s.try_send_to(&self.buf, dst)) {
            Some(Ok(_)) => self.stats.sent(rloc, iid, len),
            _ => self.stats.drop(Drop::SendFailed),
        }
    }

    /// Sends what is staged (one datagram, or several in one GSO send).
    fn flush_out(&mut self) {
        let st = &mut self.staged;
        let Some(outer) = st.outer.take() else {
            return;
        };
        let segment = (st.sent.len() > 1).then_some(st.segment);
        let sent = match self.out.as_mut() {
            Some(out) => match out.send(st.flow, &outer, &st.buf, segment) {
                Ok(()) => true,
                Err(e) => {
                    debug!(dst = %outer.dst, "data send failed: {e}");
                    false
                }
            },
            None => false,
        };
        if sent && segment.is_some() {
            self.stats.batched_sends += 1;
        }
        for (rloc, iid, len) in st.sent.drain(..) {
            if sent {
                self.stats.sent(rloc, iid, len);
            } else {
                self.stats.drop(Drop::SendFailed);
            }
        }
        st.buf.clear();
        st.closed = false;
    }

    /// Writes what a batch decapsulated into the TUN devices.
    async fn write_tuns(&mut self, tuns: &[tun::Tun]) {
        for (t, o) in tuns.iter().zip(self.tun_out.iter_mut()) {
            if o.bufs.is_empty() {
                continue;
            }
            let ok = t.write_batch(&mut self.gro, &mut o.bufs).await.is_ok();
            for (from, len) in o.from.drain(..) {
                if ok {
                    self.stats.received(from, t.instance_id, len);
                } else {
                    self.stats.drop(Drop::NoDevice);
                }
            }
            o.spare.append(&mut o.bufs);
            o.spare.truncate(SPARE_BUFFERS);
        }
    }

    /// Installs what the control plane agreed (RFC 8061 key exchange in RLOC-probes) and
    /// sends the packets that waited for it.
    fn key_event(&mut self, engine: &Engine, now: Duration, e: crate::control::KeyEvent) {
        use crate::control::KeyEvent;
        use crate::crypto::lisp_crypto::SendKey;
        match e {
            KeyEvent::Send {
                rloc,
                suite,
                key_id,
                key,
            } => {
                info!(%rloc, ?suite, key_id, "lisp-crypto key agreed (send)");
                self.send_keys
                    .insert(rloc, SendKey::new(suite, key_id, &key));
                self.rekey_asked.remove(&rloc);
                self.keyless.remove(&rloc);
                self.flush_pending(engine, rloc);
            }
            KeyEvent::Recv {
                itr,
                suite,
                key_id,
                key,
            } => {
                use crate::dataplane::keys::Install;
                match self.recv_keys.install(now, itr, suite, key_id, key) {
                    Install::Candidate => {
                        info!(%itr, ?suite, key_id, "lisp-crypto key agreed (receive; in use once data proves it)")
                    }
                    Install::Refreshed => {}
                    Install::Full => self.stats.recv_keys_refused += 1,
                }
            }
            KeyEvent::NoKey { rloc } => {
                warn!(%rloc, allow_clear = self.allow_clear, "RLOC offers no lisp-crypto key");
                self.keyless.insert(rloc);
                if self.allow_clear {
                    self.flush_pending(engine, rloc);
                } else if let Some(q) = self.pending.remove(&rloc) {
                    self.stats.drop_n(Drop::NoKey, q.len() as u64);
                }
            }
        }
    }

    fn flush_pending(&mut self, engine: &Engine, rloc: IpAddr) {
        if let Some(q) = self.pending.remove(&rloc) {
            let src = engine.source_rloc(rloc);
            for (iid, p) in q {
                let flow = crate::dataplane::FlowKey::of(&p).map_or(0, |f| f.hash64());
                self.send(src, flow, rloc, iid, &p);
            }
            self.flush_out();
        }
    }

    /// ETR: a LISP data packet is delivered to its Instance-ID's TUN, handed to the control
    /// plane (Instance-ID 0xFFFFFF), or dropped and counted by reason. Returns whether the
    /// control engine was driven (its timers and output then need a look).
    /// Delivered packets wait in `tun_out` for [`DataPath::write_tuns`].
    #[allow(clippy::too_many_arguments)]
    fn decapsulate(
        &mut self,
        engine: &mut Engine,
        tuns: &[tun::Tun],
        ours: &crate::mapping::PrefixTable<()>,
        now: Duration,
        from: SocketAddr,
        local: SocketAddr,
        bytes: &mut [u8],
    ) -> bool {
        use crate::crypto::lisp_crypto::CryptoError;
        use crate::dataplane::{Decapsulated, decapsulate_inner};
        let Ok(h) = crate::wire::DataHeader::parse(bytes) else {
            self.stats.drop(Drop::Malformed);
            return false;
        };
        if h.instance_id() == Some(crate::wire::CONTROL_INSTANCE_ID) {
            // Control carried in data (LISP-Decent replication): never encrypted.
            if h.key_id == 0 {
                log_control("received", from, bytes, true);
                engine.handle_datagram(now, from, local, bytes);
                return true;
            }
            self.stats.drop(Drop::EncryptedControl);
            return false;
        }
        let inner: &[u8] = if h.key_id != 0 {
            // The keys of the sending address under the packet's key-id; then the ICV first,
            // the replay window, and decryption (RFC 8061 §9), in place.
            match self.recv_keys.open(now, from.ip(), bytes) {
                Ok(r) => {
                    self.stats.decrypted += 1;
                    &bytes[r]
                }
                Err(CryptoError::Replay) => {
                    self.stats.drop(Drop::Replayed);
                    return false;
                }
                Err(CryptoError::NoKey(_)) => {
                    self.stats.drop(Drop::NoKey);
                    return false;
                }
                Err(_) => {
                    self.stats.drop(Drop::IcvFailed);
                    return false;
                }
            }
        } else if self.encryption.is_some() && !self.allow_clear {
            self.stats.drop(Drop::ClearRefused);
            return false;
        } else {
            &bytes[crate::wire::DataHeader::LEN..]
        };
        let clear = crate::wire::DataHeader { key_id: 0, ..h };
        match decapsulate_inner(&clear, inner, ours) {
            Decapsulated::Deliver { iid, packet } => {
                match tuns.iter().position(|t| t.instance_id == iid) {
                    Some(k) => {
                        let o = &mut self.tun_out[k];
                        let mut b = o.spare.pop().unwrap_or_default();
                        b.clear();
                        b.resize(tun::HEADROOM, 0);
                        b.extend_from_slice(packet);
                        o.bufs.push(b);
                        o.from.push((from.ip(), packet.len()));
                    }
                    None => self.stats.drop(Drop::NoDevice),
                }
            }
            // Instance-ID 0xFFFFFF was handed to the control plane above.
            Decapsulated::Control { .. } => {}
            Decapsulated::Drop(r) => self.stats.drop(r),
        }
        false
    }
}

/// At debug level, one line per control message in `decent decode`'s words (the target
/// `lisp_decent::control`, so `--log lisp_decent::control=debug` shows only these).
fn log_control(dir: &str, peer: SocketAddr, bytes: &[u8], data: bool) {
    if tracing::enabled!(target: "lisp_decent::control", tracing::Level::DEBUG) {
        debug!(target: "lisp_decent::control", %peer, "{dir} {}", describe::one_line(bytes, data));
    }
}

async fn flush(engine: &mut Engine, sockets: &Sockets) {
    while let Some(t) = engine.poll_transmit() {
        log_control(
            "sent",
            t.dst,
            &t.payload,
            t.src_port == crate::wire::DATA_PORT,
        );
        let Some(sock) = sockets.pick(&t) else {
            warn!(dst = %t.dst, "no socket to send from");
            continue;
        };
        if let Err(e) = sock.send_to(&t.payload, t.dst).await {
            debug!(dst = %t.dst, "send failed: {e}");
        }
    }
}
