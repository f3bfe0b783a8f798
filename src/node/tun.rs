//! TUN devices, one per Instance-ID (RFC 9300 §8), created with tun-rs; their EID addresses
//! and the routes to remote EID-prefixes are installed over netlink (rtnetlink).

use std::collections::BTreeSet;
use std::io::IoSlice;
use std::net::IpAddr;
use std::ops::Range;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use anyhow::Context;
use ipnet::IpNet;
use rtnetlink::{Handle, LinkUnspec, RouteMessageBuilder};
use tokio::sync::mpsc;
use tun_rs::{AsyncDevice, DeviceBuilder, IDEAL_BATCH_SIZE, SyncDevice, VIRTIO_NET_HDR_LEN};

use crate::dataplane::gro::{self, Coalescer};
use crate::dataplane::xtr::{PACKET_AT, TAILROOM};

use super::config::InstanceConfig;

/// Encapsulation overhead, at most: IPv6 outer header 40 + UDP 8 + LISP 8, plus lisp-crypto's
/// IV (up to 12) and AEAD tag (16). The default TUN MTU leaves room for it on the underlay
/// (1416 on a 1500-byte underlay).
pub const ENCAP_OVERHEAD: u16 = 40 + 8 + 8 + 12 + 16;

/// Buffers of one [`TunBatch`].
const BATCH_BUFFERS: usize = 256;
/// A read may need this many buffers (a 64 KB super-packet cut at a small MSS): the reader
/// stops filling a batch before fewer remain.
const READ_RESERVE: usize = IDEAL_BATCH_SIZE;
/// Room a batch buffer leaves after a packet of the device's MTU.
const SLACK: usize = 64;
const _: () = assert!(SLACK >= TAILROOM);
/// Reads in one batch, at most.
const READS_PER_BATCH: usize = 64;

/// What a TUN reader hands over: the IP packets of up to [`READS_PER_BATCH`] reads (each
/// one packet, or the segments of a TCP super-packet split at the MTU) of TUN queue `queue`,
/// read straight into the batch's buffers. The worker sends the batch back once done
/// ([`TunQueue::spawn_reader`]'s `spent`), so the steady state neither copies nor allocates.
pub struct TunBatch {
    pub queue: usize,
    bufs: Vec<Vec<u8>>,
    sizes: Vec<usize>,
    count: usize,
    /// Reads that filled this batch.
    pub reads: usize,
}

impl TunBatch {
    fn new(queue: usize, size: usize) -> TunBatch {
        TunBatch {
            queue,
            bufs: vec![vec![0u8; size]; BATCH_BUFFERS],
            sizes: vec![0; BATCH_BUFFERS],
            count: 0,
            reads: 0,
        }
    }

    /// The packets read, each as its buffer and where the packet lies in it: [`PACKET_AT`]
    /// bytes in, with at least [`TAILROOM`] after it, so the ITR encapsulates and
    /// seals it where it lies ([`Xtr::encapsulate_in_place`]).
    ///
    /// [`Xtr::encapsulate_in_place`]: crate::dataplane::Xtr::encapsulate_in_place
    pub fn packets_mut(&mut self) -> impl Iterator<Item = (&mut [u8], Range<usize>)> {
        self.bufs
            .iter_mut()
            .zip(&self.sizes)
            .take(self.count)
            .map(|(b, n)| (&mut b[..], PACKET_AT..PACKET_AT + *n))
    }

    /// `range` of buffer `slot` (a datagram encapsulated in place).
    pub fn slot(&self, slot: usize, range: Range<usize>) -> Option<&[u8]> {
        self.bufs
            .get(slot)
            .take_if(|_| slot < self.count)?
            .get(range)
    }

    /// Packets in the batch.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// Priority of the "from <EID address> lookup <table>" rules of Instance-IDs with a table.
pub const RULE_PRIORITY: u32 = 1000;

/// One Instance-ID's device and the remote prefixes routed into it. The device has one
/// queue per data-plane worker (Linux multi-queue TUN: the kernel keeps each flow on one
/// queue); [`Tun::take_queues`] hands them to the workers.
pub struct Tun {
    pub instance_id: u32,
    queues: Vec<SyncDevice>,
    pub index: u32,
    pub mtu: u16,
    /// Whether the device exchanges virtio-net headers (TSO reads, GRO writes).
    pub offload: bool,
    table: Option<u32>,
    rules: Vec<IpAddr>,
    routed: BTreeSet<IpNet>,
}

async fn netlink() -> anyhow::Result<Handle> {
    let (conn, handle, _) = rtnetlink::new_connection().context("cannot open a netlink socket")?;
    tokio::spawn(conn);
    Ok(handle)
}

impl Tun {
    /// Creates the device, gives it its EID addresses (host prefixes) and brings it up; with
    /// a routing table, traffic from its addresses is steered into that table.
    pub async fn create(
        cfg: &InstanceConfig,
        underlay_mtu: u16,
        queues: usize,
    ) -> anyhow::Result<Tun> {
        let mtu = cfg
            .mtu
            .unwrap_or(underlay_mtu.saturating_sub(ENCAP_OVERHEAD).max(576));
        // Offloads let the kernel hand over and take TCP super-packets (one read or write per
        // up to 64 KB instead of per segment); a kernel without them gets a plain device.
        let build = |offload: bool| {
            DeviceBuilder::new()
                .name(&cfg.tun)
                .mtu(mtu)
                .offload(offload)
                .multi_queue(queues > 1)
                .build_sync()
        };
        let (device, offload) = match build(true) {
            Ok(d) => (d, true),
            Err(e) => {
                tracing::info!(device = %cfg.tun, "TUN offloads unavailable ({e}): one packet per read");
                (
                    build(false).with_context(|| {
                        format!(
                            "cannot create TUN device {} (root or CAP_NET_ADMIN needed)",
                            cfg.tun
                        )
                    })?,
                    false,
                )
            }
        };
        let index = device.if_index().context("TUN device index")?;
        let mut all = Vec::with_capacity(queues);
        for _ in 1..queues {
            all.push(
                device.try_clone().with_context(|| {
                    format!("cannot open another queue of TUN device {}", cfg.tun)
                })?,
            );
        }
        all.insert(0, device);
        let h = netlink().await?;
        for a in &cfg.addresses {
            let len = if a.is_ipv4() { 32 } else { 128 };
            let mut req = h.address().add(index, *a, len).replace();
            if a.is_ipv6() {
                // An EID on a point-to-point device needs no duplicate address detection,
                // and a tentative address could not be used at once.
                use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags};
                req.message_mut()
                    .attributes
                    .push(AddressAttribute::Flags(AddressFlags::Nodad));
            }
            req.execute()
                .await
                .with_context(|| format!("cannot add {a} to {}", cfg.tun))?;
        }
        h.link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .with_context(|| format!("cannot bring {} up", cfg.tun))?;
        let mut rules = Vec::new();
        if let Some(table) = cfg.table {
            // The VPN's table ends in "unreachable default": what it has no route for is
            // refused, never looked up in the main table and sent into another Instance-ID
            // (draft-ietf-lisp-vpn: VPNs stay apart). Replaced if an earlier run left it.
            for v6 in [false, true] {
                if !cfg.addresses.iter().any(|a| a.is_ipv6() == v6) {
                    continue;
                }
                h.route()
                    .add(unreachable_default(table, v6))
                    .replace()
                    .execute()
                    .await
                    .with_context(|| format!("unreachable default route in table {table}"))?;
            }
            for a in &cfg.addresses {
                let mut req = h.rule().add();
                *req.message_mut() = rule_message(&h, table, *a);
                let r = req.execute().await;
                match r {
                    Ok(()) => rules.push(*a),
                    // Left by an earlier run: it is the rule we want.
                    Err(rtnetlink::Error::NetlinkError(e))
                        if std::io::Error::from_raw_os_error(-e.raw_code()).kind()
                            == std::io::ErrorKind::AlreadyExists =>
                    {
                        rules.push(*a)
                    }
                    Err(e) => {
                        return Err(e).with_context(|| format!("rule from {a} lookup {table}"));
                    }
                }
            }
        }
        Ok(Tun {
            instance_id: cfg.instance_id,
            queues: all,
            index,
            mtu,
            offload,
            table: cfg.table,
            rules,
            routed: BTreeSet::new(),
        })
    }

    /// The device's queues, one per worker, each to be opened as a [`TunQueue`] on its
    /// worker's runtime (empty after the first call).
    pub fn take_queues(&mut self) -> Vec<QueueSetup> {
        std::mem::take(&mut self.queues)
            .into_iter()
            .map(|queue| QueueSetup {
                instance_id: self.instance_id,
                index: self.index,
                mtu: self.mtu,
                offload: self.offload,
                queue,
            })
            .collect()
    }

    /// Removes the rules `create` added (the routes go with the device).
    pub async fn remove_rules(&mut self) {
        let (Some(table), Ok(h)) = (self.table, netlink().await) else {
            return;
        };
        let families: BTreeSet<bool> = self.rules.iter().map(|a| a.is_ipv6()).collect();
        for a in std::mem::take(&mut self.rules) {
            let msg = rule_message(&h, table, a);
            let _ = h.rule().del(msg).execute().await;
        }
        for v6 in families {
            let _ = h
                .route()
                .del(unreachable_default(table, v6))
                .execute()
                .await;
        }
    }

    /// Makes the routes into the device equal `wanted` (the remote EID-prefixes of its
    /// Instance-ID); returns how many routes were added and removed.
    pub async fn sync_routes(
        &mut self,
        wanted: &BTreeSet<IpNet>,
    ) -> anyhow::Result<(usize, usize)> {
        if *wanted == self.routed {
            return Ok((0, 0));
        }
        let h = netlink().await?;
        let mut added = 0;
        let mut removed = 0;
        for p in wanted.difference(&self.routed.clone()) {
            h.route()
                .add(route(*p, self.index, self.table))
                .replace()
                .execute()
                .await
                .with_context(|| format!("route {p}"))?;
            self.routed.insert(*p);
            added += 1;
        }
        for p in self.routed.difference(wanted).copied().collect::<Vec<_>>() {
            // The route may be gone already (the device went down): that is fine.
            let _ = h
                .route()
                .del(route(p, self.index, self.table))
                .execute()
                .await;
            self.routed.remove(&p);
            removed += 1;
        }
        Ok((added, removed))
    }
}

fn route(p: IpNet, index: u32, table: Option<u32>) -> rtnetlink::packet_route::route::RouteMessage {
    let table = table.unwrap_or(254);
    match p {
        IpNet::V4(n) => RouteMessageBuilder::<std::net::Ipv4Addr>::new()
            .destination_prefix(n.addr(), n.prefix_len())
            .output_interface(index)
            .table_id(table)
            .build(),
        IpNet::V6(n) => RouteMessageBuilder::<std::net::Ipv6Addr>::new()
            .destination_prefix(n.addr(), n.prefix_len())
            .output_interface(index)
            .table_id(table)
            .build(),
    }
}

/// Removes the "from <address> lookup <table>" rules an earlier run left (killed with
/// SIGKILL, or with another configuration) that the configured instances do not want: ours
/// are the ones at [`RULE_PRIORITY`]. Returns how many went.
pub async fn remove_stale_rules(instances: &[InstanceConfig]) -> anyhow::Result<usize> {
    use futures_util::TryStreamExt;
    use rtnetlink::IpVersion;
    use rtnetlink::packet_route::rule::RuleAttribute;
    let wanted: BTreeSet<(IpAddr, u32)> = instances
        .iter()
        .filter_map(|i| i.table.map(|t| (i, t)))
        .flat_map(|(i, t)| i.addresses.iter().map(move |a| (*a, t)))
        .collect();
    let h = netlink().await?;
    let mut removed = 0;
    for version in [IpVersion::V4, IpVersion::V6] {
        let rules: Vec<_> = h.rule().get(version).execute().try_collect().await?;
        for msg in rules {
            let (mut prio, mut src, mut table) = (None, None, u32::from(msg.header.table));
            for a in &msg.attributes {
                match a {
                    RuleAttribute::Priority(p) => prio = Some(*p),
                    RuleAttribute::Source(s) => src = Some(*s),
                    RuleAttribute::Table(t) => table = *t,
                    _ => {}
                }
            }
            let (Some(RULE_PRIORITY), Some(src)) = (prio, src) else {
                continue;
            };
            if !wanted.contains(&(src, table)) && h.rule().del(msg).execute().await.is_ok() {
                removed += 1;
            }
        }
    }
    Ok(removed)
}

/// "unreachable default" in `table`, for IPv4 or IPv6.
fn unreachable_default(table: u32, v6: bool) -> rtnetlink::packet_route::route::RouteMessage {
    use rtnetlink::packet_route::route::RouteType;
    if v6 {
        RouteMessageBuilder::<std::net::Ipv6Addr>::new()
            .destination_prefix(std::net::Ipv6Addr::UNSPECIFIED, 0)
            .table_id(table)
            .kind(RouteType::Unreachable)
            .build()
    } else {
        RouteMessageBuilder::<std::net::Ipv4Addr>::new()
            .destination_prefix(std::net::Ipv4Addr::UNSPECIFIED, 0)
            .table_id(table)
            .kind(RouteType::Unreachable)
            .build()
    }
}

/// The rule "from <a> lookup <table>" of an Instance-ID with its own table.
fn rule_message(h: &Handle, table: u32, a: IpAddr) -> rtnetlink::packet_route::rule::RuleMessage {
    let req = h
        .rule()
        .add()
        .table_id(table)
        .priority(RULE_PRIORITY)
        .action(rtnetlink::packet_route::rule::RuleAction::ToTable);
    match a {
        IpAddr::V4(v4) => req.v4().source_prefix(v4, 32).message_mut().clone(),
        IpAddr::V6(v6) => req.v6().source_prefix(v6, 128).message_mut().clone(),
    }
}

/// One queue of an Instance-ID's TUN device, read and written by one data-plane worker.
pub struct TunQueue {
    pub instance_id: u32,
    pub device: Arc<AsyncDevice>,
    pub index: u32,
    pub mtu: u16,
    /// Whether the device exchanges virtio-net headers (TSO reads, GRO writes).
    pub offload: bool,
}

/// A queue of a TUN device on its way to a worker's thread.
pub struct QueueSetup {
    pub instance_id: u32,
    index: u32,
    mtu: u16,
    offload: bool,
    queue: SyncDevice,
}

impl QueueSetup {
    /// The queue, registered with the runtime this is called on.
    pub fn open(self) -> std::io::Result<TunQueue> {
        Ok(TunQueue {
            instance_id: self.instance_id,
            device: Arc::new(AsyncDevice::new(self.queue)?),
            index: self.index,
            mtu: self.mtu,
            offload: self.offload,
        })
    }
}

impl TunQueue {
    /// Reads the queue until it fails or `tx` closes, handing over batches: after a read
    /// that waited, whatever else the queue holds (up to [`READS_PER_BATCH`] reads), so a
    /// stream of small packets (TCP ACKs) costs one hand-over and one wake-up per batch, not
    /// per packet. Batches come back on `spent` and are read into again.
    pub fn spawn_reader(
        &self,
        tx: mpsc::Sender<TunBatch>,
        mut spent: mpsc::Receiver<TunBatch>,
        queue: usize,
    ) {
        let dev = self.device.clone();
        let name = self.index;
        // Room before each packet for the LISP header and IV, after it for the tag.
        let size = PACKET_AT + usize::from(self.mtu) + SLACK;
        tokio::spawn(async move {
            let mut original = vec![0u8; VIRTIO_NET_HDR_LEN + 65535];
            loop {
                let mut b = spent
                    .try_recv()
                    .unwrap_or_else(|_| TunBatch::new(queue, size));
                b.count = 0;
                b.reads = 0;
                match dev
                    .recv_multiple(&mut original, &mut b.bufs, &mut b.sizes, PACKET_AT)
                    .await
                {
                    Ok(n) => {
                        b.count = n;
                        b.reads = 1;
                    }
                    Err(e) if e.raw_os_error().is_some() => {
                        tracing::warn!(ifindex = name, "TUN read failed: {e}");
                        return;
                    }
                    Err(e) => {
                        tracing::debug!(ifindex = name, "TUN packet skipped: {e}");
                        continue;
                    }
                }
                while b.reads < READS_PER_BATCH && BATCH_BUFFERS - b.count >= READ_RESERVE {
                    let at = b.count;
                    match dev.try_recv_multiple(
                        &mut original,
                        &mut b.bufs[at..],
                        &mut b.sizes[at..],
                        PACKET_AT,
                    ) {
                        Ok(n) => {
                            b.count += n;
                            b.reads += 1;
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                        Err(e) if e.raw_os_error().is_some() => {
                            tracing::warn!(ifindex = name, "TUN read failed: {e}");
                            break;
                        }
                        Err(e) => tracing::debug!(ifindex = name, "TUN packet skipped: {e}"),
                    }
                }
                if tx.send(b).await.is_err() {
                    return;
                }
            }
        });
    }

    /// Writes one IP packet (behind a zero virtio-net header on a device with offloads: no
    /// segmentation, no checksum to fill in); false when the device refused it.
    pub fn write(&self, packet: &[u8]) -> bool {
        let header = [0u8; gro::VIRTIO_HDR_LEN];
        let parts = [IoSlice::new(&header), IoSlice::new(packet)];
        self.gather(if self.offload { &parts } else { &parts[1..] })
    }

    /// One packet into the device from `parts`, in one system call.
    fn gather(&self, parts: &[IoSlice]) -> bool {
        // SAFETY: `IoSlice` is ABI-compatible with `struct iovec` on Unix (std's guarantee),
        // the slices borrow live buffers for the call, and the descriptor is the device's.
        let n = unsafe {
            libc::writev(
                self.device.as_raw_fd(),
                parts.as_ptr().cast::<libc::iovec>(),
                parts.len() as i32,
            )
        };
        n >= 0
    }

    /// Writes what `plan` planned, each write one system call gathering the head packet
    /// and the payloads after it straight from `bufs` (no copy in user space); the virtio-
    /// net header goes first on a device with offloads. TUN writes do not block (the
    /// device queues or drops); what the device refuses is returned as packets lost.
    pub fn write_planned<B: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        plan: &Coalescer,
        bufs: &mut [B],
    ) -> u64 {
        debug_assert_eq!(plan.offload(), self.offload);
        let mut lost = 0;
        for w in plan.writes() {
            let h = w.head();
            let Some(head) = bufs
                .get_mut(h.buf)
                .and_then(|b| b.as_mut().get_mut(h.start..h.end))
            else {
                lost += w.packets() as u64;
                continue;
            };
            w.patch_head(head);
            let header = w.virtio_header();
            let mut iov = [IoSlice::new(&[]); gro::MAX_SEGMENTS + 1];
            let mut n = 0;
            if self.offload {
                iov[0] = IoSlice::new(&header);
                n = 1;
            }
            let bufs: &[B] = bufs;
            let mut whole = true;
            for s in std::iter::once(h).chain(w.payloads().iter().copied()) {
                match bufs.get(s.buf).and_then(|b| b.as_ref().get(s.start..s.end)) {
                    Some(bytes) => {
                        iov[n] = IoSlice::new(bytes);
                        n += 1;
                    }
                    None => whole = false,
                }
            }
            if !(whole && self.gather(&iov[..n])) {
                lost += w.packets() as u64;
            }
        }
        lost
    }
}
