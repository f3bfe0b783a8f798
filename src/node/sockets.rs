//! The node's UDP sockets (RFC 9300 §5.2 data port 4341, RFC 9301 §5.1 control port 4342,
//! and the peer group's multicast address, RFC 9962 §4): binding, the readers that hand
//! batches of datagrams to the node loop, and the choice of the socket a control message
//! leaves from.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use anyhow::Context;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::config::NodeConfig;
use super::{interfaces, udp_io};
use crate::control::{Delivery, LocalRloc, MappingSystem, Transmit};

pub(crate) fn bind_udp(addr: SocketAddr, reuse: bool) -> anyhow::Result<Socket> {
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

/// Receive buffer of the control port and the group's socket: a burst of Map-Registers (an
/// xTR registering a few thousand prefixes at once; 100 registers of 1.4 KB overflowed the
/// default) or of Map-Requests waits for the next batch instead of being dropped.
const CONTROL_RECEIVE_BUFFER: usize = 2 << 20;

/// Sets the socket's receive buffer to `bytes`: beyond `net.core.rmem_max` with
/// SO_RCVBUFFORCE where the node may (CAP_NET_ADMIN, which it has for its TUN devices), else
/// as far as SO_RCVBUF goes.
fn widen_receive_buffer(s: &Socket, bytes: usize) {
    let v = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    let forced = udp_io::set_int_option(s, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, v);
    if !forced && let Err(e) = s.set_recv_buffer_size(bytes) {
        warn!("cannot widen a receive buffer: {e}");
    }
}

/// Control datagrams one wake-up of a reader read: their bytes one after another in one
/// buffer (one allocation per batch, not per datagram), and for each the local address it
/// arrived on, the sender and where its bytes lie.
#[derive(Default)]
pub struct ControlBatch {
    bytes: Vec<u8>,
    items: Vec<(SocketAddr, SocketAddr, std::ops::Range<usize>)>,
}

impl ControlBatch {
    /// Each datagram: (local address, sender, bytes).
    pub fn iter(&self) -> impl Iterator<Item = (SocketAddr, SocketAddr, &[u8])> {
        self.items
            .iter()
            .filter_map(|(l, f, r)| Some((*l, *f, self.bytes.get(r.clone())?)))
    }

    fn push(&mut self, local: SocketAddr, from: SocketAddr, d: &[u8]) {
        let at = self.bytes.len();
        self.bytes.extend_from_slice(d);
        self.items.push((local, from, at..at + d.len()));
    }
}

/// Reads control datagrams and hands them over in batches: what the socket holds after a
/// wake-up (up to [`CONTROL_BATCH`]) goes in one message, so a burst costs one hand-over and
/// one wake-up of the node loop.
fn spawn_reader(sock: Arc<UdpSocket>, local: SocketAddr, tx: mpsc::Sender<ControlBatch>) {
    use std::os::fd::AsRawFd;
    use tokio::io::Interest;
    tokio::spawn(async move {
        let mut reader = udp_io::BatchReader::new(CONTROL_BATCH);
        let fd = sock.as_raw_fd();
        // The next batch's buffer starts as large as the last one needed.
        let mut last = 0;
        loop {
            let mut batch = ControlBatch {
                bytes: Vec::with_capacity(last),
                items: Vec::new(),
            };
            let r = sock
                .async_io(Interest::READABLE, || {
                    reader.read(fd, |from, to, d| {
                        // On the wildcard address, the local address is the one the peer
                        // sent to (IP_PKTINFO); else the socket's own.
                        let at = match to {
                            Some(ip) if local.ip().is_unspecified() => {
                                SocketAddr::new(ip, local.port())
                            }
                            _ => local,
                        };
                        batch.push(at, from, d)
                    })
                })
                .await;
            if let Err(e) = r {
                warn!(%local, "receive error: {e}");
                continue;
            }
            last = batch.bytes.len();
            if tx.send(batch).await.is_err() {
                return;
            }
        }
    });
}

/// Datagrams read from one data-port socket in one go: `buf[..len]` holds one datagram or,
/// with UDP GRO, several of `segment` bytes (the last one may be shorter).
pub struct DataIn {
    pub from: SocketAddr,
    /// Our address it was sent to (the socket's, or on the wildcard address what
    /// IP_PKTINFO / IPV6_PKTINFO said).
    pub local: Option<IpAddr>,
    pub buf: Vec<u8>,
    pub len: usize,
    pub segment: usize,
}

/// The whole read buffer: decapsulated packets are written into a TUN device from where
/// they were read (`dataplane::gro::Span`s into it).
impl AsRef<[u8]> for DataIn {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl AsMut<[u8]> for DataIn {
    fn as_mut(&mut self) -> &mut [u8] {
        &mut self.buf
    }
}

/// What a data-port reader hands over: what one wake-up read (up to [`DATA_BATCH`] reads),
/// straight into buffers that the worker sends back once done (to reader `reader`), so the
/// steady state neither copies nor allocates.
pub struct DataBatch {
    pub reader: usize,
    pub items: Vec<DataIn>,
}

/// Control datagrams read with one recvmmsg, handled in one go, and sent with one sendmmsg,
/// at most (each read slot takes 64 KB: 2 MB per control socket).
const CONTROL_BATCH: usize = 32;

/// At most this many reads are handed over together from a data-port socket.
const DATA_BATCH: usize = 64;

/// Read buffers a data-port reader keeps for reuse, at most (64 KB each: 4 MB).
const FREE_BUFFERS: usize = DATA_BATCH;

/// What one read gave, in `buf`; `buf` back when there was nothing (or an error).
fn take(
    local: SocketAddr,
    buf: Vec<u8>,
    r: std::io::Result<udp_io::Received>,
) -> Result<DataIn, Vec<u8>> {
    match r {
        Ok(r) => Ok(DataIn {
            from: r.from,
            local: r.local.or(Some(local.ip()).filter(|a| !a.is_unspecified())),
            buf,
            len: r.len,
            segment: r.segment.unwrap_or(r.len).max(1),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Err(buf),
        Err(e) => {
            warn!(%local, "receive error: {e}");
            Err(buf)
        }
    }
}

/// Reads the LISP data port (UDP GRO where the kernel has it) and hands over what arrived
/// since the last wake-up, as one batch. Batches come back on `spent`.
pub fn spawn_data_reader(
    sock: Arc<UdpSocket>,
    local: SocketAddr,
    reader: usize,
    tx: mpsc::Sender<DataBatch>,
    mut spent: mpsc::Receiver<DataBatch>,
) {
    use std::os::fd::AsRawFd;
    use tokio::io::Interest;
    let gro = udp_io::enable_gro(sock.as_ref());
    debug!(%local, gro, "data port reader");
    tokio::spawn(async move {
        let fd = sock.as_raw_fd();
        let mut free: Vec<Vec<u8>> = Vec::new();
        let next = |free: &mut Vec<Vec<u8>>| free.pop().unwrap_or_else(|| vec![0u8; 65536]);
        loop {
            let mut batch = match spent.try_recv() {
                Ok(mut b) => {
                    for d in b.items.drain(..) {
                        if free.len() < FREE_BUFFERS {
                            free.push(d.buf);
                        }
                    }
                    b
                }
                Err(_) => DataBatch {
                    reader,
                    items: Vec::with_capacity(DATA_BATCH),
                },
            };
            let mut buf = next(&mut free);
            let r = sock
                .async_io(Interest::READABLE, || udp_io::recv(fd, &mut buf))
                .await;
            match take(local, buf, r) {
                Ok(d) => batch.items.push(d),
                Err(b) => free.push(b),
            }
            while batch.items.len() < DATA_BATCH {
                let mut buf = next(&mut free);
                let r = sock.try_io(Interest::READABLE, || udp_io::recv(fd, &mut buf));
                match take(local, buf, r) {
                    Ok(d) => batch.items.push(d),
                    Err(b) => {
                        free.push(b);
                        break;
                    }
                }
            }
            if !batch.items.is_empty() && tx.send(batch).await.is_err() {
                return;
            }
        }
    });
}

/// The sockets of a node, by local address and port.
pub struct Sockets {
    pub by_local: HashMap<SocketAddr, Arc<UdpSocket>>,
}

impl Sockets {
    pub fn pick(&self, t: &Transmit) -> Option<(SocketAddr, &Arc<UdpSocket>)> {
        if let Some(src) = t.src {
            let local = SocketAddr::new(src, t.src_port);
            if let Some(s) = self.by_local.get(&local) {
                return Some((local, s));
            }
        }
        self.by_local
            .iter()
            .filter(|(a, _)| {
                a.port() == t.src_port && a.is_ipv4() == t.dst.is_ipv4() && !a.ip().is_multicast()
            })
            .min_by_key(|(a, _)| *a)
            .map(|(a, s)| (*a, s))
    }

    /// Sends the control plane's output: grouped by the socket it leaves from, many
    /// datagrams per system call (sendmmsg), waiting for room when a socket's buffer is full.
    pub async fn send_all(&self, out: impl Iterator<Item = Transmit>) {
        use std::os::fd::AsRawFd;
        use tokio::io::Interest;
        let mut groups: Vec<(SocketAddr, Vec<Transmit>)> = Vec::new();
        for t in out {
            let Some((local, _)) = self.pick(&t) else {
                warn!(dst = %t.dst, "no socket to send from");
                continue;
            };
            match groups.iter_mut().find(|(l, _)| *l == local) {
                Some((_, g)) => g.push(t),
                None => groups.push((local, vec![t])),
            }
        }
        for (local, group) in groups {
            let Some(sock) = self.by_local.get(&local) else {
                continue;
            };
            let fd = sock.as_raw_fd();
            // A socket on the wildcard address is told each datagram's source.
            let wildcard = local.ip().is_unspecified();
            for chunk in group.chunks(CONTROL_BATCH) {
                let mut at = 0;
                while at < chunk.len() {
                    let batch: Vec<(Option<IpAddr>, SocketAddr, &[u8])> = chunk[at..]
                        .iter()
                        .map(|t| (t.src.filter(|_| wildcard), t.dst, &t.payload[..]))
                        .collect();
                    match sock
                        .async_io(Interest::WRITABLE, || udp_io::send_batch_from(fd, &batch))
                        .await
                    {
                        Ok(n) => at += n.max(1),
                        Err(e) => {
                            // One datagram the kernel refused (no route, say): skip it.
                            debug!(dst = %chunk[at].dst, "send failed: {e}");
                            at += 1;
                        }
                    }
                }
            }
        }
    }
}

/// What [`open`] gives: the control sockets, the channel their readers fill, and the data
/// port's sockets, one set per data-plane worker (not yet registered with a runtime).
pub struct Opened {
    pub sockets: Sockets,
    pub control: mpsc::Receiver<ControlBatch>,
    pub data: Vec<Vec<(SocketAddr, std::net::UdpSocket)>>,
    /// Underlay multicast: the socket that joined the peer group, and where.
    pub joined: Option<Joined>,
}

/// The peer group's membership of a socket (RFC 9962 §4 underlay multicast): the group, the
/// local address of the socket that joined it, and the interface (by index).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Joined {
    pub group: IpAddr,
    pub socket: SocketAddr,
    pub ifindex: u32,
}

/// Joins `group` on the interface `ifindex` and sends the group's datagrams out of it
/// (IP_MULTICAST_IF by index, IPV6_MULTICAST_IF): on the wildcard address there is no
/// address of ours to name the interface by, and it may change.
pub fn join_group(s: socket2::SockRef<'_>, group: IpAddr, ifindex: u32) -> std::io::Result<()> {
    match group {
        IpAddr::V4(g) => {
            s.join_multicast_v4_n(&g, &socket2::InterfaceIndexOrAddress::Index(ifindex))?;
            multicast_if_v4_index(&s, ifindex)
        }
        IpAddr::V6(g) => {
            s.join_multicast_v6(&g, ifindex)?;
            s.set_multicast_if_v6(ifindex)
        }
    }
}

/// Leaves `group` on `ifindex` (an interface that is gone has left it already).
pub fn leave_group(s: socket2::SockRef<'_>, group: IpAddr, ifindex: u32) -> std::io::Result<()> {
    match group {
        IpAddr::V4(g) => {
            s.leave_multicast_v4_n(&g, &socket2::InterfaceIndexOrAddress::Index(ifindex))
        }
        IpAddr::V6(g) => s.leave_multicast_v6(&g, ifindex),
    }
}

/// IP_MULTICAST_IF with an `ip_mreqn` naming the interface by index (Linux).
fn multicast_if_v4_index(s: &socket2::SockRef<'_>, ifindex: u32) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let m = libc::ip_mreqn {
        imr_multiaddr: libc::in_addr { s_addr: 0 },
        imr_address: libc::in_addr { s_addr: 0 },
        imr_ifindex: i32::try_from(ifindex).unwrap_or(0),
    };
    // SAFETY: a valid socket descriptor and an ip_mreqn of the size given.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_MULTICAST_IF,
            (&m as *const libc::ip_mreqn).cast(),
            size_of::<libc::ip_mreqn>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The interface the node joins the peer group on: `multicast_interface`, else the one
/// holding its first RLOC of the group's family.
pub async fn group_interface(
    cfg: &NodeConfig,
    rlocs: &[IpAddr],
    group: IpAddr,
) -> anyhow::Result<u32> {
    match &cfg.multicast_interface {
        Some(name) => Ok(interfaces::addresses(name).await?.0),
        None => {
            let a = rlocs
                .iter()
                .copied()
                .find(|a| a.is_ipv4() == group.is_ipv4())
                .context("no RLOC of the group's address family")?;
            interfaces::index_of(a).await
        }
    }
}

impl Sockets {
    /// Handles on the sockets of the control port (not the group's) for a data-plane
    /// worker: encrypted data to a lispers.net peer leaves from the port of our probes
    /// (PROTOCOL.md §5.2 item 12). Each is a second descriptor of the same socket, sent on
    /// without waiting (a full buffer drops the datagram), never read.
    pub fn control_port(
        &self,
        port: u16,
    ) -> anyhow::Result<Vec<(SocketAddr, std::net::UdpSocket)>> {
        use std::os::fd::AsFd;
        self.by_local
            .iter()
            .filter(|(a, _)| a.port() == port && !a.ip().is_multicast())
            .map(|(a, s)| {
                let fd = s
                    .as_fd()
                    .try_clone_to_owned()
                    .context("cannot share a control socket with the data plane")?;
                Ok((*a, std::net::UdpSocket::from(fd)))
            })
            .collect()
    }
}

/// Where the node binds its control and data ports: the configured listen addresses; else,
/// when an RLOC comes from an interface, the wildcard address of each family its RLOCs may
/// have, so the sockets survive the interface's address changing (the node roams, RFC 9962
/// §1) and each datagram's local address comes from IP_PKTINFO; else the RLOCs.
fn listen_addresses(cfg: &NodeConfig, rlocs: &[LocalRloc]) -> Vec<IpAddr> {
    use super::config::RlocSource;
    if !cfg.listen.is_empty() {
        return cfg.listen.clone();
    }
    let mut v4 = false;
    let mut v6 = false;
    let mut interfaces = false;
    for r in &cfg.rlocs {
        match &r.source {
            RlocSource::Address(a) => {
                v4 |= a.is_ipv4();
                v6 |= a.is_ipv6();
            }
            RlocSource::Interface { v4: f4, v6: f6, .. } => {
                interfaces = true;
                v4 |= *f4;
                v6 |= *f6;
            }
        }
    }
    if !interfaces {
        return rlocs.iter().map(|r| r.address).collect();
    }
    let mut out = Vec::new();
    if v4 {
        out.push(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
    }
    if v6 && std::net::UdpSocket::bind((std::net::Ipv6Addr::UNSPECIFIED, 0)).is_ok() {
        out.push(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED));
    }
    out
}

/// Binds the control and data ports on every listen address (the RLOCs when none is
/// configured), joins the peer group's multicast address when the group uses it, and starts
/// a reader per control socket. The data port is bound once per worker: with several, the
/// sockets share the port (SO_REUSEPORT) and the kernel spreads the senders' flows over
/// them by address and port, so each flow stays on one worker, in order.
pub async fn open(cfg: &NodeConfig, rlocs: &[LocalRloc], workers: usize) -> anyhow::Result<Opened> {
    let (tx, control) = mpsc::channel::<ControlBatch>(256);
    let mut data: Vec<Vec<(SocketAddr, std::net::UdpSocket)>> =
        (0..workers).map(|_| Vec::new()).collect();
    let mut sockets = Sockets {
        by_local: HashMap::new(),
    };
    let listen = listen_addresses(cfg, rlocs);
    let multicast = match &cfg.mapping_system {
        MappingSystem::Push(g) => match g.delivery {
            Delivery::Multicast { ttl } => Some((g.group, ttl)),
            Delivery::Replicate => None,
        },
        MappingSystem::Pull(_) => None,
    };
    for ip in &listen {
        let local = SocketAddr::new(*ip, cfg.data_port);
        for w in data.iter_mut() {
            let s = bind_udp(local, workers > 1)?;
            // Which of our addresses each datagram came to: whom a peer reaches us at
            // (`dataplane::liveness`).
            if ip.is_unspecified() && !udp_io::enable_pktinfo(&s, ip.is_ipv6()) {
                warn!(%local, "cannot learn the local address of each datagram");
            }
            // A burst arriving while the worker is busy (a batch of TUN writes, or a flood
            // of garbage to 4341) waits in the kernel instead of pushing the tunnel's own
            // packets out (the kernel's default, about 200 KB, overflowed under a 20,000/s
            // garbage flood sent in 10 ms bursts, and dropped 8-13 % of GSO batches under
            // TCP load).
            widen_receive_buffer(&s, cfg.data_receive_buffer);
            w.push((local, s.into()));
        }
        let local = SocketAddr::new(*ip, cfg.control_port);
        let s = bind_udp(local, false)?;
        widen_receive_buffer(&s, CONTROL_RECEIVE_BUFFER);
        if ip.is_unspecified() {
            // Which of our addresses each datagram came to, and only the datagrams of the
            // groups this socket joins (a wildcard socket gets every group's by default).
            if !udp_io::enable_pktinfo(&s, ip.is_ipv6()) {
                warn!(%local, "cannot learn the local address of each datagram");
            }
            if ip.is_ipv4() {
                s.set_multicast_all_v4(false)?;
            } else {
                s.set_multicast_all_v6(false)?;
            }
        }
        if let Some((group, ttl)) = multicast
            && ip.is_ipv4() == group.is_ipv4()
        {
            // On the wildcard address the group's datagrams leave by the route to the
            // group, whatever our address is then.
            match ip {
                IpAddr::V4(a) => {
                    s.set_multicast_ttl_v4(u32::from(ttl))?;
                    if !a.is_unspecified() {
                        s.set_multicast_if_v4(a)?;
                    }
                }
                IpAddr::V6(a) => {
                    s.set_multicast_hops_v6(u32::from(ttl))?;
                    if !a.is_unspecified() {
                        s.set_multicast_if_v6(interfaces::index_of(IpAddr::V6(*a)).await?)?;
                    }
                }
            }
        }
        let sock = Arc::new(UdpSocket::from_std(s.into())?);
        spawn_reader(sock.clone(), local, tx.clone());
        sockets.by_local.insert(local, sock);
    }
    let mut joined = None;
    if let Some((group, _)) = multicast {
        // Join the group on the RLOC interface (or the configured one) and listen on G:4342.
        let addresses: Vec<IpAddr> = rlocs.iter().map(|r| r.address).collect();
        let ifindex = group_interface(cfg, &addresses, group).await?;
        let unspecified = match group {
            IpAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
        };
        if let Some(sock) = sockets
            .by_local
            .get(&SocketAddr::new(unspecified, cfg.control_port))
        {
            // On the wildcard address the control socket takes the group's datagrams
            // itself (IP_PKTINFO gives the group as their local address): a second socket on
            // G:4342 would need SO_REUSEADDR on both, which would let another process bind
            // the control port as well.
            join_group(socket2::SockRef::from(sock.as_ref()), group, ifindex)?;
            joined = Some(Joined {
                group,
                socket: SocketAddr::new(unspecified, cfg.control_port),
                ifindex,
            });
        } else {
            let local = SocketAddr::new(group, cfg.control_port);
            let s = bind_udp(local, true)?;
            widen_receive_buffer(&s, CONTROL_RECEIVE_BUFFER);
            join_group(socket2::SockRef::from(&s), group, ifindex)?;
            let sock = Arc::new(UdpSocket::from_std(s.into())?);
            spawn_reader(sock.clone(), local, tx.clone());
            sockets.by_local.insert(local, sock);
            joined = Some(Joined {
                group,
                socket: local,
                ifindex,
            });
        }
        info!(%group, ifindex, "joined the peer group");
    }
    Ok(Opened {
        sockets,
        control,
        data,
        joined,
    })
}
