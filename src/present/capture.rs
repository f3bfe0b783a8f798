//! Reading LISP datagrams out of pcap and pcapng files (for `decent decode --pcap`).

use std::net::IpAddr;

use anyhow::{Context, bail};
use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use pcap_file::DataLink;
use pcap_file::pcap::PcapReader;
use pcap_file::pcapng::{Block, PcapNgReader};

use crate::wire::{CONTROL_PORT, DATA_PORT};

/// One UDP datagram to or from a LISP port.
#[derive(Debug, Clone)]
pub struct Datagram {
    pub frame: u64,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    pub payload: Vec<u8>,
}

impl Datagram {
    /// A LISP data packet (to UDP 4341, or from it to anything but the control port);
    /// otherwise a control message.
    pub fn is_data(&self) -> bool {
        self.dport == DATA_PORT || (self.sport == DATA_PORT && self.dport != CONTROL_PORT)
    }
}

/// What a frame of the capture holds, as far as LISP is concerned.
#[derive(Debug, Clone)]
pub enum FrameItem {
    Lisp(Datagram),
    /// A frame skipped for a reason worth telling (an ICMP error quoting a LISP packet, an
    /// unreadable frame).
    Note {
        frame: u64,
        text: String,
    },
}

fn is_lisp_port(p: u16) -> bool {
    p == DATA_PORT || p == CONTROL_PORT
}

/// Reads every frame of a pcap or pcapng file and keeps the LISP ones.
pub fn read_capture(path: &std::path::Path) -> anyhow::Result<Vec<FrameItem>> {
    let data = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut items = Vec::new();
    let mut frame = 0u64;
    if data.starts_with(&[0x0a, 0x0d, 0x0d, 0x0a]) {
        let mut r = PcapNgReader::new(&data[..]).context("not a readable pcapng file")?;
        let mut links: Vec<DataLink> = Vec::new();
        while let Some(block) = r.next_block() {
            let block = match block {
                Ok(b) => b,
                Err(e) => {
                    items.push(FrameItem::Note {
                        frame: frame + 1,
                        text: format!("capture ends with an unreadable block: {e}"),
                    });
                    break;
                }
            };
            let packet = match block {
                Block::SectionHeader(_) => {
                    links.clear();
                    None
                }
                Block::InterfaceDescription(i) => {
                    links.push(i.linktype);
                    None
                }
                Block::EnhancedPacket(p) => Some((p.interface_id, p.data)),
                Block::SimplePacket(p) => Some((0, p.data)),
                Block::Packet(p) => Some((u32::from(p.interface_id), p.data)),
                _ => None,
            };
            if let Some((iface, data)) = packet {
                frame += 1;
                let link = links
                    .get(iface as usize)
                    .copied()
                    .unwrap_or(DataLink::ETHERNET);
                classify(frame, link, &data, &mut items);
            }
        }
    } else {
        let mut r = match PcapReader::new(&data[..]) {
            Ok(r) => r,
            Err(e) => bail!(
                "{} is neither a pcap nor a pcapng file: {e}",
                path.display()
            ),
        };
        let link = r.header().datalink;
        while let Some(p) = r.next_packet() {
            frame += 1;
            match p {
                Ok(p) => classify(frame, link, &p.data, &mut items),
                Err(e) => {
                    items.push(FrameItem::Note {
                        frame,
                        text: format!("capture ends with an unreadable record: {e}"),
                    });
                    break;
                }
            }
        }
    }
    Ok(items)
}

fn slice(link: DataLink, data: &[u8]) -> Option<Result<SlicedPacket<'_>, String>> {
    let r = match link {
        DataLink::ETHERNET => SlicedPacket::from_ethernet(data),
        DataLink::LINUX_SLL => SlicedPacket::from_linux_sll(data),
        DataLink::RAW | DataLink::IPV4 | DataLink::IPV6 => SlicedPacket::from_ip(data),
        // BSD loopback: a 4-byte address family, then IP.
        DataLink::NULL | DataLink::LOOP => SlicedPacket::from_ip(data.get(4..)?),
        // Linux cooked v2: a 20-byte header, then the network layer.
        DataLink::LINUX_SLL2 => SlicedPacket::from_ip(data.get(20..)?),
        _ => return None,
    };
    Some(r.map_err(|e| e.to_string()))
}

fn addrs(net: &NetSlice<'_>) -> Option<(IpAddr, IpAddr)> {
    match net {
        NetSlice::Ipv4(s) => Some((
            IpAddr::V4(s.header().source_addr()),
            IpAddr::V4(s.header().destination_addr()),
        )),
        NetSlice::Ipv6(s) => Some((
            IpAddr::V6(s.header().source_addr()),
            IpAddr::V6(s.header().destination_addr()),
        )),
        _ => None,
    }
}

/// Whether an ICMP error's quoted packet is UDP to or from a LISP port.
fn quotes_lisp(quoted: &[u8]) -> bool {
    let Ok(p) = etherparse::LaxSlicedPacket::from_ip(quoted) else {
        return false;
    };
    match p.transport {
        Some(etherparse::TransportSlice::Udp(u)) => {
            is_lisp_port(u.source_port()) || is_lisp_port(u.destination_port())
        }
        _ => {
            // An ICMP quote may be too short for the UDP slicer: read the ports by hand.
            let ihl = usize::from(quoted.first().map_or(0, |b| b & 0xf)) * 4;
            let is_udp = quoted.first().map(|b| b >> 4) == Some(4) && quoted.get(9) == Some(&17);
            match quoted.get(ihl..ihl + 4) {
                Some(p) if is_udp => {
                    is_lisp_port(u16::from_be_bytes([p[0], p[1]]))
                        || is_lisp_port(u16::from_be_bytes([p[2], p[3]]))
                }
                _ => false,
            }
        }
    }
}

fn classify(frame: u64, link: DataLink, data: &[u8], items: &mut Vec<FrameItem>) {
    let Some(sliced) = slice(link, data) else {
        items.push(FrameItem::Note {
            frame,
            text: format!("link type {link:?} is not supported; frame skipped"),
        });
        return;
    };
    let Ok(p) = sliced else {
        // Not an IP packet we can read (ARP, truncated capture): not LISP either.
        return;
    };
    let Some((src, dst)) = p.net.as_ref().and_then(addrs) else {
        return;
    };
    // ICMP errors quote the packet that caused them: v4 types 3, 4, 5, 11, 12; v6 types 1-4.
    let quoted = match &p.transport {
        Some(TransportSlice::Udp(u))
            if is_lisp_port(u.source_port()) || is_lisp_port(u.destination_port()) =>
        {
            items.push(FrameItem::Lisp(Datagram {
                frame,
                src,
                dst,
                sport: u.source_port(),
                dport: u.destination_port(),
                payload: u.payload().to_vec(),
            }));
            return;
        }
        Some(TransportSlice::Icmpv4(i)) if matches!(i.type_u8(), 3 | 4 | 5 | 11 | 12) => {
            Some(("ICMP", i.type_u8(), i.code_u8(), i.payload()))
        }
        Some(TransportSlice::Icmpv6(i)) if matches!(i.type_u8(), 1..=4) => {
            Some(("ICMPv6", i.type_u8(), i.code_u8(), i.payload()))
        }
        _ => None,
    };
    if let Some((proto, t, code, payload)) = quoted
        && quotes_lisp(payload)
    {
        items.push(FrameItem::Note {
            frame,
            text: format!("{proto} type {t} code {code} from {src} quotes a LISP packet: skipped"),
        });
    }
}
