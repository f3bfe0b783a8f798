//! The flow of an inner packet (RFC 9300 §5.3: the outer UDP source port, and the RLOC a
//! flow uses, come from a hash of the inner headers so one flow stays on one path).

use std::net::IpAddr;

use crate::wire::ip::IpPacket;

/// What identifies a flow: addresses, protocol and, for TCP / UDP / SCTP not fragmented,
/// the ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub protocol: u8,
    pub ports: Option<(u16, u16)>,
}

impl FlowKey {
    /// The flow of an IPv4 / IPv6 packet; `None` when it is neither.
    pub fn of(packet: &[u8]) -> Option<FlowKey> {
        IpPacket::new_checked(packet)
            .ok()
            .map(|ip| FlowKey::of_ip(&ip))
    }

    /// The flow of a checked packet: addresses, protocol and, for an unfragmented TCP,
    /// UDP or SCTP packet, the ports.
    pub fn of_ip<T: AsRef<[u8]>>(ip: &IpPacket<T>) -> FlowKey {
        FlowKey {
            src: ip.source(),
            dst: ip.destination(),
            protocol: ip.protocol(),
            ports: ip.ports(),
        }
    }

    /// A 64-bit hash of the flow (a multiply-xorshift mix of the five-tuple: a few
    /// nanoseconds, and its low bits spread well for the RLOC choice and the source port). Not
    /// keyed: it only spreads flows, it guards no table.
    pub fn hash64(&self) -> u64 {
        fn bits(a: IpAddr) -> u128 {
            match a {
                IpAddr::V4(v) => u128::from(u32::from(v)),
                IpAddr::V6(v) => u128::from(v),
            }
        }
        let (s, d) = (bits(self.src), bits(self.dst));
        let (sp, dp) = self.ports.unwrap_or((0, 0));
        let rest = (u64::from(self.protocol) << 32) | (u64::from(sp) << 16) | u64::from(dp);
        let mut h = 0x243f_6a88_85a3_08d3u64;
        for w in [s as u64, (s >> 64) as u64, d as u64, (d >> 64) as u64, rest] {
            h = (h ^ w).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            h ^= h >> 29;
        }
        h
    }
}

/// A hasher for the data plane's tables keyed by RLOC address (keys per peer): the flow
/// hash's multiply-xorshift instead of SipHash (which took 5 % of the ETR's time per
/// packet). The tables it serves are bounded and filled from the control plane only, so a
/// weak hash gives an attacker nothing to flood.
#[derive(Default, Clone, Copy)]
pub struct RlocHasher(u64);

impl RlocHasher {
    fn mix(&mut self, w: u64) {
        let h = (self.0 ^ w).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 = h ^ (h >> 29);
    }
}

impl std::hash::Hasher for RlocHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            self.mix(u64::from_le_bytes(w));
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.mix(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.mix(n);
    }

    fn write_u128(&mut self, n: u128) {
        self.mix(n as u64);
        self.mix((n >> 64) as u64);
    }

    fn write_usize(&mut self, n: usize) {
        self.mix(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// A map keyed by RLOC address, hashed with [`RlocHasher`].
pub type RlocMap<V> =
    std::collections::HashMap<std::net::IpAddr, V, std::hash::BuildHasherDefault<RlocHasher>>;

#[cfg(test)]
mod tests {
    use super::*;

    /// Addresses that differ in one bit land in different buckets (the top bits the
    /// table uses differ), v4 and v6 alike.
    #[test]
    fn rloc_hasher_spreads_neighbouring_addresses() {
        use std::hash::BuildHasher;
        let b = std::hash::BuildHasherDefault::<RlocHasher>::default();
        let mut tops = std::collections::HashSet::new();
        for i in 0..256u32 {
            let v4 = IpAddr::from((0xc000_0200u32 + i).to_be_bytes());
            let v6 = IpAddr::from((0x2001_0db8u128 << 96 | u128::from(i)).to_be_bytes());
            tops.insert(b.hash_one(v4) >> 57);
            tops.insert(b.hash_one(v6) >> 57);
        }
        assert!(tops.len() > 100, "only {} distinct top bits", tops.len());
    }

    fn v4(proto: u8, sport: u16, dport: u16) -> Vec<u8> {
        let mut p = hex::decode("450000280000400040000000c0000201c0000202").unwrap();
        p[9] = proto;
        p.extend_from_slice(&sport.to_be_bytes());
        p.extend_from_slice(&dport.to_be_bytes());
        p.extend_from_slice(&[0; 16]);
        p
    }

    #[test]
    fn flows_by_five_tuple() {
        let a = FlowKey::of(&v4(6, 1000, 80)).unwrap();
        assert_eq!(a.ports, Some((1000, 80)));
        assert_eq!(a.src.to_string(), "192.0.2.1");
        assert_eq!(a.hash64(), FlowKey::of(&v4(6, 1000, 80)).unwrap().hash64());
        assert_ne!(a.hash64(), FlowKey::of(&v4(6, 1001, 80)).unwrap().hash64());
        let icmp = FlowKey::of(&v4(1, 1000, 80)).unwrap();
        assert_eq!(icmp.ports, None, "no ports for ICMP");
        // A non-first fragment has no ports to read.
        let mut frag = v4(6, 1000, 80);
        frag[7] = 10;
        assert_eq!(FlowKey::of(&frag).unwrap().ports, None);
        assert_eq!(FlowKey::of(&[0x45, 0]), None);
        assert_eq!(FlowKey::of(&[]), None);
        let mut v6 = vec![0x60, 0, 0, 0, 0, 8, 17, 64];
        v6.extend_from_slice(
            &[0x20, 1, 0xd, 0xb8]
                .iter()
                .chain([0u8; 11].iter())
                .chain([1u8].iter())
                .copied()
                .collect::<Vec<_>>(),
        );
        v6.extend_from_slice(
            &[0x20, 1, 0xd, 0xb8]
                .iter()
                .chain([0u8; 11].iter())
                .chain([2u8].iter())
                .copied()
                .collect::<Vec<_>>(),
        );
        v6.extend_from_slice(&[0x13, 0x88, 0x00, 0x35, 0, 8, 0, 0]);
        let f = FlowKey::of(&v6).unwrap();
        assert_eq!(
            (f.src.to_string().as_str(), f.ports),
            ("2001:db8::1", Some((5000, 53)))
        );
    }
}
