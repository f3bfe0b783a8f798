//! Data-plane workers: each runs a shard of the data plane, an [`Xtr`], on a thread of its
//! own, with its own queue of every TUN device (Linux multi-queue TUN) and its own socket on
//! the data port (SO_REUSEPORT). The kernel keeps each flow on one queue and one socket, so
//! the packets of a flow stay in order; the control engine stays on the node's task.
//!
//! Nothing on the per-packet path takes a lock or waits for another thread: keys arrive as
//! messages (a [`PreparedKey`] share per worker: the copies of a key take IVs from one
//! counter and record received packets in one anti-replay window, RFC 8061 §9), mappings as
//! read-only snapshots of the engine's map-cache, and the workers' requests (resolve, probe,
//! rekey) and the control messages carried in data (RFC 9962 §4) go back as messages.

use std::io::IoSlice;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info};

use super::sockets::{self, Sockets};
use super::tun::{self, TunQueue};
use super::udp_io::{self, DataSender, Outer};
use crate::control::Transmit as ControlTransmit;
use crate::dataplane::gro::{Coalescer, Span};
use crate::dataplane::liveness::Heard;
use crate::dataplane::xtr::MAX_SEGMENTS;
use crate::dataplane::{
    ControlRequest, DataReport, Datagrams, Decapsulated, Drop, Encapsulated, Part, PreparedKey,
    Xtr, XtrConfig,
};
use crate::mapping::MapCache;

/// The datagrams of `tx` as a gather list in `iov`: its own buffer whole when every datagram
/// lies there (one after the other), else one part per datagram, from `read` for those
/// sealed in place. `None` when a part is not there (a slot of another batch: never, as each
/// TUN batch's transmits all leave before it goes back).
fn gather<'a>(
    tx: &'a Datagrams,
    read: Option<&'a tun::TunBatch>,
    iov: &mut [IoSlice<'a>; MAX_SEGMENTS],
) -> Option<usize> {
    if tx.parts.iter().all(|p| matches!(p, Part::Own(_))) {
        iov[0] = IoSlice::new(&tx.buf);
        return Some(1);
    }
    if tx.parts.len() > MAX_SEGMENTS {
        return None;
    }
    for (slice, part) in iov.iter_mut().zip(&tx.parts) {
        let bytes = match part {
            Part::Own(r) => tx.buf.get(r.clone())?,
            Part::Slot { slot, range } => read?.slot(*slot, range.clone())?,
        };
        *slice = IoSlice::new(bytes);
    }
    Some(tx.parts.len())
}

/// What the node's control task sends a worker.
pub enum ToWorker {
    /// A key agreed (or an RLOC found keyless): this worker's share.
    Key(Box<PreparedKey>),
    /// The engine's map-cache changed: a snapshot to look packets up in.
    MapCache(Arc<MapCache>),
    /// Our RLOCs changed.
    Rlocs(Vec<IpAddr>),
    /// Control messages that leave from the data port (sent by the first worker, which
    /// holds a socket there).
    Send(Vec<ControlTransmit>),
    /// The worker's counters and keys, for the views.
    Report(oneshot::Sender<DataReport>),
}

/// Control carried in data (Instance-ID 0xFFFFFF, RFC 9962 §4) for the engine: the sender
/// and the IP / UDP / control message after the LISP header.
pub type Replicated = (SocketAddr, Vec<u8>);

/// Control messages carried in data waiting for the engine, at most; more are dropped and
/// counted (a flood to the data port costs a drop, not memory).
const REPLICATED_QUEUE: usize = 1024;

/// What one worker starts with.
pub struct Setup {
    pub xtr: XtrConfig,
    /// Whom the node's ETR heard from, shared by every worker (data-driven reachability).
    pub heard: Arc<Heard>,
    pub cache: Arc<MapCache>,
    /// This worker's queue of every TUN device.
    pub tuns: Vec<tun::QueueSetup>,
    /// This worker's sockets on the data port, one per listen address.
    pub data: Vec<(SocketAddr, std::net::UdpSocket)>,
    /// Handles on the control port's sockets (lispers.net's suite leaves from there).
    pub control_out: Vec<(SocketAddr, std::net::UdpSocket)>,
}

/// The node's side of its workers.
pub struct Workers {
    to: Vec<mpsc::UnboundedSender<ToWorker>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// The workers' requests to the control plane (each stands for state the worker's [`Xtr`]
/// holds within its own bounds, so the channel needs none of its own).
pub type Requests = mpsc::UnboundedReceiver<ControlRequest>;

impl Workers {
    /// Starts one thread per setup; returns once every worker has opened its devices and
    /// sockets (or with the first one's error), with the channels of the workers' requests
    /// and of the control they received in data.
    pub fn spawn(
        start: Instant,
        setups: Vec<Setup>,
    ) -> anyhow::Result<(Workers, Requests, mpsc::Receiver<Replicated>)> {
        let (req_tx, requests) = mpsc::unbounded_channel();
        let (rep_tx, replicated) = mpsc::channel(REPLICATED_QUEUE);
        let mut to = Vec::new();
        let mut threads = Vec::new();
        let mut ready = Vec::new();
        for (index, setup) in setups.into_iter().enumerate() {
            let (tx, rx) = mpsc::unbounded_channel();
            let (ok_tx, ok_rx) = std::sync::mpsc::sync_channel::<Result<(), String>>(1);
            let (req_tx, rep_tx) = (req_tx.clone(), rep_tx.clone());
            let thread = std::thread::Builder::new()
                .name(format!("data-{index}"))
                .spawn(move || {
                    let rt = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(rt) => rt,
                        Err(e) => {
                            let _ = ok_tx.send(Err(format!("runtime: {e}")));
                            return;
                        }
                    };
                    rt.block_on(async move {
                        match Worker::open(index, start, setup, req_tx, rep_tx) {
                            Ok((worker, inputs)) => {
                                let _ = ok_tx.send(Ok(()));
                                worker.run(rx, inputs).await;
                            }
                            Err(e) => {
                                let _ = ok_tx.send(Err(format!("{e:#}")));
                            }
                        }
                    });
                })
                .context("cannot start a data-plane worker thread")?;
            to.push(tx);
            threads.push(thread);
            ready.push(ok_rx);
        }
        for (index, r) in ready.into_iter().enumerate() {
            match r.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => anyhow::bail!("data-plane worker {index}: {e}"),
                Err(_) => anyhow::bail!("data-plane worker {index} stopped while starting"),
            }
        }
        info!(workers = to.len(), "data plane running");
        Ok((Workers { to, threads }, requests, replicated))
    }

    /// A key event for every worker: one key built, a share each.
    pub fn key(&self, mut k: PreparedKey) {
        let mut shares: Vec<PreparedKey> = (1..self.to.len()).map(|_| k.share()).collect();
        shares.push(k);
        for (tx, share) in self.to.iter().zip(shares) {
            let _ = tx.send(ToWorker::Key(Box::new(share)));
        }
    }

    /// A message for every worker.
    pub fn broadcast(&self, m: impl Fn() -> ToWorker) {
        for tx in &self.to {
            let _ = tx.send(m());
        }
    }

    /// Control messages to send from the data port (by the first worker).
    pub fn send_from_data_port(&self, out: Vec<ControlTransmit>) {
        if let Some(tx) = self.to.first() {
            let _ = tx.send(ToWorker::Send(out));
        }
    }

    /// Every worker's counters and keys, merged.
    pub async fn report(&self) -> DataReport {
        let mut waiting = Vec::new();
        for tx in &self.to {
            let (r_tx, r_rx) = oneshot::channel();
            if tx.send(ToWorker::Report(r_tx)).is_ok() {
                waiting.push(r_rx);
            }
        }
        let mut all = DataReport::default();
        for r in waiting {
            if let Ok(r) = r.await {
                all.merge(r);
            }
        }
        all
    }

    /// Stops the workers (their threads end once they have read what was sent before).
    pub fn stop(self) {
        drop(self.to);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// How long a worker sleeps at most: the ETR's key expiry runs at least this often.
const IDLE_WAKE: Duration = Duration::from_secs(1);

/// The readers' channels of one worker.
struct Inputs {
    data: mpsc::Receiver<sockets::DataBatch>,
    tun: mpsc::Receiver<tun::TunBatch>,
}

/// Batches a reader may have handed over and not yet got back: the reader stays at most
/// this far ahead of its worker (the socket and device queues hold the rest).
const READ_AHEAD: usize = 2;

/// One worker: its shard of the data plane and the devices and sockets it drives. One
/// handler per event; the clock is read once per event.
struct Worker {
    index: usize,
    start: Instant,
    xtr: Xtr,
    cache: Arc<MapCache>,
    tuns: Vec<TunQueue>,
    /// Per TUN queue (in the order of `tuns`): the writes planned for what a data batch
    /// decapsulated, TCP segments coalesced (GRO), written from the batch's own buffers.
    tun_out: Vec<Coalescer>,
    /// This worker's data-port sockets (control sent from the data port leaves here).
    data_sockets: Sockets,
    control_out: Vec<(SocketAddr, std::net::UdpSocket)>,
    /// The sockets LISP data leaves from (none without a TUN device).
    out: Option<DataSender>,
    /// The buffers transmits of the data plane are swapped into (reused).
    tx: Datagrams,
    /// Where read batches go back to be read into again, per reader.
    data_spent: Vec<mpsc::Sender<sockets::DataBatch>>,
    tun_spent: Vec<mpsc::Sender<tun::TunBatch>>,
    requests: mpsc::UnboundedSender<ControlRequest>,
    replicated: mpsc::Sender<Replicated>,
}

impl Worker {
    /// Opens the worker's devices and sockets on the runtime of its thread and starts their
    /// readers.
    fn open(
        index: usize,
        start: Instant,
        setup: Setup,
        requests: mpsc::UnboundedSender<ControlRequest>,
        replicated: mpsc::Sender<Replicated>,
    ) -> anyhow::Result<(Worker, Inputs)> {
        let (data_tx, data) = mpsc::channel(READ_AHEAD * setup.data.len().max(1));
        let mut data_sockets = Sockets {
            by_local: Default::default(),
        };
        let mut data_spent = Vec::new();
        for (reader, (local, s)) in setup.data.into_iter().enumerate() {
            let sock = Arc::new(UdpSocket::from_std(s)?);
            let (spent_tx, spent_rx) = mpsc::channel(READ_AHEAD + 1);
            sockets::spawn_data_reader(sock.clone(), local, reader, data_tx.clone(), spent_rx);
            data_spent.push(spent_tx);
            data_sockets.by_local.insert(local, sock);
        }
        let (tun_tx, tun) = mpsc::channel(READ_AHEAD * setup.tuns.len().max(1));
        let mut tuns = Vec::new();
        let mut tun_spent = Vec::new();
        for (k, q) in setup.tuns.into_iter().enumerate() {
            let q = q.open().context("cannot open a TUN queue")?;
            let (spent_tx, spent_rx) = mpsc::channel(READ_AHEAD + 1);
            q.spawn_reader(tun_tx.clone(), spent_rx, k);
            tun_spent.push(spent_tx);
            tuns.push(q);
        }
        // Without a TUN device data leaves only as an RTR relays it.
        let out = DataSender::open();
        if !tuns.is_empty() {
            info!(worker = index, ports = ?out.ports(), "LISP data leaves from these UDP ports, by flow");
        }
        let out = Some(out);
        Ok((
            Worker {
                index,
                start,
                xtr: Xtr::with_heard(setup.xtr, setup.heard),
                cache: setup.cache,
                tun_out: tuns.iter().map(|t| Coalescer::new(t.offload)).collect(),
                tuns,
                data_sockets,
                control_out: setup.control_out,
                out,
                tx: Datagrams::default(),
                data_spent,
                tun_spent,
                requests,
                replicated,
            },
            Inputs { data, tun },
        ))
    }

    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    async fn run(mut self, mut from_node: mpsc::UnboundedReceiver<ToWorker>, mut inputs: Inputs) {
        loop {
            let mut deadline = Instant::now() + IDLE_WAKE;
            if let Some(t) = self.xtr.poll_timeout() {
                deadline = deadline.min(self.start + t);
            }
            // The node's messages first: a key agreed in a probe reaches the worker before
            // the data sealed under it that arrived meanwhile (the node sends the key before
            // the reply that lets the peer use it; an unbiased select could take the data
            // first and drop it as having no key).
            tokio::select! {
                biased;
                m = from_node.recv() => match m {
                    Some(m) => self.on_node(m).await,
                    None => break,
                },
                Some(batch) = inputs.data.recv() => self.on_data(batch).await,
                Some(batch) = inputs.tun.recv() => self.on_tun(batch).await,
                _ = tokio::time::sleep_until(deadline.into()) => {
                    let now = self.now();
                    // Packets that waited too long for a mapping are dropped.
                    self.xtr.handle_mappings(now, &self.cache);
                }
            }
            self.after().await;
        }
        debug!(worker = self.index, "data-plane worker stopped");
    }

    /// After each event: timers, what the data plane staged, its requests, its packets for
    /// the TUN devices.
    async fn after(&mut self) {
        let now = self.now();
        self.xtr.handle_timeout(now, &self.cache);
        self.flush_data(None);
        while let Some(r) = self.xtr.poll_control_request() {
            let _ = self.requests.send(r);
        }
        while let Some((iid, packet)) = self.xtr.poll_to_tun() {
            if let Some(t) = self.tuns.iter().find(|t| t.instance_id == iid) {
                let _ = t.write(&packet);
            }
        }
    }

    async fn on_node(&mut self, m: ToWorker) {
        let now = self.now();
        match m {
            ToWorker::Key(k) => self.xtr.install_key(now, *k),
            ToWorker::MapCache(c) => {
                self.cache = c;
                self.xtr.handle_mappings(now, &self.cache);
            }
            ToWorker::Rlocs(r) => self.xtr.set_rlocs(r),
            ToWorker::Send(out) => self.data_sockets.send_all(out.into_iter()).await,
            ToWorker::Report(tx) => {
                let mut r = self.xtr.report();
                r.stats.per_worker = vec![crate::dataplane::stats::Directions {
                    encapsulated: r.stats.encapsulated,
                    decapsulated: r.stats.decapsulated,
                }];
                let _ = tx.send(r);
            }
        }
    }

    /// LISP data (RFC 9300 §7): decapsulated by the data plane; our EIDs' packets are
    /// written into the TUN queues at the end of the batch, control carried in data goes
    /// to the engine.
    async fn on_data(&mut self, mut batch: sockets::DataBatch) {
        let now = self.now();
        for (i, d) in batch.items.iter_mut().enumerate() {
            if d.len > d.segment {
                self.xtr.stats_mut().coalesced_reads += 1;
            }
            let base = d.buf.as_ptr() as usize;
            for datagram in d.buf[..d.len].chunks_mut(d.segment) {
                let control = match self.xtr.decapsulate_at(now, d.from, d.local, datagram) {
                    Decapsulated::Deliver { iid, packet } => {
                        match self.tuns.iter().position(|t| t.instance_id == iid) {
                            Some(k) => {
                                // The packet stays where it was read; its place in the
                                // batch's buffer is what the write gathers from.
                                let start = packet.as_ptr() as usize - base;
                                let span = Span {
                                    buf: i,
                                    start,
                                    end: start + packet.len(),
                                };
                                self.tun_out[k].push(span, packet);
                            }
                            None => self.xtr.stats_mut().drop(Drop::NoDevice),
                        }
                        false
                    }
                    Decapsulated::Control { .. } => true,
                    Decapsulated::Forward { iid, packet } => {
                        // As RTR: encapsulated again; sent after the batch.
                        let _ = self.xtr.forward(now, iid, packet, &self.cache);
                        false
                    }
                    Decapsulated::Dropped(_) => false,
                };
                if control {
                    let payload = datagram[crate::wire::DataHeader::LEN..].to_vec();
                    if self.replicated.try_send((d.from, payload)).is_err() {
                        self.xtr.stats_mut().drop(Drop::ControlQueueFull);
                    }
                }
            }
        }
        self.write_tuns(&mut batch.items);
        self.xtr.flush_counters();
        if let Some(spent) = self.data_spent.get(batch.reader) {
            let _ = spent.try_send(batch);
        }
    }

    /// Packets read from a TUN queue: encapsulated and sealed where they were read, and
    /// sent from there (gathered by `sendmsg`); the batch goes back to its reader once every
    /// transmit is out.
    async fn on_tun(&mut self, mut batch: tun::TunBatch) {
        let now = self.now();
        let k = batch.queue;
        if batch.len() > batch.reads {
            // Some read was a TCP super-packet split at the MTU.
            self.xtr.stats_mut().split_reads += 1;
        }
        let Some(iid) = self.tuns.get(k).map(|t| t.instance_id) else {
            return;
        };
        for (slot, (buf, packet)) in batch.packets_mut().enumerate() {
            if let Encapsulated::IcmpToTun(error) =
                self.xtr
                    .encapsulate_in_place(now, iid, slot, buf, packet, &self.cache)
            {
                let _ = self.tuns[k].write(&error);
            }
        }
        self.flush_data(Some(&batch));
        if let Some(spent) = self.tun_spent.get(k) {
            let _ = spent.try_send(batch);
        }
    }

    /// Sends what the data plane staged: one datagram or a GSO batch per transmit, its
    /// datagrams gathered from the transmit's buffer and from `read` (the TUN batch they were
    /// encapsulated in, in place).
    fn flush_data(&mut self, read: Option<&tun::TunBatch>) {
        while let Some(t) = self.xtr.poll_transmit_parts(&mut self.tx) {
            let sent = if t.from_control_port {
                // lispers.net's padded suite: one datagram, always copied.
                let sock = self
                    .control_out
                    .iter()
                    .filter(|(a, _)| a.is_ipv4() == t.dst.is_ipv4())
                    .min_by_key(|(a, _)| Some(a.ip()) != t.src);
                let own = matches!(self.tx.parts[..], [Part::Own(_)]);
                own && sock.is_some_and(|(local, s)| {
                    use std::os::fd::AsRawFd;
                    // A socket on the wildcard address is told the source.
                    let src = t.src.filter(|_| local.ip().is_unspecified());
                    let one = [(src, t.dst, &self.tx.buf[..])];
                    udp_io::send_batch_from(s.as_raw_fd(), &one).is_ok_and(|n| n == 1)
                })
            } else {
                let outer = Outer {
                    src: t.src,
                    dst: t.dst,
                    ttl: t.ttl,
                    tos: t.tos,
                };
                let mut iov = [IoSlice::new(&[]); MAX_SEGMENTS];
                let n = gather(&self.tx, read, &mut iov);
                // To our RTR, or as RTR to a node behind a NAT: from the data port, whose
                // binding the NAT knows.
                let port = if t.from_data_port {
                    use std::os::fd::AsRawFd;
                    self.data_sockets
                        .by_local
                        .iter()
                        .filter(|(a, _)| a.is_ipv4() == t.dst.is_ipv4())
                        .min_by_key(|(a, _)| Some(a.ip()) != t.src)
                        .map(|(_, s)| s.as_raw_fd())
                } else {
                    None
                };
                match (self.out.as_mut(), n) {
                    (Some(out), Some(n)) if t.from_data_port => match port {
                        Some(fd) => match out.send_gather_on(fd, &outer, &iov[..n], t.segment) {
                            Ok(()) => true,
                            Err(e) => {
                                debug!(dst = %t.dst, "data send failed: {e}");
                                false
                            }
                        },
                        None => false,
                    },
                    (Some(out), Some(n)) => {
                        match out.send_gather(t.flow, &outer, &iov[..n], t.segment) {
                            Ok(()) => true,
                            Err(e) => {
                                debug!(dst = %t.dst, "data send failed: {e}");
                                false
                            }
                        }
                    }
                    _ => false,
                }
            };
            if !sent {
                self.xtr.transmit_failed(&t);
            }
        }
    }

    /// Writes what a batch decapsulated into the TUN queues, from the batch's buffers.
    fn write_tuns(&mut self, bufs: &mut [sockets::DataIn]) {
        for (t, plan) in self.tuns.iter().zip(self.tun_out.iter_mut()) {
            if plan.writes().is_empty() {
                continue;
            }
            let lost = t.write_planned(plan, bufs);
            let stats = self.xtr.stats_mut();
            stats.coalesced_writes +=
                plan.writes().iter().filter(|w| w.packets() > 1).count() as u64;
            if lost > 0 {
                stats.drop_n(Drop::TunWriteFailed, lost);
            }
            plan.clear();
        }
    }
}
