//! Packets held while their mapping is being resolved (pull mode, RFC 9301 §5: the ITR
//! sends a Map-Request on a map-cache miss). lispers.net and OOR drop these packets; we keep
//! a bounded number per destination for a short while, so the first packets of a flow are
//! not lost to the lookup.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::Duration;

/// Packets held per destination EID.
pub const PER_DESTINATION: usize = 16;
/// Destinations waiting at once.
pub const DESTINATIONS: usize = 1024;
/// How long a packet waits for its mapping before it is dropped.
pub const MAX_WAIT: Duration = Duration::from_secs(3);

struct Waiting {
    since: Duration,
    packets: VecDeque<Vec<u8>>,
}

/// The bounded queue of packets waiting for a mapping, per (Instance-ID, destination).
#[derive(Default)]
pub struct MappingQueue {
    waiting: HashMap<(u32, IpAddr), Waiting>,
}

impl MappingQueue {
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Holds `packet` for `dst` in `iid`; false when the queue is full (the caller drops
    /// and counts the packet).
    pub fn hold(&mut self, now: Duration, iid: u32, dst: IpAddr, packet: &[u8]) -> bool {
        let n = self.waiting.len();
        let w = match self.waiting.get_mut(&(iid, dst)) {
            Some(w) => w,
            None if n < DESTINATIONS => self.waiting.entry((iid, dst)).or_insert(Waiting {
                since: now,
                packets: VecDeque::new(),
            }),
            None => return false,
        };
        if w.packets.len() >= PER_DESTINATION {
            return false;
        }
        w.packets.push_back(packet.to_vec());
        true
    }

    /// When the oldest waiting packets run out of time.
    pub fn next_expiry(&self) -> Option<Duration> {
        self.waiting.values().map(|w| w.since + MAX_WAIT).min()
    }

    /// Takes out the packets whose destination `resolved` now answers for, in arrival order
    /// per destination, and drops those that waited longer than [`MAX_WAIT`]; returns the
    /// packets to send and how many expired.
    pub fn release(
        &mut self,
        now: Duration,
        mut resolved: impl FnMut(u32, IpAddr) -> bool,
    ) -> (Vec<(u32, Vec<u8>)>, usize) {
        let mut out = Vec::new();
        let mut expired = 0;
        self.waiting.retain(|(iid, dst), w| {
            if resolved(*iid, *dst) {
                out.extend(w.packets.drain(..).map(|p| (*iid, p)));
                false
            } else if now.saturating_sub(w.since) >= MAX_WAIT {
                expired += w.packets.len();
                false
            } else {
                true
            }
        });
        (out, expired)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn releases_in_order_once_resolved_and_expires_after_the_wait() {
        let mut q = MappingQueue::default();
        let t0 = Duration::from_secs(10);
        assert!(q.hold(t0, 1, ip("10.3.0.1"), b"a"));
        assert!(q.hold(t0, 1, ip("10.3.0.1"), b"b"));
        assert!(q.hold(t0, 2, ip("10.3.0.1"), b"other vpn"));
        assert!(q.hold(t0, 1, ip("10.4.0.1"), b"c"));
        // Nothing resolved yet: nothing leaves, nothing expires.
        assert_eq!(q.release(t0, |_, _| false), (vec![], 0));
        // Only Instance-ID 1's 10.3.0.1 is resolved.
        let (out, expired) = q.release(t0 + Duration::from_secs(1), |iid, d| {
            iid == 1 && d == ip("10.3.0.1")
        });
        assert_eq!(out, vec![(1, b"a".to_vec()), (1, b"b".to_vec())]);
        assert_eq!(expired, 0);
        // The rest expires after MAX_WAIT.
        let (out, expired) = q.release(t0 + MAX_WAIT + Duration::from_millis(1), |_, _| false);
        assert!(out.is_empty());
        assert_eq!(expired, 2);
        assert!(q.is_empty());
    }

    #[test]
    fn bounded_per_destination_and_in_destinations() {
        let mut q = MappingQueue::default();
        let now = Duration::ZERO;
        for _ in 0..PER_DESTINATION {
            assert!(q.hold(now, 0, ip("10.3.0.1"), b"p"));
        }
        assert!(!q.hold(now, 0, ip("10.3.0.1"), b"p"));
        for i in 1..DESTINATIONS as u32 {
            assert!(q.hold(now, 0, IpAddr::from(i.to_be_bytes()), b"p"));
        }
        assert!(!q.hold(now, 0, ip("192.0.2.99"), b"p"));
        // A destination already waiting still takes packets up to its bound.
        assert!(q.hold(now, 0, IpAddr::from(1u32.to_be_bytes()), b"p"));
    }
}
