//! Batched UDP for the LISP data plane (RFC 9300 §5.3), through `sendmsg` / `recvmsg` with
//! control messages:
//! - sends name the outer source address (IP_PKTINFO / IPV6_PKTINFO), TTL / hop limit and
//!   TOS / traffic class (both copied from the inner packet) with each call, and carry
//!   several equal-size datagrams to one destination in one call (UDP GSO, UDP_SEGMENT);
//! - a pool of sockets on ephemeral ports gives flows their own UDP source port (chosen by
//!   the flow hash), so the underlay's ECMP spreads them;
//! - receives on port 4341 take several coalesced datagrams at once (UDP GRO) and report
//!   their size.
//!
//! A kernel without GSO (or a route whose device cannot checksum it) answers a segmented
//! send with an error: the batch is then sent one datagram at a time, and GSO stays off.

use std::io::{self, IoSlice};
use std::mem::size_of;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, RawFd};

use socket2::{Domain, Protocol, Socket, Type};

/// How many UDP source ports the data plane sends from, per address family.
pub const SOURCE_PORTS: usize = 16;

/// At most this many datagrams in one GSO send (the kernel's UDP_MAX_SEGMENTS is 64 or more).
pub const MAX_SEGMENTS: usize = 64;

/// At most this many bytes in one GSO send (one UDP payload of the largest size).
pub const MAX_GSO_BYTES: usize = 65000;

/// The outer header fields a send sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outer {
    /// Our RLOC the packet leaves from (None: the kernel's choice).
    pub src: Option<IpAddr>,
    pub dst: SocketAddr,
    pub ttl: u8,
    pub tos: u8,
}

/// Send-only UDP sockets on ephemeral ports, one pool per address family.
pub struct DataSender {
    v4: Vec<Socket>,
    v6: Vec<Socket>,
    gso: bool,
}

fn open_pool(domain: Domain, n: usize) -> Vec<Socket> {
    let any: SocketAddr = if domain == Domain::IPV4 {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    (0..n)
        .map_while(|_| {
            let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP)).ok()?;
            if domain == Domain::IPV6 {
                s.set_only_v6(true).ok()?;
            }
            // Blocking sends: a full send buffer slows the sender down instead of dropping.
            let _ = s.set_send_buffer_size(4 << 20);
            s.bind(&any.into()).ok()?;
            Some(s)
        })
        .collect()
}

impl DataSender {
    pub fn open() -> DataSender {
        DataSender {
            v4: open_pool(Domain::IPV4, SOURCE_PORTS),
            v6: open_pool(Domain::IPV6, SOURCE_PORTS),
            gso: true,
        }
    }

    /// The source ports in use (for the log).
    pub fn ports(&self) -> Vec<u16> {
        self.v4
            .iter()
            .chain(&self.v6)
            .filter_map(|s| s.local_addr().ok()?.as_socket().map(|a| a.port()))
            .collect()
    }

    /// Whether segmented sends are still in use.
    pub fn gso(&self) -> bool {
        self.gso
    }

    /// Sends `data` to `outer.dst`: one datagram, or with `segment` several datagrams of that
    /// size (the last one may be shorter). `flow` picks the source port.
    pub fn send(
        &mut self,
        flow: u64,
        outer: &Outer,
        data: &[u8],
        segment: Option<usize>,
    ) -> io::Result<()> {
        self.send_gather(flow, outer, &[IoSlice::new(data)], segment)
    }

    /// [`send`](Self::send) of the datagrams gathered from `parts` (one `sendmsg`, the kernel
    /// copies from each part): either one part holding every datagram, or one part per
    /// datagram (the ITR's datagrams sealed in place in the TUN read buffers).
    pub fn send_gather(
        &mut self,
        flow: u64,
        outer: &Outer,
        parts: &[IoSlice<'_>],
        segment: Option<usize>,
    ) -> io::Result<()> {
        let pool = if outer.dst.is_ipv4() {
            &self.v4
        } else {
            &self.v6
        };
        if pool.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::AddrNotAvailable,
                "no UDP socket of the destination's family",
            ));
        }
        let fd = pool[(flow % pool.len() as u64) as usize].as_raw_fd();
        self.send_gather_on(fd, outer, parts, segment)
    }

    /// [`send_gather`](Self::send_gather) from the socket `fd` (the data port itself:
    /// what goes to an RTR, or from an RTR to a node behind a NAT, must leave from the port
    /// the NAT's binding knows, draft-ermagan-lisp-nat-traversal-19 §5.1.3).
    pub fn send_gather_on(
        &mut self,
        fd: RawFd,
        outer: &Outer,
        parts: &[IoSlice<'_>],
        segment: Option<usize>,
    ) -> io::Result<()> {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let segment = segment.filter(|s| *s < total);
        // One datagram at a time: the parts themselves, or one part cut at `seg`.
        let one_by_one = |seg: usize| match parts {
            [whole] => whole
                .chunks(seg)
                .try_for_each(|d| sendmsg(fd, outer, &[IoSlice::new(d)], None)),
            _ => parts
                .iter()
                .try_for_each(|d| sendmsg(fd, outer, std::slice::from_ref(d), None)),
        };
        match segment {
            Some(seg) if self.gso => match sendmsg(fd, outer, parts, Some(seg)) {
                Ok(()) => Ok(()),
                Err(e) if matches!(e.raw_os_error(), Some(libc::EIO | libc::EINVAL)) => {
                    tracing::info!("UDP GSO refused ({e}): sending one datagram at a time");
                    self.gso = false;
                    one_by_one(seg)
                }
                Err(e) => Err(e),
            },
            Some(seg) => one_by_one(seg),
            None => sendmsg(fd, outer, parts, None),
        }
    }
}

/// One control message into `buf` at `*at`; returns false when it does not fit.
fn put_cmsg<T: Copy>(buf: &mut [u8], at: &mut usize, level: i32, ty: i32, value: T) -> bool {
    // SAFETY: CMSG_SPACE / CMSG_LEN are arithmetic on the payload size.
    let (space, len) = unsafe {
        (
            libc::CMSG_SPACE(size_of::<T>() as u32) as usize,
            libc::CMSG_LEN(size_of::<T>() as u32) as usize,
        )
    };
    if *at + space > buf.len() {
        return false;
    }
    let hdr = libc::cmsghdr {
        cmsg_len: len as _,
        cmsg_level: level,
        cmsg_type: ty,
    };
    // SAFETY: the header and the value fit in buf[*at..*at + space] (checked above); the
    // writes are unaligned-safe; the payload starts CMSG_LEN(0) bytes after the header, as
    // CMSG_DATA would place it.
    unsafe {
        let p = buf.as_mut_ptr().add(*at);
        std::ptr::write_unaligned(p.cast::<libc::cmsghdr>(), hdr);
        let data = p.add(libc::CMSG_LEN(0) as usize);
        std::ptr::write_unaligned(data.cast::<T>(), value);
    }
    *at += space;
    true
}

/// The address a datagram leaves from, as its control message (IP_PKTINFO / IPV6_PKTINFO).
fn put_source(buf: &mut [u8], at: &mut usize, src: IpAddr) -> bool {
    match src {
        IpAddr::V4(s) => {
            let info = libc::in_pktinfo {
                ipi_ifindex: 0,
                ipi_spec_dst: libc::in_addr {
                    s_addr: u32::from(s).to_be(),
                },
                ipi_addr: libc::in_addr { s_addr: 0 },
            };
            put_cmsg(buf, at, libc::IPPROTO_IP, libc::IP_PKTINFO, info)
        }
        IpAddr::V6(s) => {
            let info = libc::in6_pktinfo {
                ipi6_addr: libc::in6_addr {
                    s6_addr: s.octets(),
                },
                ipi6_ifindex: 0,
            };
            put_cmsg(buf, at, libc::IPPROTO_IPV6, libc::IPV6_PKTINFO, info)
        }
    }
}

fn sockaddr(a: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: an all-zero sockaddr_storage is valid; the family-specific view written below
    // fits inside it.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match a {
        SocketAddr::V4(v4) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from(*v4.ip()).to_be(),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_in is smaller than sockaddr_storage.
            unsafe { std::ptr::write_unaligned((&raw mut ss).cast::<libc::sockaddr_in>(), sin) };
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(v6) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: v6.port().to_be(),
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: v6.ip().octets(),
                },
                sin6_scope_id: v6.scope_id(),
            };
            // SAFETY: sockaddr_in6 is smaller than sockaddr_storage.
            unsafe { std::ptr::write_unaligned((&raw mut ss).cast::<libc::sockaddr_in6>(), sin6) };
            size_of::<libc::sockaddr_in6>()
        }
    };
    (ss, len as libc::socklen_t)
}

fn from_sockaddr(ss: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(ss.ss_family) {
        libc::AF_INET => {
            // SAFETY: the kernel wrote a sockaddr_in for AF_INET.
            let sin: libc::sockaddr_in =
                unsafe { std::ptr::read_unaligned((ss as *const libc::sockaddr_storage).cast()) };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the kernel wrote a sockaddr_in6 for AF_INET6.
            let sin6: libc::sockaddr_in6 =
                unsafe { std::ptr::read_unaligned((ss as *const libc::sockaddr_storage).cast()) };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Control-message space: four messages of at most 20 bytes each, 8-byte aligned.
type Control = [u64; 16];

fn sendmsg(fd: RawFd, o: &Outer, parts: &[IoSlice<'_>], segment: Option<usize>) -> io::Result<()> {
    let (mut name, namelen) = sockaddr(o.dst);
    let mut control: Control = [0; 16];
    // SAFETY: reinterpreting the u64 array as bytes of the same size.
    let cbuf = unsafe {
        std::slice::from_raw_parts_mut(control.as_mut_ptr().cast::<u8>(), size_of::<Control>())
    };
    let mut at = 0;
    let ttl = i32::from(o.ttl.max(1));
    let tos = i32::from(o.tos);
    let source = o.src.filter(|s| s.is_ipv4() == o.dst.is_ipv4());
    let fits = source.is_none_or(|s| put_source(cbuf, &mut at, s))
        && match o.dst {
            SocketAddr::V4(_) => {
                put_cmsg(cbuf, &mut at, libc::IPPROTO_IP, libc::IP_TTL, ttl)
                    && put_cmsg(cbuf, &mut at, libc::IPPROTO_IP, libc::IP_TOS, tos)
            }
            SocketAddr::V6(_) => {
                put_cmsg(cbuf, &mut at, libc::IPPROTO_IPV6, libc::IPV6_HOPLIMIT, ttl)
                    && put_cmsg(cbuf, &mut at, libc::IPPROTO_IPV6, libc::IPV6_TCLASS, tos)
            }
        };
    let fits = fits
        && segment.is_none_or(|s| {
            put_cmsg(
                cbuf,
                &mut at,
                libc::SOL_UDP,
                libc::UDP_SEGMENT,
                u16::try_from(s).unwrap_or(u16::MAX),
            )
        });
    if !fits {
        return Err(io::Error::other("control messages do not fit"));
    }
    // SAFETY: an all-zero msghdr is valid; every pointer set below outlives the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&raw mut name).cast();
    msg.msg_namelen = namelen;
    // IoSlice is guaranteed ABI-compatible with struct iovec on Unix; the kernel only reads
    // the parts.
    msg.msg_iov = parts.as_ptr().cast_mut().cast();
    msg.msg_iovlen = parts.len() as _;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = at as _;
    // A route that is gone for an instant (the kernel removes a subnet's route and adds it
    // back when it promotes a secondary address, as an address that moves does) gets two
    // more tries, each after yielding the CPU (a destination with no route costs that
    // much more, never a wait).
    let mut unreachable_retries = 2;
    loop {
        // SAFETY: msg points at live buffers of the lengths it gives.
        let r = unsafe { libc::sendmsg(fd, &msg, 0) };
        if r >= 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => {}
            Some(libc::ENETUNREACH) if unreachable_retries > 0 => {
                unreachable_retries -= 1;
                std::thread::yield_now();
            }
            _ => return Err(e),
        }
    }
}

/// Asks the kernel to hand over coalesced datagrams (UDP GRO); false when it cannot.
pub fn enable_gro(sock: &impl AsRawFd) -> bool {
    set_int_option(sock, libc::SOL_UDP, libc::UDP_GRO, 1)
}

/// Sets an integer socket option; false when the kernel refused it.
pub fn set_int_option(
    sock: &impl AsRawFd,
    level: libc::c_int,
    option: libc::c_int,
    value: libc::c_int,
) -> bool {
    // SAFETY: setsockopt with a pointer to a live c_int of the size given.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            option,
            (&raw const value).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        ) == 0
    }
}

/// One `recvmsg` into `buf`: the length and the sender; `on_cmsg` sees each control message
/// the kernel wrote as (level, type, data pointer). Non-blocking sockets give WouldBlock.
fn recv_with(
    fd: RawFd,
    buf: &mut [u8],
    mut on_cmsg: impl FnMut(libc::c_int, libc::c_int, *const u8),
) -> io::Result<(usize, SocketAddr)> {
    // SAFETY: an all-zero sockaddr_storage is valid.
    let mut name: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut control: Control = [0; 16];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: an all-zero msghdr is valid; every pointer set below outlives the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&raw mut name).cast();
    msg.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = size_of::<Control>() as _;
    // SAFETY: msg points at live buffers of the lengths it gives.
    let n = unsafe { libc::recvmsg(fd, &raw mut msg, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let from = from_sockaddr(&name)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "sender of unknown family"))?;
    // SAFETY: walking the control messages the kernel wrote, within msg_controllen.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            on_cmsg((*c).cmsg_level, (*c).cmsg_type, libc::CMSG_DATA(c));
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok((n as usize, from))
}

/// What [`recv`] read: the length, the sender, for coalesced datagrams (UDP GRO) the size
/// of each (the last one may be shorter), and on a socket with [`enable_pktinfo`] the
/// local address they were sent to.
pub struct Received {
    pub len: usize,
    pub from: SocketAddr,
    pub segment: Option<usize>,
    pub local: Option<IpAddr>,
}

/// Receives into `buf` (see [`Received`]). Non-blocking sockets give WouldBlock.
pub fn recv(fd: RawFd, buf: &mut [u8]) -> io::Result<Received> {
    let mut segment = None;
    let mut local = None;
    let (len, from) = recv_with(fd, buf, |level, kind, data| {
        if level == libc::SOL_UDP && kind == libc::UDP_GRO {
            // SAFETY: UDP_GRO carries one int in the control message's data.
            let v: libc::c_int = unsafe { std::ptr::read_unaligned(data.cast()) };
            segment = usize::try_from(v).ok().filter(|s| *s > 0);
        }
        // SAFETY: the kernel wrote this control message of this level and type.
        if let Some(a) = unsafe { pktinfo_local(level, kind, data) } {
            local = Some(a);
        }
    })?;
    Ok(Received {
        len,
        from,
        segment,
        local,
    })
}

/// Reads many datagrams per system call (recvmmsg), into slots it keeps for reuse: the
/// control sockets' reader (a burst of Map-Requests costs one call per batch).
pub struct BatchReader {
    slots: Vec<u8>,
    names: Vec<libc::sockaddr_storage>,
    /// Control-message space per slot (the destination address, IP_PKTINFO /
    /// IPV6_PKTINFO, on a socket bound to the wildcard address).
    controls: Vec<Control>,
}

/// The largest datagram a [`BatchReader`] slot holds: a UDP datagram's payload.
const SLOT: usize = 65536;

impl BatchReader {
    /// A reader of up to `batch` datagrams per call (`batch` * 64 KB of slots).
    pub fn new(batch: usize) -> Self {
        let batch = batch.max(1);
        BatchReader {
            slots: vec![0; batch * SLOT],
            // SAFETY: an all-zero sockaddr_storage is valid.
            names: vec![unsafe { std::mem::zeroed() }; batch],
            controls: vec![[0; 16]; batch],
        }
    }

    /// Reads what the socket holds now, up to the batch, handing each datagram, its sender
    /// and, on a socket with [`enable_pktinfo`], the local address it was sent to, to
    /// `each`; returns how many (WouldBlock when none).
    pub fn read(
        &mut self,
        fd: RawFd,
        mut each: impl FnMut(SocketAddr, Option<IpAddr>, &[u8]),
    ) -> io::Result<usize> {
        let batch = self.names.len();
        let mut iovs: Vec<libc::iovec> = self
            .slots
            .chunks_mut(SLOT)
            .map(|s| libc::iovec {
                iov_base: s.as_mut_ptr().cast(),
                iov_len: s.len(),
            })
            .collect();
        let mut hdrs: Vec<libc::mmsghdr> = iovs
            .iter_mut()
            .zip(self.names.iter_mut())
            .zip(self.controls.iter_mut())
            .map(|((iov, name), control)| {
                // SAFETY: an all-zero mmsghdr is valid; the pointers set below outlive the
                // call.
                let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
                m.msg_hdr.msg_name = (name as *mut libc::sockaddr_storage).cast();
                m.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
                m.msg_hdr.msg_iov = iov;
                m.msg_hdr.msg_iovlen = 1;
                m.msg_hdr.msg_control = control.as_mut_ptr().cast();
                m.msg_hdr.msg_controllen = size_of::<Control>() as _;
                m
            })
            .collect();
        // SAFETY: hdrs holds `batch` headers pointing at live slots and names.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                hdrs.as_mut_ptr(),
                batch as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        for (i, h) in hdrs.iter().take(n).enumerate() {
            let len = (h.msg_len as usize).min(SLOT);
            let mut local = None;
            // SAFETY: walking the control messages the kernel wrote for this datagram,
            // within its msg_controllen.
            unsafe {
                let mut c = libc::CMSG_FIRSTHDR(&h.msg_hdr);
                while !c.is_null() {
                    local = local.or(pktinfo_local(
                        (*c).cmsg_level,
                        (*c).cmsg_type,
                        libc::CMSG_DATA(c),
                    ));
                    c = libc::CMSG_NXTHDR(&h.msg_hdr, c);
                }
            }
            if let Some(from) = from_sockaddr(&self.names[i]) {
                each(from, local, &self.slots[i * SLOT..i * SLOT + len]);
            }
        }
        Ok(n)
    }
}

/// Asks the kernel for the local address each datagram was sent to (IP_PKTINFO,
/// IPV6_RECVPKTINFO): a socket bound to the wildcard address learns which of our addresses
/// a peer used, as a socket bound to one address knows it by its binding. False when the
/// kernel refused.
pub fn enable_pktinfo(sock: &impl AsRawFd, v6: bool) -> bool {
    if v6 {
        set_int_option(sock, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, 1)
    } else {
        set_int_option(sock, libc::IPPROTO_IP, libc::IP_PKTINFO, 1)
    }
}

/// The local address in an IP_PKTINFO / IPV6_PKTINFO control message.
///
/// # Safety
/// `data` points at the control message's data, as the kernel wrote it for that level and
/// type.
unsafe fn pktinfo_local(level: libc::c_int, kind: libc::c_int, data: *const u8) -> Option<IpAddr> {
    if level == libc::IPPROTO_IP && kind == libc::IP_PKTINFO {
        // SAFETY: IP_PKTINFO carries an in_pktinfo (the caller's contract).
        let i: libc::in_pktinfo = unsafe { std::ptr::read_unaligned(data.cast()) };
        return Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(i.ipi_addr.s_addr))));
    }
    if level == libc::IPPROTO_IPV6 && kind == libc::IPV6_PKTINFO {
        // SAFETY: IPV6_PKTINFO carries an in6_pktinfo (the caller's contract).
        let i: libc::in6_pktinfo = unsafe { std::ptr::read_unaligned(data.cast()) };
        return Some(IpAddr::V6(Ipv6Addr::from(i.ipi6_addr.s6_addr)));
    }
    None
}

/// Sends each (destination, payload) with as few system calls as the kernel allows
/// (sendmmsg); returns how many left (WouldBlock when none could).
pub fn send_batch(fd: RawFd, datagrams: &[(SocketAddr, &[u8])]) -> io::Result<usize> {
    let sourced: Vec<(Option<IpAddr>, SocketAddr, &[u8])> =
        datagrams.iter().map(|(d, p)| (None, *d, *p)).collect();
    send_batch_from(fd, &sourced)
}

/// [`send_batch`] of (source, destination, payload): a datagram with a source leaves from
/// that address of ours (IP_PKTINFO / IPV6_PKTINFO), as a socket bound to the wildcard
/// address must be told.
pub fn send_batch_from(
    fd: RawFd,
    datagrams: &[(Option<IpAddr>, SocketAddr, &[u8])],
) -> io::Result<usize> {
    let names: Vec<(libc::sockaddr_storage, libc::socklen_t)> =
        datagrams.iter().map(|(_, a, _)| sockaddr(*a)).collect();
    let mut iovs: Vec<libc::iovec> = datagrams
        .iter()
        .map(|(_, _, p)| libc::iovec {
            iov_base: p.as_ptr() as *mut libc::c_void,
            iov_len: p.len(),
        })
        .collect();
    // Each datagram's source, when it has one of its destination's family.
    let mut controls: Vec<(Control, usize)> = datagrams
        .iter()
        .map(|(src, dst, _)| {
            let mut control: Control = [0; 16];
            let mut at = 0;
            if let Some(s) = src.filter(|s| s.is_ipv4() == dst.is_ipv4()) {
                // SAFETY: reinterpreting the u64 array as bytes of the same size.
                let cbuf = unsafe {
                    std::slice::from_raw_parts_mut(
                        control.as_mut_ptr().cast::<u8>(),
                        size_of::<Control>(),
                    )
                };
                put_source(cbuf, &mut at, s);
            }
            (control, at)
        })
        .collect();
    let mut hdrs: Vec<libc::mmsghdr> = iovs
        .iter_mut()
        .zip(names.iter())
        .zip(controls.iter_mut())
        .map(|((iov, (name, len)), (control, clen))| {
            // SAFETY: an all-zero mmsghdr is valid; the pointers set below outlive the call.
            let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
            m.msg_hdr.msg_name = (name as *const libc::sockaddr_storage) as *mut libc::c_void;
            m.msg_hdr.msg_namelen = *len;
            m.msg_hdr.msg_iov = iov;
            m.msg_hdr.msg_iovlen = 1;
            if *clen > 0 {
                m.msg_hdr.msg_control = control.as_mut_ptr().cast();
                m.msg_hdr.msg_controllen = *clen as _;
            }
            m
        })
        .collect();
    // SAFETY: hdrs holds one header per datagram, pointing at live payloads and names.
    let n = unsafe {
        libc::sendmmsg(
            fd,
            hdrs.as_mut_ptr(),
            hdrs.len() as libc::c_uint,
            libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A receiver on loopback, a sender, and the outer header toward the receiver.
    fn setup() -> (std::net::UdpSocket, DataSender, Outer) {
        let r = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        r.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        let o = Outer {
            src: None,
            dst: r.local_addr().unwrap(),
            ttl: 64,
            tos: 0,
        };
        (r, DataSender::open(), o)
    }

    #[test]
    fn one_datagram_leaves_from_a_pool_port_with_the_given_source() {
        let (r, mut s, mut o) = setup();
        o.src = Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
        (o.ttl, o.tos) = (7, 0xb8);
        // Ask the kernel for the TTL and TOS each datagram arrived with.
        for opt in [libc::IP_RECVTTL, libc::IP_RECVTOS] {
            assert!(set_int_option(&r, libc::IPPROTO_IP, opt, 1));
        }
        s.send(3, &o, b"hello", None).unwrap();
        let (data, from, ttl, tos) = recv_ttl_tos(&r);
        assert_eq!(data, b"hello");
        assert!(s.ports().contains(&from.port()));
        assert_eq!(from.ip(), IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!((ttl, tos), (Some(7), Some(0xb8)));
    }

    /// One datagram with the TTL and TOS it arrived with (IP_RECVTTL / IP_RECVTOS).
    fn recv_ttl_tos(r: &std::net::UdpSocket) -> (Vec<u8>, SocketAddr, Option<u8>, Option<u8>) {
        let mut buf = [0u8; 64];
        let (mut ttl, mut tos) = (None, None);
        let (n, from) = recv_with(r.as_raw_fd(), &mut buf, |level, kind, data| {
            // SAFETY: IP_TTL carries an int, IP_TOS one byte.
            match (level, kind) {
                (libc::IPPROTO_IP, libc::IP_TTL) => {
                    let v: libc::c_int = unsafe { std::ptr::read_unaligned(data.cast()) };
                    ttl = Some(v as u8);
                }
                (libc::IPPROTO_IP, libc::IP_TOS) => tos = Some(unsafe { *data }),
                _ => {}
            }
        })
        .unwrap();
        (buf[..n].to_vec(), from, ttl, tos)
    }

    #[test]
    fn batches_go_out_and_come_in_whole() {
        let r = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = r.local_addr().unwrap();
        let payloads: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i; 10 + usize::from(i)]).collect();
        let batch: Vec<(SocketAddr, &[u8])> = payloads.iter().map(|p| (to, &p[..])).collect();
        assert_eq!(send_batch(s.as_raw_fd(), &batch).unwrap(), 40);
        let mut reader = BatchReader::new(16);
        let mut got = Vec::new();
        while got.len() < 40 {
            let n = reader
                .read(r.as_raw_fd(), |from, local, d| {
                    assert_eq!(from, s.local_addr().unwrap());
                    assert_eq!(local, None, "no IP_PKTINFO asked for");
                    got.push(d.to_vec());
                })
                .unwrap();
            assert!(n <= 16);
        }
        assert_eq!(got, payloads);
        let e = reader.read(r.as_raw_fd(), |_, _, _| {}).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
    }

    /// A socket on the wildcard address learns which of our addresses each datagram was
    /// sent to, and its datagrams leave from the source each is given (127.0.0.1 and
    /// 127.0.0.2 are both ours on loopback), one sendmmsg for all.
    #[test]
    fn a_wildcard_socket_learns_the_local_address_and_sends_from_the_one_given() {
        let w = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        assert!(enable_pktinfo(&w, false));
        let port = w.local_addr().unwrap().port();
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        peer.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        for to in ["127.0.0.1", "127.0.0.2"] {
            let to: IpAddr = to.parse().unwrap();
            peer.send_to(b"req", SocketAddr::new(to, port)).unwrap();
        }
        let mut reader = BatchReader::new(4);
        let mut locals = Vec::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while locals.len() < 2 && std::time::Instant::now() < deadline {
            let _ = reader.read(w.as_raw_fd(), |from, local, d| {
                assert_eq!((from, d), (peer.local_addr().unwrap(), &b"req"[..]));
                locals.push(local);
            });
        }
        let ours: Vec<Option<IpAddr>> = ["127.0.0.1", "127.0.0.2"]
            .iter()
            .map(|a| a.parse().ok())
            .collect();
        assert_eq!(locals, ours);
        let dst = peer.local_addr().unwrap();
        let replies: Vec<(Option<IpAddr>, SocketAddr, &[u8])> =
            ours.iter().map(|src| (*src, dst, &b"reply"[..])).collect();
        assert_eq!(send_batch_from(w.as_raw_fd(), &replies).unwrap(), 2);
        let mut buf = [0u8; 16];
        let mut froms = Vec::new();
        for _ in 0..2 {
            let (n, from) = peer.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"reply");
            froms.push(Some(from.ip()));
        }
        assert_eq!(froms, ours, "each reply from the address it was given");
        // The data port's reader learns it too.
        w.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        peer.send_to(b"data", SocketAddr::new(IpAddr::from([127, 0, 0, 2]), port))
            .unwrap();
        let mut buf = [0u8; 64];
        let r = recv(w.as_raw_fd(), &mut buf).unwrap();
        assert_eq!((&buf[..r.len], r.local), (&b"data"[..], ours[1]));
    }

    #[test]
    fn flows_spread_over_several_source_ports() {
        let (r, mut s, o) = setup();
        let mut ports = std::collections::HashSet::new();
        for flow in 0..SOURCE_PORTS as u64 {
            s.send(flow, &o, b"x", None).unwrap();
            let mut buf = [0u8; 8];
            ports.insert(r.recv_from(&mut buf).unwrap().1.port());
        }
        assert_eq!(ports.len(), SOURCE_PORTS);
    }

    /// A segmented send arrives as separate datagrams of the segment size (GSO, or one by
    /// one where the kernel refuses it), and a GRO receiver reads them back with their size.
    #[test]
    fn segmented_send_arrives_as_datagrams_and_gro_reports_their_size() {
        let (r, mut s, o) = setup();
        let gro = enable_gro(&r);
        let data: Vec<u8> = (0..1000u32).map(|i| (i / 300) as u8).collect();
        s.send(1, &o, &data, Some(300)).unwrap();
        let mut got = Vec::new();
        let mut buf = vec![0u8; 65536];
        let mut reads = 0;
        while got.len() < 4 {
            let Received {
                len: n, segment, ..
            } = recv(r.as_raw_fd(), &mut buf).unwrap();
            reads += 1;
            let seg = segment.unwrap_or(n);
            got.extend(buf[..n].chunks(seg).map(<[u8]>::to_vec));
        }
        if gro && s.gso() {
            // One send, one receive: the datagrams stayed together end to end.
            assert_eq!(reads, 1);
        }
        assert_eq!(
            got.iter().map(Vec::len).collect::<Vec<_>>(),
            [300, 300, 300, 100]
        );
        assert!(got[3].iter().all(|b| *b == 3));
    }
}
