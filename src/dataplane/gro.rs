//! Receive offload for the TUN device: the TCP segments an ETR decapsulates from one batch
//! are coalesced into super-packets that the kernel takes in one write (a virtio-net
//! header with GSO, as a NIC's GRO hands the stack one large segment), without copying a
//! byte: the coalescer only plans, and the writer hands the kernel the head packet and
//! the payloads of the segments after it as one gather list (`writev`).
//!
//! The rules are the kernel's TCP GRO (net/ipv4/tcp_offload.c `tcp_gro_receive`, the same
//! ones wireguard-go and tun-rs apply): only segments with ACK, or ACK and PSH, set and a
//! payload; same addresses, ports, acknowledgement number, TCP options, IP TOS / TTL / DF
//! (IPv6: traffic class, flow label, hop limit); each segment follows the previous one in
//! sequence; all but the last the same size and the last no larger; nothing after a PSH;
//! at most 65,535 bytes. A segment whose TCP checksum (RFC 9293 §3.1) is wrong is never
//! merged: merging would hide the error, since the kernel trusts the checksum of a
//! super-packet (`VIRTIO_NET_HDR_F_NEEDS_CSUM`, the field holding only the pseudo-header
//! sum). Packets of one flow keep their order: a segment that cannot join its flow's open
//! super-packet closes it.
//!
//! The virtio-net header is `struct virtio_net_hdr` (the virtio 1.x specification,
//! §5.1.6, "legacy" layout, the host's byte order, as Linux's TUN uses it without
//! TUNSETVNETLE / TUNSETVNETBE).

use super::flow::RlocHasher;
use std::collections::HashMap;
use std::hash::BuildHasherDefault;

/// Bytes of the virtio-net header before each packet written to a device with offloads.
pub const VIRTIO_HDR_LEN: usize = 10;
const VIRTIO_NET_HDR_F_NEEDS_CSUM: u8 = 1;
const VIRTIO_NET_HDR_GSO_TCPV4: u8 = 1;
const VIRTIO_NET_HDR_GSO_TCPV6: u8 = 4;

/// The most segments one super-packet takes (the gather list of one write).
pub const MAX_SEGMENTS: usize = 64;
/// The largest super-packet (IPv4 total length; IPv6 payload length stays under it too).
const MAX_LEN: usize = 65_535;

const TCP: u8 = 6;
const TCP_ACK: u8 = 0x10;
const TCP_PSH: u8 = 0x08;

/// Where a packet, or a payload, lies: which of the caller's buffers and the bytes in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub buf: usize,
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
}

/// A TCP connection seen from the packet: addresses and ports (IPv4 addresses in the
/// first 8 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Connection {
    addrs: [u8; 32],
    ports: u32,
    v6: bool,
}

/// What must be equal in every segment of a super-packet besides the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Shape {
    iph_len: usize,
    tcph_len: usize,
    ack: u32,
    /// IPv4 TOS, TTL and flags byte; IPv6 version / class / flow label and hop limit.
    ip_fields: [u8; 5],
    options: [u8; 40],
}

/// What a mergeable TCP segment told us.
struct Segment {
    conn: Connection,
    shape: Shape,
    seq: u32,
    psh: bool,
    payload: usize,
}

/// One write into the device: a packet alone, or a super-packet made of `head` and the
/// payloads after it.
#[derive(Debug, Clone)]
pub struct Write {
    head: Span,
    payloads: Vec<Span>,
    /// Open to more segments (only while its flow's entry points at it).
    merge: Option<MergeState>,
}

#[derive(Debug, Clone)]
struct MergeState {
    v6: bool,
    shape: Shape,
    /// Payload bytes of the head: every segment after it has at most this many.
    gso_size: usize,
    /// The last segment's payload bytes.
    last: usize,
    /// The IP packet's length so far.
    total: usize,
    next_seq: u32,
    psh: bool,
}

impl Write {
    /// The first packet, whole (its IP and TCP headers are those of the super-packet).
    pub fn head(&self) -> Span {
        self.head
    }

    /// The payloads of the segments merged after the head, in order.
    pub fn payloads(&self) -> &[Span] {
        &self.payloads
    }

    /// How many packets this write carries.
    pub fn packets(&self) -> usize {
        1 + self.payloads.len()
    }

    fn merged(&self) -> Option<&MergeState> {
        self.merge.as_ref().filter(|_| !self.payloads.is_empty())
    }

    /// The virtio-net header to write before the head: zero for a packet alone (no GSO,
    /// its checksum as it came), GSO TCPv4 / TCPv6 with the checksum left to the kernel
    /// for a super-packet.
    pub fn virtio_header(&self) -> [u8; VIRTIO_HDR_LEN] {
        let mut h = [0u8; VIRTIO_HDR_LEN];
        if let Some(m) = self.merged() {
            h[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM;
            h[1] = if m.v6 {
                VIRTIO_NET_HDR_GSO_TCPV6
            } else {
                VIRTIO_NET_HDR_GSO_TCPV4
            };
            let put = |h: &mut [u8; VIRTIO_HDR_LEN], at: usize, v: usize| {
                h[at..at + 2].copy_from_slice(&(v as u16).to_ne_bytes());
            };
            put(&mut h, 2, m.shape.iph_len + m.shape.tcph_len); // hdr_len
            put(&mut h, 4, m.gso_size); // gso_size
            put(&mut h, 6, m.shape.iph_len); // csum_start
            put(&mut h, 8, 16); // csum_offset: the TCP checksum field
        }
        h
    }

    /// Rewrites the head's headers for the whole super-packet: the IP length (and the
    /// IPv4 header checksum), PSH when the last segment had it, and the TCP checksum field
    /// holding the pseudo-header sum the kernel completes. Nothing for a packet alone.
    /// `head` is the bytes at [`Write::head`].
    pub fn patch_head(&self, head: &mut [u8]) {
        let Some(m) = self.merged() else {
            return;
        };
        let iph_len = m.shape.iph_len;
        if head.len() < iph_len + m.shape.tcph_len {
            return;
        }
        let total = m.total as u16;
        let tcp_len = (m.total - iph_len) as u16;
        let pseudo = if m.v6 {
            head[4..6].copy_from_slice(&tcp_len.to_be_bytes());
            sum(&head[8..40], u64::from(TCP) + u64::from(tcp_len))
        } else {
            head[2..4].copy_from_slice(&total.to_be_bytes());
            head[10..12].fill(0);
            let c = !fold(sum(&head[..iph_len], 0));
            head[10..12].copy_from_slice(&c.to_be_bytes());
            sum(&head[12..20], u64::from(TCP) + u64::from(tcp_len))
        };
        let t = iph_len;
        if m.psh {
            head[t + 13] |= TCP_PSH;
        }
        head[t + 16..t + 18].copy_from_slice(&fold(pseudo).to_be_bytes());
    }
}

/// Plans the writes of one batch of packets for one device. Reused batch after batch: it
/// keeps its tables, so the steady state allocates nothing.
pub struct Coalescer {
    offload: bool,
    writes: Vec<Write>,
    used: usize,
    open: HashMap<Connection, usize, BuildHasherDefault<RlocHasher>>,
}

impl Coalescer {
    /// `offload`: whether the device takes virtio-net headers (and so super-packets).
    pub fn new(offload: bool) -> Coalescer {
        Coalescer {
            offload,
            writes: Vec::new(),
            used: 0,
            open: HashMap::default(),
        }
    }

    /// Forgets the last batch's plan.
    pub fn clear(&mut self) {
        self.used = 0;
        self.open.clear();
    }

    /// The writes planned so far, in the order they go to the device.
    pub fn writes(&self) -> &[Write] {
        &self.writes[..self.used]
    }

    /// Whether the device takes virtio-net headers.
    pub fn offload(&self) -> bool {
        self.offload
    }

    /// Takes the next packet to be written; `packet` is the bytes at `span`.
    pub fn push(&mut self, span: Span, packet: &[u8]) {
        if !self.offload {
            self.alone(span);
            return;
        }
        let seg = match segment(packet) {
            Ok(s) => s,
            Err(Some(conn)) => {
                // TCP that cannot merge: after it, its connection starts afresh.
                self.open.remove(&conn);
                self.alone(span);
                return;
            }
            Err(None) => {
                self.alone(span);
                return;
            }
        };
        if let Some(&w) = self.open.get(&seg.conn)
            && self.append(w, span, &seg)
        {
            return;
        }
        let w = self.alone(span);
        let conn = seg.conn;
        self.writes[w].merge = Some(MergeState {
            v6: conn.v6,
            gso_size: seg.payload,
            last: seg.payload,
            total: packet.len(),
            next_seq: seg.seq.wrapping_add(seg.payload as u32),
            psh: seg.psh,
            shape: seg.shape,
        });
        self.open.insert(conn, w);
    }

    /// A new write of one packet; its index.
    fn alone(&mut self, span: Span) -> usize {
        if self.used == self.writes.len() {
            self.writes.push(Write {
                head: span,
                payloads: Vec::new(),
                merge: None,
            });
        } else {
            let w = &mut self.writes[self.used];
            w.head = span;
            w.payloads.clear();
            w.merge = None;
        }
        self.used += 1;
        self.used - 1
    }

    /// Appends `seg` to write `w` when the rules allow it.
    fn append(&mut self, w: usize, span: Span, seg: &Segment) -> bool {
        let write = &mut self.writes[w];
        let Some(m) = write.merge.as_mut() else {
            return false;
        };
        let fits = m.shape == seg.shape
            && m.next_seq == seg.seq
            && !m.psh
            && m.last == m.gso_size
            && seg.payload <= m.gso_size
            && m.total + seg.payload <= MAX_LEN
            && write.payloads.len() + 1 < MAX_SEGMENTS;
        if !fits {
            return false;
        }
        let start = span.end - seg.payload;
        write.payloads.push(Span { start, ..span });
        m.last = seg.payload;
        m.total += seg.payload;
        m.next_seq = seg.seq.wrapping_add(seg.payload as u32);
        m.psh = seg.psh;
        true
    }
}

/// A TCP segment that may merge, or why not: `Err(Some(conn))` for TCP of a known
/// connection that may not (no payload, other flags, a bad checksum...), `Err(None)` for
/// anything else.
fn segment(p: &[u8]) -> Result<Segment, Option<Connection>> {
    let first = *p.first().ok_or(None)?;
    let mut addrs = [0u8; 32];
    let mut ip_fields = [0u8; 5];
    let (iph_len, v6) = match first >> 4 {
        4 => {
            let ihl = usize::from(first & 0x0f) * 4;
            if ihl < 20
                || p.len() < ihl + 20
                || p[9] != TCP
                || usize::from(u16::from_be_bytes([p[2], p[3]])) != p.len()
                || u16::from_be_bytes([p[6], p[7]]) & 0x3fff != 0
            {
                return Err(None);
            }
            addrs[..8].copy_from_slice(&p[12..20]);
            ip_fields.copy_from_slice(&[p[1], p[8], p[6] & 0xe0, 0, 0]);
            (ihl, false)
        }
        6 => {
            if p.len() < 60
                || p[6] != TCP
                || usize::from(u16::from_be_bytes([p[4], p[5]])) != p.len() - 40
            {
                return Err(None);
            }
            addrs.copy_from_slice(&p[8..40]);
            ip_fields.copy_from_slice(&[p[0], p[1], p[2], p[3], p[7]]);
            (40, true)
        }
        _ => return Err(None),
    };
    let t = &p[iph_len..];
    let conn = Connection {
        addrs,
        ports: u32::from_be_bytes([t[0], t[1], t[2], t[3]]),
        v6,
    };
    let tcph_len = usize::from(t[12] >> 4) * 4;
    let flags = t[13];
    if tcph_len < 20
        || t.len() <= tcph_len
        || (flags != TCP_ACK && flags != TCP_ACK | TCP_PSH)
        || p.len() > MAX_LEN
    {
        return Err(Some(conn));
    }
    let tcp_len = t.len() as u64;
    let pseudo = if v6 {
        sum(&p[8..40], u64::from(TCP) + tcp_len)
    } else {
        sum(&p[12..20], u64::from(TCP) + tcp_len)
    };
    if fold(sum(t, pseudo)) != 0xffff {
        return Err(Some(conn));
    }
    let mut options = [0u8; 40];
    options[..tcph_len - 20].copy_from_slice(&t[20..tcph_len]);
    Ok(Segment {
        conn,
        shape: Shape {
            iph_len,
            tcph_len,
            ack: u32::from_be_bytes([t[8], t[9], t[10], t[11]]),
            ip_fields,
            options,
        },
        seq: u32::from_be_bytes([t[4], t[5], t[6], t[7]]),
        psh: flags & TCP_PSH != 0,
        payload: t.len() - tcph_len,
    })
}

/// The ones' complement sum (RFC 1071) of `data` added to `acc`, unfolded: big-endian
/// 32-bit words into 64 bits, which cannot overflow for any packet.
fn sum(data: &[u8], mut acc: u64) -> u64 {
    let mut words = data.chunks_exact(4);
    for w in &mut words {
        acc += u64::from(u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
    }
    let rest = words.remainder();
    let mut tail = [0u8; 4];
    tail[..rest.len()].copy_from_slice(rest);
    acc + u64::from(u32::from_be_bytes(tail))
}

/// Folds an unfolded sum to 16 bits.
fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// An IPv4 or IPv6 TCP segment to host `dst` (10.0.0.dst / fd00::dst) built by
    /// etherparse, an oracle independent of this module's checksum code; `flags` takes
    /// ACK, PSH and FIN.
    fn tcp_to(v6: bool, dst: u8, seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
        let ip = if v6 {
            let mut d = [0u8; 16];
            d[0] = 0xfd;
            d[15] = dst;
            let mut s = d;
            s[15] = 1;
            etherparse::PacketBuilder::ipv6(s, d, 64)
        } else {
            etherparse::PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, dst], 64)
        };
        let mut t = ip.tcp(40000, 5201, seq, 512);
        if flags & TCP_ACK != 0 {
            t = t.ack(7);
        }
        if flags & TCP_PSH != 0 {
            t = t.psh();
        }
        if flags & 0x01 != 0 {
            t = t.fin();
        }
        let mut p = Vec::new();
        t.write(&mut p, payload).expect("segment");
        p
    }

    fn tcp(v6: bool, seq: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
        tcp_to(v6, 2, seq, flags, payload)
    }

    /// Plans `packets` (one per buffer) and returns the coalescer and the buffers.
    fn plan(packets: Vec<Vec<u8>>) -> (Coalescer, Vec<Vec<u8>>) {
        let mut c = Coalescer::new(true);
        for (i, p) in packets.iter().enumerate() {
            c.push(
                Span {
                    buf: i,
                    start: 0,
                    end: p.len(),
                },
                p,
            );
        }
        (c, packets)
    }

    /// What the kernel receives for write `w`: the patched head and the payloads after it.
    fn assemble(w: &Write, bufs: &mut [Vec<u8>]) -> Vec<u8> {
        let h = w.head();
        w.patch_head(&mut bufs[h.buf][h.start..h.end]);
        let mut out = bufs[h.buf][h.start..h.end].to_vec();
        for s in w.payloads() {
            out.extend_from_slice(&bufs[s.buf][s.start..s.end]);
        }
        out
    }

    /// The kernel's view of a super-packet: it completes the TCP checksum from the
    /// pseudo-header sum in the field, and the result must be a valid segment.
    fn completed(mut p: Vec<u8>, iph: usize) -> Vec<u8> {
        let c = !fold(sum(&p[iph..], 0));
        p[iph + 16..iph + 18].copy_from_slice(&c.to_be_bytes());
        p
    }

    #[test]
    fn in_order_segments_become_one_super_packet() {
        for v6 in [false, true] {
            let iph = if v6 { 40 } else { 20 };
            let segs = vec![
                tcp(v6, 1000, TCP_ACK, &[1; 100]),
                tcp(v6, 1100, TCP_ACK, &[2; 100]),
                tcp(v6, 1200, TCP_ACK | TCP_PSH, &[3; 60]),
            ];
            let (c, mut bufs) = plan(segs);
            assert_eq!(c.writes().len(), 1);
            let w = c.writes()[0].clone();
            assert_eq!(w.packets(), 3);
            let h = w.virtio_header();
            assert_eq!(h[0], VIRTIO_NET_HDR_F_NEEDS_CSUM);
            assert_eq!(h[1], if v6 { 4 } else { 1 });
            assert_eq!(u16::from_ne_bytes([h[2], h[3]]) as usize, iph + 20);
            assert_eq!(u16::from_ne_bytes([h[4], h[5]]), 100);
            assert_eq!(u16::from_ne_bytes([h[6], h[7]]) as usize, iph);
            assert_eq!(u16::from_ne_bytes([h[8], h[9]]), 16);
            let p = completed(assemble(&w, &mut bufs), iph);
            // The one segment the kernel sees: every payload byte in order, PSH, lengths
            // and checksums right.
            let mut payload = vec![1u8; 100];
            payload.extend_from_slice(&[2; 100]);
            payload.extend_from_slice(&[3; 60]);
            assert_eq!(p, tcp(v6, 1000, TCP_ACK | TCP_PSH, &payload));
        }
    }

    #[test]
    fn a_packet_alone_is_written_as_it_came() {
        let one = tcp(false, 5, TCP_ACK, &[9; 50]);
        let (c, mut bufs) = plan(vec![one.clone()]);
        let w = c.writes()[0].clone();
        assert_eq!(w.virtio_header(), [0; VIRTIO_HDR_LEN]);
        assert_eq!(assemble(&w, &mut bufs), one);
    }

    #[test]
    fn what_may_not_merge_stays_alone_and_in_order() {
        let a = tcp(false, 0, TCP_ACK, &[1; 100]);
        let gap = tcp(false, 150, TCP_ACK, &[2; 100]); // not adjacent
        let after_gap = tcp(false, 250, TCP_ACK, &[3; 100]);
        let mut bad = tcp(false, 350, TCP_ACK, &[4; 100]);
        bad[60] ^= 1; // checksum no longer right
        let next = tcp(false, 450, TCP_ACK, &[5; 100]);
        let fin = tcp(false, 550, TCP_ACK | 0x01, &[6; 100]);
        let after_fin = tcp(false, 650, TCP_ACK, &[7; 100]);
        let udp = {
            let mut u = Vec::new();
            etherparse::PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
                .udp(40000, 5201)
                .write(&mut u, &[0; 8])
                .expect("datagram");
            u
        };
        let (c, _) = plan(vec![a, gap, after_gap, bad, next, fin, after_fin, udp]);
        let shape: Vec<(usize, usize)> = c
            .writes()
            .iter()
            .map(|w| (w.head().buf, w.packets()))
            .collect();
        // a | gap+after_gap | bad | next | fin | after_fin | udp
        assert_eq!(
            shape,
            vec![(0, 1), (1, 2), (3, 1), (4, 1), (5, 1), (6, 1), (7, 1)]
        );
    }

    #[test]
    fn a_smaller_segment_ends_the_super_packet_and_psh_too() {
        let (c, _) = plan(vec![
            tcp(false, 0, TCP_ACK, &[1; 100]),
            tcp(false, 100, TCP_ACK, &[1; 40]),
            tcp(false, 140, TCP_ACK, &[1; 40]),
            tcp(false, 180, TCP_ACK | TCP_PSH, &[1; 40]),
            tcp(false, 220, TCP_ACK, &[1; 40]),
            tcp(false, 260, TCP_ACK, &[1; 60]),
        ]);
        let shape: Vec<usize> = c.writes().iter().map(Write::packets).collect();
        assert_eq!(shape, vec![2, 2, 1, 1]);
    }

    #[test]
    fn flows_merge_apart_and_the_size_stays_bounded() {
        let mut pkts = Vec::new();
        for i in 0..80u32 {
            pkts.push(tcp(false, i * 1400, TCP_ACK, &[i as u8; 1400]));
            pkts.push(tcp_to(false, 3, i * 1400, TCP_ACK, &[0; 1400]));
        }
        let (c, mut bufs) = plan(pkts);
        let w = c.writes().to_vec();
        // 80 segments of 1,400 bytes per flow: 46 fit under 65,535 bytes, 34 follow.
        let shape: Vec<usize> = w.iter().map(Write::packets).collect();
        assert_eq!(shape, vec![46, 46, 34, 34]);
        let first = completed(assemble(&w[0], &mut bufs), 20);
        assert!(first.len() <= MAX_LEN);
        assert_eq!(first[40..40 + 1400], [0u8; 1400]);
        assert_eq!(first[40 + 1400..40 + 2800], [1u8; 1400]);
    }

    #[test]
    fn without_offload_every_packet_is_alone() {
        let mut c = Coalescer::new(false);
        for i in 0..3 {
            let p = tcp(false, i * 10, TCP_ACK, &[0; 10]);
            c.push(
                Span {
                    buf: i as usize,
                    start: 0,
                    end: p.len(),
                },
                &p,
            );
        }
        assert_eq!(c.writes().len(), 3);
        c.clear();
        assert!(c.writes().is_empty());
    }

    proptest! {
        /// Whatever arrives, nothing panics and every byte of every packet reaches the
        /// device exactly once, heads whole and payloads from their packets' ends.
        #[test]
        fn every_packet_is_written_once(
            packets in proptest::collection::vec(
                prop_oneof![
                    proptest::collection::vec(any::<u8>(), 0..120),
                    (any::<bool>(), 0u32..4, any::<bool>(), 0usize..40)
                        .prop_map(|(v6, n, psh, len)| {
                            let flags = if psh { TCP_ACK | TCP_PSH } else { TCP_ACK };
                            tcp(v6, n * 20, flags, &vec![n as u8; len])
                        }),
                ],
                0..40,
            )
        ) {
            let (c, bufs) = plan(packets);
            let mut seen = vec![0usize; bufs.len()];
            for w in c.writes() {
                let h = w.head();
                prop_assert_eq!((h.start, h.end), (0, bufs[h.buf].len()));
                seen[h.buf] += 1;
                for s in w.payloads() {
                    prop_assert_eq!(s.end, bufs[s.buf].len());
                    prop_assert!(s.start <= s.end);
                    seen[s.buf] += 1;
                }
                let mut head = bufs[h.buf].clone();
                w.patch_head(&mut head);
            }
            prop_assert!(seen.iter().all(|&n| n == 1));
        }
    }
}
