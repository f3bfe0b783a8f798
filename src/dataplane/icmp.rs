//! ICMP errors for packets too big for the tunnel (RFC 9300 §7.1, stateless MTU handling):
//! an ITR that cannot carry an inner packet with DF set answers it with ICMP "fragmentation
//! needed" (RFC 792 / RFC 1191), and an IPv6 one with ICMPv6 "packet too big" (RFC 4443
//! §3.2), naming the largest inner packet the tunnel carries. The error goes back into the
//! TUN device, so the sending host learns the path MTU, as OpenLISP did.

use std::net::IpAddr;

use crate::wire::ip::IpPacket;
use etherparse::{Icmpv4Type, Icmpv6Type, PacketBuilder, icmpv4::DestUnreachableHeader};

/// How much of the offending packet an ICMP error quotes: IPv4 keeps its reply within 576
/// bytes (RFC 1812 §4.3.2.3), IPv6 within the minimum MTU of 1280 (RFC 4443 §2.4 (c)).
const QUOTE_V4: usize = 576 - 20 - 8;
const QUOTE_V6: usize = 1280 - 40 - 8;

/// The ICMP error for `packet`, which the tunnel cannot carry because it is longer than
/// `mtu`, sent from `from` (an address of ours of the packet's family). `None` when no error
/// is due: an IPv4 packet without DF (the outer packet is fragmented instead), an ICMP error,
/// or a packet that is not IPv4 / IPv6.
pub fn too_big(packet: &[u8], mtu: u16, from: IpAddr) -> Option<Vec<u8>> {
    // ICMP errors never get an error in reply (RFC 1812 §4.3.2.7, RFC 4443 §2.4 (e)).
    let ip = IpPacket::new_checked(packet).ok()?;
    if ip.is_icmp_error() || !ip.dont_fragment() {
        return None;
    }
    let mut out = Vec::new();
    match (ip.source(), from) {
        (IpAddr::V4(src), IpAddr::V4(from)) => {
            let quote = &packet[..packet.len().min(QUOTE_V4)];
            PacketBuilder::ipv4(from.octets(), src.octets(), 64)
                .icmpv4(Icmpv4Type::DestinationUnreachable(
                    DestUnreachableHeader::FragmentationNeeded { next_hop_mtu: mtu },
                ))
                .write(&mut out, quote)
                .ok()?;
        }
        (IpAddr::V6(src), IpAddr::V6(from)) => {
            let quote = &packet[..packet.len().min(QUOTE_V6)];
            PacketBuilder::ipv6(from.octets(), src.octets(), 64)
                .icmpv6(Icmpv6Type::PacketTooBig {
                    mtu: u32::from(mtu.max(1280)),
                })
                .write(&mut out, quote)
                .ok()?;
        }
        _ => return None,
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};

    fn udp4(len: usize, df: bool) -> Vec<u8> {
        let mut p = Vec::new();
        PacketBuilder::ipv4([10, 1, 0, 1], [10, 3, 0, 1], 64)
            .udp(1000, 2000)
            .write(&mut p, &vec![7u8; len - 28])
            .unwrap();
        if !df {
            p[6] &= !0x40;
        }
        p
    }

    #[test]
    fn ipv4_with_df_gets_fragmentation_needed_with_the_tunnel_mtu() {
        let p = udp4(1500, true);
        assert_ne!(p[6] & 0x40, 0, "etherparse sets DF");
        let e = too_big(&p, 1436, "10.1.0.1".parse().unwrap()).unwrap();
        let s = SlicedPacket::from_ip(&e).unwrap();
        let Some(NetSlice::Ipv4(ip)) = &s.net else {
            panic!("not IPv4")
        };
        assert_eq!(ip.header().destination(), [10, 1, 0, 1]);
        let Some(TransportSlice::Icmpv4(icmp)) = &s.transport else {
            panic!("not ICMP")
        };
        assert_eq!(
            icmp.icmp_type(),
            Icmpv4Type::DestinationUnreachable(DestUnreachableHeader::FragmentationNeeded {
                next_hop_mtu: 1436
            })
        );
        // The checksum is right and the quote starts with the offending header.
        let h = icmp.header();
        assert_eq!(h.checksum, h.icmp_type.calc_checksum(icmp.payload()));
        assert_eq!(&icmp.payload()[..20], &p[..20]);
        assert!(e.len() <= 576);
    }

    #[test]
    fn ipv4_without_df_and_icmp_errors_get_nothing() {
        let mut p = udp4(1500, false);
        assert!(too_big(&p, 1436, "10.1.0.1".parse().unwrap()).is_none());
        // An ICMP error (type 3) with DF: no error about an error.
        p = too_big(&udp4(1500, true), 1436, "10.1.0.1".parse().unwrap()).unwrap();
        p[6] |= 0x40;
        assert!(too_big(&p, 1000, "10.1.0.1".parse().unwrap()).is_none());
        assert!(too_big(&[0x45], 1000, "10.1.0.1".parse().unwrap()).is_none());
        assert!(too_big(&[], 1000, "10.1.0.1".parse().unwrap()).is_none());
    }

    #[test]
    fn ipv6_gets_packet_too_big_never_below_1280() {
        let mut p = Vec::new();
        PacketBuilder::ipv6([0xfd; 16], [0xfe; 16], 64)
            .udp(1, 2)
            .write(&mut p, &[0u8; 1452])
            .unwrap();
        for (mtu, want) in [(1416u16, 1416u32), (1200, 1280)] {
            let e = too_big(&p, mtu, "fd00::1".parse().unwrap()).unwrap();
            let s = SlicedPacket::from_ip(&e).unwrap();
            let Some(TransportSlice::Icmpv6(icmp)) = &s.transport else {
                panic!("not ICMPv6")
            };
            assert_eq!(icmp.icmp_type(), Icmpv6Type::PacketTooBig { mtu: want });
            assert!(e.len() <= 1280);
        }
    }
}
