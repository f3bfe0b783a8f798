//! Map-Servers and Map-Resolvers outside the peer group (`[[map_server]]`,
//! `[[map_resolver]]`): the node registers its own mappings with them as a plain ETR (RFC 9301
//! §8.2: Map-Registers with the M bit, retransmitted until a Map-Notify answers) and sends the
//! lookups its group's database cannot answer to them as a plain ITR (RFC 9301 §8.1: an
//! Encapsulated Control Message holding the Map-Request). They are never members: no
//! `(0/0, G)` membership register and no Instance-ID 0xFFFFFF greeting goes to them (an OOR
//! Map-Server crashes on the first, an OOR xTR writes the second into its TUN).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use crate::wire::{Address, EidRecord, MapNotify, Nonce};

use super::engine::Engine;

/// The first retransmission of an unanswered register to a Map-Server; each next one waits
/// twice as long, up to the register interval.
const FIRST_RETRY: Duration = Duration::from_secs(1);

/// What we know of one configured Map-Server.
#[derive(Debug, Clone, Default)]
pub struct MapServerState {
    /// Nonces of the registers of our last round to it, and of those among them whose
    /// Map-Notify is awaited (not the name's).
    pub(crate) sent: Vec<Nonce>,
    pub(crate) outstanding: Vec<Nonce>,
    /// When it last answered a whole round with Map-Notifies.
    pub acked_at: Option<Duration>,
    /// When the unanswered registers go again, and the wait after that.
    pub(crate) retry_at: Option<Duration>,
    pub(crate) backoff: Duration,
    /// Registers sent to it, and Map-Notifies from it that verified.
    pub registers_sent: u64,
    pub notifies_received: u64,
}

impl MapServerState {
    /// When unanswered registers go again; none: nothing is waiting for an answer.
    pub fn retry_at(&self) -> Option<Duration> {
        self.retry_at
    }
}

/// The external systems' state, beside the engine's group state.
#[derive(Debug, Clone, Default)]
pub(crate) struct External {
    pub(crate) servers: Vec<MapServerState>,
    /// Which Map-Server each register nonce of the last rounds went to.
    pub(crate) nonces: HashMap<Nonce, usize>,
}

impl External {
    pub(crate) fn new(servers: usize) -> Self {
        External {
            servers: vec![
                MapServerState {
                    backoff: FIRST_RETRY,
                    ..Default::default()
                };
                servers
            ],
            ..Default::default()
        }
    }

    /// The earliest retransmission due.
    pub(crate) fn next_retry(&self) -> Option<Duration> {
        self.servers.iter().filter_map(|s| s.retry_at).min()
    }
}

impl Engine {
    /// The state of each `[[map_server]]`, in configuration order.
    pub fn map_server_states(&self) -> &[MapServerState] {
        &self.external.servers
    }

    /// Registers `records` with every configured Map-Server, each signed with its own key,
    /// asking for a Map-Notify. `tracked`: a round whose answers are awaited and retried
    /// (withdrawals at shutdown are sent once).
    pub(crate) fn register_with_map_servers(
        &mut self,
        now: Duration,
        records: &[EidRecord],
        tracked: bool,
    ) {
        for i in 0..self.cfg.map_servers.len() {
            self.register_with_map_server(now, i, records, tracked);
        }
    }

    fn register_with_map_server(
        &mut self,
        now: Duration,
        i: usize,
        records: &[EidRecord],
        tracked: bool,
    ) {
        let Some(ms) = self.cfg.map_servers.get(i).cloned() else {
            return;
        };
        let kind = super::registrar::RegisterKind::MapServer {
            proxy_reply: ms.proxy_reply,
        };
        let key = Some((ms.key.clone(), ms.alg_id));
        // The name goes in registers of its own that are not waited for: a Map-Server that
        // cannot read AFI 17 (OOR's) never answers them, and must still count as having
        // taken our prefixes.
        let (names, prefixes): (Vec<EidRecord>, Vec<EidRecord>) = records
            .iter()
            .cloned()
            .partition(|r| matches!(r.eid, Address::Name(_)));
        let mut regs: Vec<(Nonce, Vec<u8>, bool)> = self
            .registrar
            .build_registers_for(&prefixes, kind, key.clone(), &self.cfg)
            .into_iter()
            .map(|(n, b)| (n, b, tracked))
            .collect();
        regs.extend(
            self.registrar
                .build_registers_for(&names, kind, key, &self.cfg)
                .into_iter()
                .map(|(n, b)| (n, b, false)),
        );
        // The previous round's nonces are forgotten: a late answer to them counts for nothing
        // (and the table stays bounded by one round per Map-Server).
        let state = &mut self.external.servers[i];
        if tracked {
            for n in std::mem::take(&mut state.sent) {
                self.external.nonces.remove(&n);
            }
            state.outstanding.clear();
        }
        for (nonce, bytes, awaited) in regs {
            self.external.nonces.insert(nonce, i);
            self.external.servers[i].sent.push(nonce);
            if awaited {
                self.external.servers[i].outstanding.push(nonce);
            }
            self.external.servers[i].registers_sent += 1;
            self.send_unicast_register(ms.address, bytes);
        }
        let state = &mut self.external.servers[i];
        if tracked && !state.outstanding.is_empty() {
            state.retry_at = Some(now + state.backoff);
        }
    }

    /// Registers not answered in time go again (1 s, doubling, at most the register
    /// interval: RFC 9301 §8.2 retransmission of Map-Registers that asked for a Map-Notify).
    pub(crate) fn retransmit_to_map_servers(&mut self, now: Duration) {
        if self.external.next_retry().is_none_or(|t| t > now) {
            return;
        }
        let records = self.own_records();
        for i in 0..self.external.servers.len() {
            let state = &mut self.external.servers[i];
            if state.retry_at.is_none_or(|t| t > now) {
                continue;
            }
            state.backoff = (state.backoff * 2).min(self.cfg.timers.register_interval);
            self.register_with_map_server(now, i, &records, true);
        }
    }

    /// A Map-Notify answering a register we sent a Map-Server: verified with that server's
    /// key. Returns false when the nonce is not one of ours to a Map-Server.
    pub(crate) fn map_server_notify(&mut self, now: Duration, bytes: &[u8], n: &MapNotify) -> bool {
        let Some(&i) = self.external.nonces.get(&n.nonce) else {
            return false;
        };
        let Some(ms) = self.cfg.map_servers.get(i) else {
            return false;
        };
        let ring = crate::crypto::auth::KeyRing::new(vec![ms.key.clone()]);
        if ring.verify(bytes).is_err() {
            self.counters.map_notify_rejected_auth += 1;
            return true;
        }
        self.external.nonces.remove(&n.nonce);
        let state = &mut self.external.servers[i];
        state.outstanding.retain(|x| *x != n.nonce);
        state.notifies_received += 1;
        self.counters.map_server_notifies_received += 1;
        if state.outstanding.is_empty() {
            state.acked_at = Some(now);
            state.retry_at = None;
            state.backoff = FIRST_RETRY;
        }
        true
    }
}

/// Whether `addr` is a configured Map-Server or Map-Resolver (never a group member).
pub(crate) fn is_external_system(cfg: &super::config::EngineConfig, addr: IpAddr) -> bool {
    cfg.map_servers.iter().any(|m| m.address == addr) || cfg.map_resolvers.contains(&addr)
}
