//! RLOC-probing (RFC 9301 §6.3.2): every RLOC the map-cache uses gets a direct Map-Request
//! with the P bit every probe interval (jittered by up to 10 %); an answer marks it up and
//! gives its round-trip time, three probes in a row without one mark it down, and the data
//! plane moves its flows to the next usable RLOC.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use rand::RngExt;

use super::engine::{Engine, Transmit};
use crate::mapping::{EidPrefix, RlocState};
use crate::wire::{Address, CONTROL_PORT, ControlMessage, MapRequest, Nonce};

/// Unanswered probes in a row that mark an RLOC down.
pub const MISSES_DOWN: u8 = 3;

/// Probing state of one RLOC.
#[derive(Debug, Clone)]
pub struct ProbeState {
    /// A prefix the RLOC serves (the probe's target).
    pub prefix: EidPrefix,
    pub next: Duration,
    /// The probe in flight: nonce and when it left.
    pub outstanding: Option<(Nonce, Duration)>,
    pub misses: u8,
    pub state: RlocState,
    pub rtt: Option<Duration>,
}

impl Engine {
    /// The probing state of every RLOC in use.
    pub fn probes(&self) -> &HashMap<IpAddr, ProbeState> {
        &self.probes
    }

    /// Follows the map-cache: new RLOCs in use get probed soon, RLOCs no longer used are
    /// forgotten.
    pub(crate) fn track_probed_rlocs(&mut self, now: Duration) {
        if self.cfg.timers.probe_interval.is_zero() {
            return;
        }
        let in_use = self.map_cache.rlocs_in_use();
        self.probes
            .retain(|ip, _| in_use.iter().any(|(x, _)| x == ip));
        for (ip, prefix) in in_use {
            if self.is_own_rloc(ip) {
                continue;
            }
            self.probes.entry(ip).or_insert(ProbeState {
                prefix,
                next: now,
                outstanding: None,
                misses: 0,
                state: RlocState::Unknown,
                rtt: None,
            });
        }
    }

    /// When the next probe is due.
    pub(crate) fn next_probe(&self) -> Option<Duration> {
        self.probes.values().map(|p| p.next).min()
    }

    /// Sends the probes that are due, counting the ones that went unanswered.
    pub(crate) fn send_probes(&mut self, now: Duration) {
        let interval = self.cfg.timers.probe_interval;
        if interval.is_zero() {
            return;
        }
        let due: Vec<IpAddr> = self
            .probes
            .iter()
            .filter(|(_, p)| p.next <= now)
            .map(|(ip, _)| *ip)
            .collect();
        for rloc in due {
            let Some(own) = self.rloc_for(rloc) else {
                continue;
            };
            let nonce = self.nonce();
            let jitter = interval.mul_f64(self.rng.random::<f64>() * 0.1);
            let Some(p) = self.probes.get_mut(&rloc) else {
                continue;
            };
            let mut marked = None;
            if p.outstanding.is_some() {
                p.misses = p.misses.saturating_add(1);
                if p.misses >= MISSES_DOWN && p.state != RlocState::Down {
                    p.state = RlocState::Down;
                    marked = Some(RlocState::Down);
                }
            }
            p.outstanding = Some((nonce, now));
            p.next = now + interval + jitter;
            let (eid, ml) = p.prefix.to_wire();
            if let Some(s) = marked {
                self.map_cache.set_rloc_state(rloc, s, None);
                self.counters.rlocs_marked_down += 1;
            }
            let mut q = MapRequest::new(nonce, Address::None, Address::from(own), eid, ml);
            q.probe = true;
            let Ok(payload) = ControlMessage::MapRequest(q).to_bytes() else {
                continue;
            };
            self.counters.probes_sent += 1;
            self.push(Transmit {
                src: Some(own),
                src_port: CONTROL_PORT,
                dst: SocketAddr::new(rloc, CONTROL_PORT),
                ttl: None,
                payload,
            });
        }
    }

    /// A probe reply (matched by nonce, from any address): the RLOC is up, with its RTT.
    /// Returns false when the nonce is not one of our probes.
    pub(crate) fn probe_answered(&mut self, now: Duration, nonce: &Nonce) -> bool {
        let Some((rloc, p)) = self
            .probes
            .iter_mut()
            .find(|(_, p)| p.outstanding.is_some_and(|(n, _)| &n == nonce))
        else {
            return false;
        };
        let rloc = *rloc;
        let sent = p.outstanding.map_or(now, |(_, t)| t);
        p.outstanding = None;
        p.misses = 0;
        p.state = RlocState::Up;
        p.rtt = Some(now.saturating_sub(sent));
        let rtt = p.rtt;
        self.map_cache.set_rloc_state(rloc, RlocState::Up, rtt);
        self.counters.probe_replies_received += 1;
        true
    }
}
