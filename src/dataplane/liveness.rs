//! Data-driven reachability (RFC 9300 §10: an ITR may judge an RLOC by the traffic it sees
//! come back, not only by probes): the ITR notes when it sends to each RLOC and the ETR when
//! it hears from each one; hearing nothing from any of a peer's RLOCs for [`SILENCE`] after
//! sending to it asks the control plane to check the RLOC at once
//! ([`ControlRequest::Check`](super::ControlRequest::Check)), which probes it at RTT-based
//! timeouts and marks it down after three misses, so traffic leaves a dead path within a
//! second. Idle RLOCs are left to periodic probing.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::mapping::{EidPrefix, MapCache};

/// Sending this long without hearing back from the peer asks for a check.
pub const SILENCE: Duration = Duration::from_millis(200);
/// How often the RLOCs sent to are looked at.
pub const CHECK_EVERY: Duration = Duration::from_millis(50);
/// An RLOC not sent to for this long is forgotten; a sender not heard from for this long
/// may be forgotten.
pub const FORGET: Duration = Duration::from_secs(10);
/// Senders remembered at most (each costs an address and a time); beyond it, the oldest
/// ones are forgotten first and a new one is not noted while all are recent.
pub const MAX_HEARD: usize = 4096;

/// When each RLOC was last heard from (a packet delivered from it, which with lisp-crypto
/// opened under its key), and at which of our addresses (`None`: not known). Shared by the
/// node's data-plane workers: replies to what one worker sends may reach another one's
/// socket.
#[derive(Debug, Default)]
pub struct Heard(Mutex<HeardTable>);

#[derive(Debug, Default)]
struct HeardTable {
    last: HashMap<(IpAddr, Option<IpAddr>), Duration>,
    /// When the full table was last swept of old senders: at most once a second, so a
    /// stream of new senders (clear data from spoofed addresses) costs a refusal each, not a
    /// sweep each.
    swept: Option<Duration>,
}

impl Heard {
    pub fn new() -> Arc<Heard> {
        Arc::new(Heard::default())
    }

    /// Notes a delivery from `rloc` to our address `local` at `now` (once per run of
    /// packets from one sender).
    pub fn note(&self, now: Duration, rloc: IpAddr, local: Option<IpAddr>) {
        let Ok(mut h) = self.0.lock() else { return };
        if let Some(t) = h.last.get_mut(&(rloc, local)) {
            *t = now;
            return;
        }
        if h.last.len() >= MAX_HEARD {
            if h.swept
                .is_some_and(|s| now.saturating_sub(s) < Duration::from_secs(1))
            {
                return;
            }
            h.swept = Some(now);
            h.last.retain(|_, t| now.saturating_sub(*t) < FORGET);
            if h.last.len() >= MAX_HEARD {
                return;
            }
        }
        h.last.insert((rloc, local), now);
    }

    /// When `rloc` was last heard from at our address `at` (or at an address not known):
    /// proof that the path between the two works. Heard only at another of our addresses,
    /// the peer may have given up on the path from `at`.
    pub fn last(&self, rloc: IpAddr, at: Option<IpAddr>) -> Option<Duration> {
        let h = self.0.lock().ok()?;
        let m = &h.last;
        let unknown = m.get(&(rloc, None)).copied();
        let here = at.and_then(|a| m.get(&(rloc, Some(a))).copied());
        unknown.max(here)
    }
}

/// What the ITR sends to one RLOC.
#[derive(Debug, Clone, Copy)]
struct Sending {
    /// The last send.
    last: Duration,
    /// Our RLOC it left from.
    source: Option<IpAddr>,
    /// The first send since the peer was last heard from (or since the last check).
    unanswered: Option<Duration>,
    /// The map-cache prefix the RLOC served: its RLOCs are the peer's.
    prefix: EidPrefix,
}

/// The ITR's side: the RLOCs sent to, and the checks to ask for.
#[derive(Debug)]
pub struct Liveness {
    sending: super::flow::RlocMap<Sending>,
    /// The last send noted (RLOC, source, time): the next ones of the same read (the same
    /// `now`) cost a comparison, not a look-up.
    last: Option<(IpAddr, Option<IpAddr>, Duration)>,
    heard: Arc<Heard>,
    next_check: Duration,
}

impl Liveness {
    pub fn new(heard: Arc<Heard>) -> Self {
        Liveness {
            sending: Default::default(),
            last: None,
            heard,
            next_check: Duration::ZERO,
        }
    }

    pub fn heard(&self) -> &Arc<Heard> {
        &self.heard
    }

    /// Notes a send to `rloc` (serving `prefix`, when known) from our `source` at `now`.
    /// Bounded by the RLOCs of the map-cache (nothing else is sent to) and forgotten after
    /// [`FORGET`].
    #[inline]
    pub fn sent(
        &mut self,
        now: Duration,
        rloc: IpAddr,
        source: Option<IpAddr>,
        prefix: Option<EidPrefix>,
    ) {
        if self.last == Some((rloc, source, now)) {
            return;
        }
        self.note_sent(now, rloc, source, prefix);
    }

    #[inline(never)]
    fn note_sent(
        &mut self,
        now: Duration,
        rloc: IpAddr,
        source: Option<IpAddr>,
        prefix: Option<EidPrefix>,
    ) {
        match self.sending.get_mut(&rloc) {
            Some(s) => {
                if s.source != source {
                    // Another path: its silence counts from now.
                    s.unanswered = None;
                    s.source = source;
                }
                s.last = now;
                s.unanswered.get_or_insert(now);
                if let Some(p) = prefix {
                    s.prefix = p;
                }
            }
            None => {
                if let Some(prefix) = prefix {
                    self.sending.insert(
                        rloc,
                        Sending {
                            last: now,
                            source,
                            unanswered: Some(now),
                            prefix,
                        },
                    );
                }
            }
        }
        if self.sending.contains_key(&rloc) {
            self.last = Some((rloc, source, now));
        }
    }

    /// When [`check`](Self::check) has work: while anything is being sent to.
    pub fn next_check(&self) -> Option<Duration> {
        (!self.sending.is_empty()).then_some(self.next_check)
    }

    /// Every [`CHECK_EVERY`]: the RLOCs sent to while none of their peer's RLOCs in `cache`
    /// was heard from at the address we send from for [`SILENCE`] since (a peer that
    /// reaches us only at another of our addresses may have found our path dead). Each is returned once per silence: the next one
    /// begins with the next send, so a one-way stream costs a check (one probe) every
    /// silence, and a lone packet one check.
    pub fn check(&mut self, now: Duration, cache: &MapCache) -> Vec<IpAddr> {
        if now < self.next_check {
            return Vec::new();
        }
        self.next_check = now + CHECK_EVERY;
        // What the check changes is noted again by the next send.
        self.last = None;
        let heard = &self.heard;
        let mut suspects = Vec::new();
        self.sending.retain(|rloc, s| {
            if now.saturating_sub(s.last) >= FORGET {
                return false;
            }
            let Some(since) = s.unanswered else {
                return true;
            };
            let peer_heard = cache
                .get(&s.prefix)
                .into_iter()
                .flat_map(|e| e.rlocs.iter())
                .filter_map(|r| r.record.locator.ip())
                .chain(std::iter::once(*rloc))
                .filter_map(|ip| heard.last(ip, s.source))
                .max();
            if peer_heard.is_some_and(|h| h >= since) {
                s.unanswered = None;
            } else if now.saturating_sub(since) >= SILENCE {
                suspects.push(*rloc);
                s.unanswered = None;
            }
            true
        });
        suspects
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{cache_entry, eid};

    const MS: Duration = Duration::from_millis(1);

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    /// A peer with RLOCs .1 and .2 behind prefix `eid(2)`.
    fn cache() -> MapCache {
        let mut c = MapCache::new();
        c.insert(cache_entry(
            eid(2),
            &[ip(1), ip(2)],
            Duration::from_secs(3600),
        ));
        c
    }

    /// Sends to .1 every 10 ms from `from` to `to`, checking as the data plane does; the
    /// checks asked for, with when.
    fn run(l: &mut Liveness, c: &MapCache, from: u64, to: u64) -> Vec<(u64, IpAddr)> {
        let mut asked = Vec::new();
        for t in (from..to).step_by(10) {
            let now = MS * t as u32;
            l.sent(now, ip(1), Some(ip(100)), Some(eid(2)));
            asked.extend(l.check(now, c).into_iter().map(|r| (t, r)));
        }
        asked
    }

    #[test]
    fn sending_into_silence_asks_for_one_check_per_silence() {
        let c = cache();
        let mut l = Liveness::new(Heard::new());
        // Nothing heard: a check 200 ms after the first send, then one per silence.
        let asked = run(&mut l, &c, 0, 1000);
        let times: Vec<u64> = asked.iter().map(|(t, _)| *t).collect();
        assert_eq!(asked[0].1, ip(1));
        assert!(times[0] >= 200 && times[0] <= 250, "{times:?}");
        assert!(times.windows(2).all(|w| w[1] - w[0] >= 200), "{times:?}");
        assert!(times.len() >= 3 && times.len() <= 5, "{times:?}");
    }

    #[test]
    fn hearing_from_any_rloc_of_the_peer_asks_nothing() {
        let c = cache();
        let heard = Heard::new();
        let mut l = Liveness::new(heard.clone());
        let mut asked = Vec::new();
        for t in (0..2000u64).step_by(10) {
            let now = MS * t as u32;
            l.sent(now, ip(1), Some(ip(100)), Some(eid(2)));
            // The peer answers from its other RLOC, 30 ms behind.
            if t >= 30 {
                heard.note(now, ip(2), Some(ip(100)));
            }
            asked.extend(l.check(now, &c));
        }
        assert!(asked.is_empty(), "{asked:?}");
        // It falls silent: checked within the silence and the next look.
        let asked = run(&mut l, &c, 2000, 2400);
        assert_eq!(asked.len(), 1, "{asked:?}");
        assert!(asked[0].0 <= 2000 + (SILENCE + 2 * CHECK_EVERY).as_millis() as u64);
        // Someone else's traffic does not count as the peer's.
        let mut l = Liveness::new(heard.clone());
        heard.note(Duration::from_secs(3), ip(9), Some(ip(100)));
        assert!(!run(&mut l, &c, 3000, 3400).is_empty());
        // The peer reaches us only at our other address (it found the path to this one
        // dead): what we send from this one is checked; from the other one it is not.
        for (source, checked) in [(ip(100), true), (ip(101), false)] {
            let mut l = Liveness::new(heard.clone());
            let mut asked = Vec::new();
            for t in (4000..4400u64).step_by(10) {
                let now = MS * t as u32;
                l.sent(now, ip(1), Some(source), Some(eid(2)));
                heard.note(now, ip(1), Some(ip(101)));
                asked.extend(l.check(now, &c));
            }
            assert_eq!(!asked.is_empty(), checked, "from {source}: {asked:?}");
        }
    }

    #[test]
    fn a_lone_packet_is_checked_once_and_idle_rlocs_are_forgotten() {
        let c = cache();
        let mut l = Liveness::new(Heard::new());
        // A packet every second (a default ping) into silence: one check after each.
        let mut asked = Vec::new();
        for t in (0..3000u64).step_by(1000) {
            l.sent(MS * t as u32, ip(1), Some(ip(100)), Some(eid(2)));
            for k in (t..t + 1000).step_by(10) {
                asked.extend(l.check(MS * k as u32, &c).into_iter().map(|_| k));
            }
        }
        assert_eq!(asked, vec![200, 1200, 2200]);
        // Unknown prefix on first send: nothing is noted (a packet that waited for a key).
        l.sent(Duration::from_secs(3), ip(3), Some(ip(100)), None);
        assert!(!l.sending.contains_key(&ip(3)));
        // Not sent to for FORGET: forgotten, and then nothing is due.
        l.check(Duration::from_secs(20), &c);
        assert!(l.sending.is_empty());
        assert_eq!(l.next_check(), None);
    }

    #[test]
    fn heard_is_bounded() {
        let h = Heard::default();
        for i in 0..(MAX_HEARD as u32 + 10) {
            h.note(Duration::from_secs(1), IpAddr::from(i.to_be_bytes()), None);
        }
        assert_eq!(h.0.lock().unwrap().last.len(), MAX_HEARD);
        // Old ones make room for new ones, after a sweep at most once a second.
        h.note(Duration::from_secs(20), ip(1), None);
        assert_eq!(h.0.lock().unwrap().last.len(), 1);
        assert_eq!(h.last(ip(1), Some(ip(100))), Some(Duration::from_secs(20)));
        for i in 0..(MAX_HEARD as u32) {
            h.note(
                Duration::from_secs(21),
                IpAddr::from((i + 1).to_be_bytes()),
                None,
            );
        }
        h.note(Duration::from_secs(40), ip(2), None);
        assert_eq!(h.last(ip(2), None), Some(Duration::from_secs(40)), "swept");
        for i in 0..(MAX_HEARD as u32) {
            h.note(
                Duration::from_secs(60),
                IpAddr::from((i + 9000).to_be_bytes()),
                None,
            );
        }
        h.note(Duration::from_millis(60_500), ip(3), None);
        assert_eq!(
            h.last(ip(3), None),
            None,
            "full, and swept less than a second ago"
        );
    }
}
