//! Choosing the RLOC of a flow (RFC 9300 §10; PROTOCOL.md §6.5): never priority 255, never
//! an RLOC marked down; the lowest priority among the rest; within it, flows split by
//! weight (all weights 0: evenly), each flow pinned by its hash.

use std::net::IpAddr;

use crate::mapping::{CachedRloc, RlocState};

/// The index in `rlocs` of the RLOC for a flow with hash `flow`, or `None` when no RLOC
/// may carry unicast traffic.
pub fn choose(rlocs: &[CachedRloc], flow: u64) -> Option<usize> {
    choose_where(rlocs, flow, |_| true)
}

/// [`choose`] among the RLOCs `reachable` allows (those of a family we have an RLOC of:
/// a node on an IPv6-only underlay leaves its peers' IPv4 RLOCs alone).
pub fn choose_where(
    rlocs: &[CachedRloc],
    flow: u64,
    reachable: impl Fn(IpAddr) -> bool,
) -> Option<usize> {
    let usable = |r: &CachedRloc| {
        r.record.priority != 255
            && r.state != RlocState::Down
            && r.record.locator.ip().is_none_or(&reachable)
    };
    let best = rlocs
        .iter()
        .filter(|r| usable(r))
        .map(|r| r.record.priority)
        .min()?;
    let tier = || {
        rlocs
            .iter()
            .enumerate()
            .filter(move |(_, r)| usable(r) && r.record.priority == best)
    };
    let total: u64 = tier().map(|(_, r)| u64::from(r.record.weight)).sum();
    if total == 0 {
        let n = tier().count() as u64;
        return tier().nth((flow % n) as usize).map(|(i, _)| i);
    }
    let mut point = flow % total;
    for (i, r) in tier() {
        let w = u64::from(r.record.weight);
        if point < w {
            return Some(i);
        }
        point -= w;
    }
    None
}

/// Our RLOC to talk to `peer` from, among `ours`: of the same family, the one sharing the
/// longest prefix with it (on a multi-homed node, the one on the peer's network), the first
/// on a tie. Prefixes count up to /24 (IPv4) and /64 (IPv6): addresses of one subnet are
/// equally near, so of two addresses on one interface the one listed first wins (the node
/// lists the address it is moving to first). Probes and data use the same source, so the
/// lisp-crypto keys the ETR holds per ITR address (RFC 8061 §9) match the packets' source.
pub fn source_rloc(ours: impl IntoIterator<Item = IpAddr>, peer: IpAddr) -> Option<IpAddr> {
    fn common(a: IpAddr, b: IpAddr) -> u32 {
        match (a, b) {
            (IpAddr::V4(a), IpAddr::V4(b)) => (u32::from(a) ^ u32::from(b)).leading_zeros().min(24),
            (IpAddr::V6(a), IpAddr::V6(b)) => {
                (u128::from(a) ^ u128::from(b)).leading_zeros().min(64)
            }
            _ => 0,
        }
    }
    let mut best: Option<(u32, IpAddr)> = None;
    for a in ours {
        if a.is_ipv4() != peer.is_ipv4() {
            continue;
        }
        let c = common(a, peer);
        if best.is_none_or(|(b, _)| c > b) {
            best = Some((c, a));
        }
    }
    best.map(|(_, a)| a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Address, RlocRecord};

    fn rloc(last: u8, priority: u8, weight: u8, state: RlocState) -> CachedRloc {
        CachedRloc {
            record: RlocRecord {
                priority,
                weight,
                m_priority: 255,
                m_weight: 0,
                flags: 1,
                locator: Address::Ipv4([192, 0, 2, last].into()),
            },
            state,
            rtt: None,
            via: None,
        }
    }

    #[test]
    fn the_source_is_the_nearest_rloc_and_the_first_of_one_subnet() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let ours = [
            ip("192.0.2.102"),
            ip("192.0.2.2"),
            ip("198.51.100.7"),
            ip("2001:db8::1"),
        ];
        // The peer's network wins; within one /24 the first listed.
        assert_eq!(
            source_rloc(ours, ip("198.51.100.1")),
            Some(ip("198.51.100.7"))
        );
        assert_eq!(source_rloc(ours, ip("192.0.2.1")), Some(ip("192.0.2.102")));
        assert_eq!(source_rloc(ours, ip("192.0.2.3")), Some(ip("192.0.2.102")));
        // Elsewhere: the longest common prefix above the cap, else the first.
        assert_eq!(
            source_rloc(ours, ip("198.51.0.1")),
            Some(ip("198.51.100.7"))
        );
        assert_eq!(
            source_rloc(ours, ip("203.0.113.1")),
            Some(ip("192.0.2.102"))
        );
        assert_eq!(
            source_rloc(ours, ip("2001:db8:1::1")),
            Some(ip("2001:db8::1"))
        );
        assert_eq!(source_rloc([ip("2001:db8::1")], ip("192.0.2.1")), None);
    }

    fn shares(rlocs: &[CachedRloc]) -> Vec<f64> {
        let mut n = vec![0u32; rlocs.len()];
        for f in 0..100_000u64 {
            let h = crate::dataplane::flow::FlowKey {
                src: [10, 0, 0, 1].into(),
                dst: [10, 0, 0, 2].into(),
                protocol: 17,
                ports: Some(((f % 60000) as u16, (f / 60000) as u16)),
            }
            .hash64();
            n[choose(rlocs, h).unwrap()] += 1;
        }
        n.iter().map(|c| f64::from(*c) / 100_000.0).collect()
    }

    #[test]
    fn lowest_priority_then_weight() {
        use RlocState::*;
        // 30/20/20/10 splits 37.5 / 25 / 25 / 12.5 %; the priority-2 RLOC is unused.
        let set = [
            rloc(1, 1, 30, Up),
            rloc(2, 1, 20, Up),
            rloc(3, 1, 20, Unknown),
            rloc(4, 1, 10, Up),
            rloc(5, 2, 100, Up),
        ];
        let s = shares(&set);
        for (got, want) in s.iter().zip([0.375, 0.25, 0.25, 0.125, 0.0]) {
            assert!((got - want).abs() < 0.01, "{s:?}");
        }
        // Weights all 0: an even split.
        let s = shares(&[rloc(1, 1, 0, Up), rloc(2, 1, 0, Up)]);
        assert!((s[0] - 0.5).abs() < 0.01, "{s:?}");
        // Down RLOCs are skipped; when the whole best tier is down, the next one carries.
        assert_eq!(
            choose(&[rloc(1, 1, 50, Down), rloc(2, 2, 50, Up)], 7),
            Some(1)
        );
        // Priority 255 never carries unicast.
        assert_eq!(choose(&[rloc(1, 255, 50, Up)], 7), None);
        assert_eq!(choose(&[], 7), None);
        // A flow stays on its RLOC.
        assert_eq!(choose(&set, 12345), choose(&set, 12345));
    }
}
