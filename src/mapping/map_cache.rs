//! The ITR's map-cache (RFC 9301 §6; RFC 9300 §6): EID-prefix to RLOC-set with TTLs,
//! negative entries with their action, and per-RLOC state for the data plane.

use std::time::Duration;

use super::eid::EidPrefix;
use super::table::PrefixTable;
use crate::wire::RlocRecord;

/// Reachability of one cached RLOC (set by RLOC-probing in the data plane).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RlocState {
    Unknown,
    Up,
    Down,
}

/// One RLOC of a cached mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedRloc {
    pub record: RlocRecord,
    pub state: RlocState,
    /// Last RLOC-probe round-trip time.
    pub rtt: Option<Duration>,
    /// The RLOC of ours that reaches it when that is not the one chosen by address (a
    /// multi-homed node whose nearest path to it failed: RFC 9301 §6.3.2, the probe's
    /// source that was answered); data to it leaves from there.
    pub via: Option<std::net::IpAddr>,
}

/// Where a cached mapping came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MappingSource {
    /// The node's own synchronized database (push mode: every lookup is local).
    LocalDatabase,
    /// A Map-Reply from a Map-Resolver or ETR.
    MapReply { authoritative: bool },
}

/// A cached mapping. An entry with no RLOCs is negative and carries its action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapCacheEntry {
    pub eid: EidPrefix,
    pub rlocs: Vec<CachedRloc>,
    /// Map-Reply action (meaningful for negative entries).
    pub action: u8,
    /// Record TTL in minutes, as received.
    pub ttl: u32,
    pub installed: Duration,
    pub expires: Duration,
    pub source: MappingSource,
}

impl MapCacheEntry {
    pub fn is_negative(&self) -> bool {
        self.rlocs.is_empty()
    }
}

/// The map-cache of one node, all Instance-IDs. A clone keeps the generation: the same
/// contents (the data-plane workers look up in snapshots of the engine's cache).
#[derive(Debug, Clone)]
pub struct MapCache {
    table: PrefixTable<MapCacheEntry>,
    /// Changes whenever an answer of [`MapCache::lookup`] may have changed (an entry added,
    /// removed, expired, or an RLOC's state), unique across caches: the data plane keeps the
    /// last route it looked up while this stays the same.
    generation: u64,
}

impl Default for MapCache {
    fn default() -> Self {
        MapCache {
            table: PrefixTable::default(),
            generation: next_generation(),
        }
    }
}

/// A generation number no map-cache of this process had before.
fn next_generation() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

impl MapCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// Installs (or replaces) the entry for its prefix.
    pub fn insert(&mut self, e: MapCacheEntry) {
        self.generation = next_generation();
        self.table.insert(e.eid, e);
    }

    /// See the field: equal generations give equal answers.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The live entry covering an address.
    pub fn lookup(
        &self,
        iid: u32,
        addr: std::net::IpAddr,
        now: Duration,
    ) -> Option<&MapCacheEntry> {
        self.table
            .lookup(iid, addr)
            .map(|(_, e)| e)
            .filter(|e| e.expires > now)
    }

    pub fn get(&self, p: &EidPrefix) -> Option<&MapCacheEntry> {
        self.table.get(p)
    }

    pub fn remove(&mut self, p: &EidPrefix) -> Option<MapCacheEntry> {
        self.generation = next_generation();
        self.table.remove(p)
    }

    /// Drops expired entries; returns how many.
    pub fn expire(&mut self, now: Duration) -> usize {
        let dead: Vec<EidPrefix> = self
            .table
            .iter()
            .filter(|(_, e)| e.expires <= now)
            .map(|(p, _)| p)
            .collect();
        for p in &dead {
            self.table.remove(p);
        }
        if !dead.is_empty() {
            self.generation = next_generation();
        }
        dead.len()
    }

    /// Sets the state (and RTT, when measured) of one RLOC in every entry that has it.
    pub fn set_rloc_state(
        &mut self,
        rloc: std::net::IpAddr,
        state: RlocState,
        rtt: Option<Duration>,
    ) {
        self.update_rloc(rloc, |r| {
            if rtt.is_some() {
                r.rtt = rtt;
            }
            std::mem::replace(&mut r.state, state) != state
        });
    }

    /// Sets which of our RLOCs reaches `rloc` ([`CachedRloc::via`]) in every entry that has
    /// it.
    pub fn set_rloc_via(&mut self, rloc: std::net::IpAddr, via: Option<std::net::IpAddr>) {
        self.update_rloc(rloc, |r| std::mem::replace(&mut r.via, via) != via);
    }

    /// Applies `f` to `rloc` in every entry that has it; a new generation when `f` says it
    /// changed what the data plane uses.
    fn update_rloc(&mut self, rloc: std::net::IpAddr, mut f: impl FnMut(&mut CachedRloc) -> bool) {
        let keys: Vec<EidPrefix> = self
            .table
            .iter()
            .filter(|(_, e)| e.rlocs.iter().any(|r| r.record.locator.ip() == Some(rloc)))
            .map(|(p, _)| p)
            .collect();
        let mut changed = false;
        for k in keys {
            if let Some(e) = self.table.get_mut(&k) {
                for r in e
                    .rlocs
                    .iter_mut()
                    .filter(|r| r.record.locator.ip() == Some(rloc))
                {
                    changed |= f(r);
                }
            }
        }
        if changed {
            self.generation = next_generation();
        }
    }

    /// The RLOCs the cached entries use, each with one prefix that uses it.
    pub fn rlocs_in_use(&self) -> Vec<(std::net::IpAddr, EidPrefix)> {
        let mut v: Vec<(std::net::IpAddr, EidPrefix)> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (p, e) in self.table.iter() {
            for r in &e.rlocs {
                if let Some(ip) = r.record.locator.ip()
                    && r.record.priority != 255
                    && seen.insert(ip)
                {
                    v.push((ip, p));
                }
            }
        }
        v
    }

    /// Every entry whose prefix covers or lies inside `p` (the ones an SMR for `p` concerns).
    pub fn overlapping(&self, p: &EidPrefix) -> Vec<EidPrefix> {
        self.table
            .iter()
            .filter(|(k, _)| {
                k.iid == p.iid && (k.prefix.contains(&p.prefix) || p.prefix.contains(&k.prefix))
            })
            .map(|(k, _)| k)
            .collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = &MapCacheEntry> {
        self.table.iter().map(|(_, e)| e)
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }
}
