//! What a running node shows of itself: serializable views of its state, built in the node's
//! own task and handed to the API (RFC 9301 §6 map-cache, §8 site registrations; RFC 9962
//! §4 peer group; RFC 8061 keys, never their material).
//!
//! Times are seconds: `*_ago` since an event, `*_in` until one.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::control::{Delivery, Engine, MappingSystem};
use crate::dataplane::DataStats;
use crate::mapping::{EidKey, RlocState};
use crate::wire::RlocRecord;

/// `GET /api/v1/status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    pub version: String,
    pub name: String,
    pub uptime_secs: u64,
    pub xtr_id: String,
    pub site_id: String,
    /// RFC 9962 §4: every member is ITR, ETR, Map-Server and Map-Resolver.
    pub roles: Vec<String>,
    pub rlocs: Vec<String>,
    pub peer_group: PeerGroupView,
    /// The lisp-crypto suite offered, or "none".
    pub encryption: String,
    pub members: usize,
    pub database_mappings: usize,
    pub site_cache_entries: usize,
    pub map_cache_entries: usize,
    /// `[[map_server]]`s outside the group and how our registrations stand with them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub map_servers: Vec<MapServerView>,
    /// `[[map_resolver]]`s outside the group.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub map_resolvers: Vec<String>,
    /// NAT detection, per RLOC of ours that a member answered for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nat: Vec<NatView>,
    /// Behind a NAT: the RTR our mappings are registered and our traffic sent through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via_rtr: Option<String>,
    /// As RTR (`[nat] rtr = true`): the nodes behind NATs registered through us.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nat_bindings: Vec<BindingView>,
    /// Behind a NAT: direct paths to nodes behind other NATs (up, or being tried).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub direct_paths: Vec<DirectView>,
    pub counters: Stats,
}

/// A direct path to a node behind another NAT (`control::direct`): its EID-prefix, the
/// binding it is reached at, whether traffic takes it, when it last answered.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DirectView {
    pub eid: String,
    pub binding: String,
    pub up: bool,
    pub answered_ago: Option<u64>,
}

/// A node behind a NAT registered through us as RTR (draft §5.3): its EID-prefix, the NAT
/// binding it is reached at, its xTR-ID.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BindingView {
    pub eid: String,
    pub binding: String,
    pub xtr_id: String,
    pub expires_in: u64,
}

/// What a member saw of one of our RLOCs (draft-ermagan-lisp-nat-traversal §5.1: Info-Reply).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NatView {
    pub rloc: String,
    /// Our address and port the Info-Request left from.
    pub local: String,
    /// The address and port the member saw it come from.
    pub seen_as: String,
    /// The two differ: a NAT translated it.
    pub behind_nat: bool,
    /// The member that answered.
    pub seen_by: String,
    /// RTRs it offered.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rtrs: Vec<String>,
    pub answered_ago: u64,
}

/// A Map-Server outside the group (RFC 9301 §8.2): whether it acknowledged our last round.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MapServerView {
    pub address: String,
    /// Every register of the last round answered by a Map-Notify that verified.
    pub registered: bool,
    /// Seconds since the last acknowledged round; none: never.
    pub acknowledged_ago: Option<u64>,
    pub registers_sent: u64,
    pub notifies_received: u64,
}

/// The mapping system: push (a peer group, RFC 9962 §4) or pull (hashed Map-Server sets, §5).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeerGroupView {
    pub mode: String,
    /// Push: the group address and its delivery (`multicast` or `replicate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<String>,
    /// Pull: the number of Map-Server sets and the DNS suffix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modulus: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_suffix: Option<String>,
}

/// `GET /api/v1/stats`: every counter of the control engine and of the data path, typed
/// (the metrics read fields, not names).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stats {
    pub control: crate::control::Counters,
    pub data: DataStats,
}

/// One RLOC of a mapping.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RlocView {
    pub address: String,
    pub priority: u8,
    pub weight: u8,
    /// The RLOC-record flags, as `decent decode` writes them (L, p, R).
    pub flags: String,
    /// up, down or unknown (map-cache); up or down as registered (site cache, database).
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt_ms: Option<f64>,
    /// lisp-crypto toward this RLOC: "none" or "<suite> key-id N".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packets: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
}

/// `GET /api/v1/database`: one of our own mappings.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DatabaseView {
    pub eid: String,
    pub instance_id: u32,
    pub rlocs: Vec<RlocView>,
}

/// `GET /api/v1/site-cache`: one registration of an EID (one row per xTR-ID), or an allowed
/// prefix nobody has registered.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SiteView {
    pub eid: String,
    pub instance_id: u32,
    pub registered: bool,
    pub last_registerer: Option<String>,
    pub xtr_id: Option<String>,
    pub site_id: Option<String>,
    pub first_registered_ago: Option<u64>,
    pub last_registered_ago: Option<u64>,
    pub expires_in: Option<u64>,
    /// Record TTL in minutes.
    pub ttl: Option<u32>,
    /// P (proxy reply), M (merge), N (want Map-Notify).
    pub flags: String,
    pub rlocs: Vec<RlocView>,
}

/// `GET /api/v1/map-cache`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MapCacheView {
    pub eid: String,
    pub instance_id: u32,
    pub uptime_secs: u64,
    pub expires_in: u64,
    /// Record TTL in minutes.
    pub ttl: u32,
    /// database (push mode's local lookup) or map-reply.
    pub source: String,
    /// The Map-Reply action of a negative entry, else "forward".
    pub action: String,
    pub rlocs: Vec<RlocView>,
}

/// `GET /api/v1/peers`: a member of the peer group.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeerView {
    pub rloc: String,
    pub xtr_id: Option<String>,
    pub name: Option<String>,
    pub last_heard_ago: Option<u64>,
    /// The peer is behind a NAT and reached through this RTR (its mappings list the RTR,
    /// draft-ermagan-lisp-nat-traversal-19 §5.1.1); `None`: reached directly.
    #[serde(default)]
    pub via_rtr: Option<String>,
    /// "direct", or "rtr" for a peer behind a NAT.
    #[serde(default)]
    pub path: String,
}

/// `GET /api/v1/keys`: the lisp-crypto state with one RLOC, both directions.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyView {
    pub rloc: String,
    /// encap (our key toward the RLOC as ITR) or decap (its key toward us as ETR).
    pub direction: String,
    pub cipher_suite: String,
    pub key_id: u8,
    pub age_secs: Option<u64>,
    /// Keys agreed after the first one (rekeys, RFC 8061 §10).
    pub rekeys: Option<u64>,
    pub packets: Option<u64>,
}

/// RLOC-probing state of one RLOC in use (RFC 9301 §6.3.2).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProbeView {
    pub rloc: String,
    pub state: String,
    pub rtt_ms: Option<f64>,
    /// Keys agreed after the first one.
    pub rekeys: u64,
}

/// What `/metrics` is made of: one consistent snapshot.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MetricsView {
    pub status: Status,
    pub probes: Vec<ProbeView>,
}

fn state_name(s: RlocState) -> &'static str {
    match s {
        RlocState::Unknown => "unknown",
        RlocState::Up => "up",
        RlocState::Down => "down",
    }
}

fn secs(d: Duration) -> u64 {
    d.as_secs()
}

fn rloc_text(r: &RlocRecord) -> String {
    r.locator
        .ip()
        .map_or_else(|| r.locator.to_string(), |a| a.to_string())
}

fn registered_rloc(r: &RlocRecord) -> RlocView {
    RlocView {
        address: rloc_text(r),
        priority: r.priority,
        weight: r.weight,
        flags: r.flag_letters(),
        state: if r.reachable() { "up" } else { "down" }.into(),
        rtt_ms: None,
        key: None,
        packets: None,
        bytes: None,
    }
}

fn eid_parts(key: &EidKey) -> (String, u32) {
    (key.to_string(), key.iid())
}

/// Builds the views from the engine and the data path's state.
pub struct Viewer<'a> {
    pub engine: &'a Engine,
    /// The data plane's counters and keys, merged over its workers.
    pub data: &'a crate::dataplane::DataReport,
    pub now: Duration,
}

impl Viewer<'_> {
    pub fn stats(&self) -> Stats {
        Stats {
            control: self.engine.counters().clone(),
            data: self.data.stats.clone(),
        }
    }

    pub fn status(&self) -> Status {
        let cfg = self.engine.config();
        let peer_group = match &cfg.mapping_system {
            MappingSystem::Push(g) => PeerGroupView {
                mode: "push".into(),
                group: Some(g.group.to_string()),
                delivery: Some(
                    match g.delivery {
                        Delivery::Multicast { .. } => "multicast",
                        Delivery::Replicate => "replicate",
                    }
                    .into(),
                ),
                modulus: None,
                dns_suffix: None,
            },
            MappingSystem::Pull(p) => PeerGroupView {
                mode: "pull".into(),
                group: None,
                delivery: None,
                modulus: Some(p.modulus),
                dns_suffix: Some(p.dns_suffix.clone()),
            },
        };
        Status {
            version: env!("CARGO_PKG_VERSION").into(),
            name: cfg.name.clone(),
            uptime_secs: secs(self.now),
            xtr_id: hex::encode(cfg.xtr_id),
            site_id: hex::encode(cfg.site_id),
            roles: ["itr", "etr", "map-server", "map-resolver"]
                .into_iter()
                .chain(cfg.nat.rtr.then_some("rtr"))
                .map(String::from)
                .collect(),
            rlocs: cfg.rlocs.iter().map(|r| r.address.to_string()).collect(),
            peer_group,
            encryption: cfg.encryption.map_or("none", |s| s.name()).into(),
            members: self.peer_rlocs().len(),
            database_mappings: cfg.database.len(),
            site_cache_entries: self.engine.site_db().len(),
            map_cache_entries: self.engine.map_cache().len(),
            map_servers: cfg
                .map_servers
                .iter()
                .zip(self.engine.map_server_states())
                .map(|(m, st)| MapServerView {
                    address: m.address.to_string(),
                    registered: st.acked_at.is_some() && st.retry_at().is_none(),
                    acknowledged_ago: st.acked_at.map(|t| secs(self.now.saturating_sub(t))),
                    registers_sent: st.registers_sent,
                    notifies_received: st.notifies_received,
                })
                .collect(),
            map_resolvers: cfg.map_resolvers.iter().map(|a| a.to_string()).collect(),
            nat: self
                .engine
                .nat_status()
                .iter()
                .map(|(rloc, n)| NatView {
                    rloc: rloc.to_string(),
                    local: n.local.to_string(),
                    seen_as: n.global.to_string(),
                    behind_nat: n.behind_nat,
                    seen_by: n.asked.to_string(),
                    rtrs: n.rtrs.iter().map(IpAddr::to_string).collect(),
                    answered_ago: secs(self.now.saturating_sub(n.at)),
                })
                .collect(),
            via_rtr: cfg.via_rtr.map(|a| a.to_string()),
            direct_paths: {
                let mut v: Vec<DirectView> = self
                    .engine
                    .direct_paths()
                    .iter()
                    .map(|(at, p)| DirectView {
                        eid: p.eid.to_string(),
                        binding: at.to_string(),
                        up: p.up,
                        answered_ago: p.answered.map(|t| secs(self.now.saturating_sub(t))),
                    })
                    .collect();
                v.sort_by(|a, b| a.eid.cmp(&b.eid));
                v
            },
            nat_bindings: {
                let mut v: Vec<BindingView> = self
                    .engine
                    .rtr_bindings()
                    .iter()
                    .map(|(eid, b)| BindingView {
                        eid: eid.to_string(),
                        binding: b.at.to_string(),
                        xtr_id: hex::encode(b.xtr_id),
                        expires_in: secs(b.expires.saturating_sub(self.now)),
                    })
                    .collect();
                v.sort_by(|a, b| a.eid.cmp(&b.eid));
                v
            },
            counters: self.stats(),
        }
    }

    pub fn database(&self) -> Vec<DatabaseView> {
        let cfg = self.engine.config();
        cfg.database
            .iter()
            .map(|d| DatabaseView {
                eid: d.eid.to_string(),
                instance_id: d.eid.iid,
                rlocs: cfg
                    .rlocs
                    .iter()
                    .map(|r| RlocView {
                        address: r.address.to_string(),
                        priority: r.priority,
                        weight: r.weight,
                        flags: "L R".into(),
                        state: "up".into(),
                        rtt_ms: None,
                        key: None,
                        packets: None,
                        bytes: None,
                    })
                    .collect(),
            })
            .collect()
    }

    /// Every registration, then every allowed prefix with no registration at or under it.
    pub fn site_cache(&self) -> Vec<SiteView> {
        let site = self.engine.site_db();
        let mut out: Vec<SiteView> = site
            .iter()
            .flat_map(|(key, entry)| {
                let (eid, iid) = eid_parts(&key);
                entry
                    .regs()
                    .iter()
                    .map(|r| self.registration(eid.clone(), iid, r))
                    .collect::<Vec<_>>()
            })
            .collect();
        for a in &self.engine.config().site.allowed {
            let registered = site
                .prefixes()
                .iter()
                .any(|(p, _)| p.iid == a.eid.iid && a.eid.prefix.contains(&p.prefix));
            if !registered {
                out.push(SiteView {
                    eid: a.eid.to_string(),
                    instance_id: a.eid.iid,
                    registered: false,
                    last_registerer: None,
                    xtr_id: None,
                    site_id: None,
                    first_registered_ago: None,
                    last_registered_ago: None,
                    expires_in: None,
                    ttl: None,
                    flags: String::new(),
                    rlocs: Vec::new(),
                });
            }
        }
        out
    }

    /// The registrations of the longest registered prefix holding `addr` in `iid`.
    pub fn site_lookup(&self, iid: u32, addr: IpAddr) -> Option<Vec<SiteView>> {
        let (p, entry) = self.engine.site_db().lookup(iid, addr)?;
        Some(
            entry
                .regs()
                .iter()
                .map(|r| self.registration(p.to_string(), p.iid, r))
                .collect(),
        )
    }

    fn registration(&self, eid: String, iid: u32, r: &crate::mapping::XtrRegistration) -> SiteView {
        let mut flags = String::new();
        for (on, c) in [(r.proxy_reply, 'P'), (r.merge, 'M'), (r.want_notify, 'N')] {
            if on {
                flags.push(c);
            }
        }
        SiteView {
            eid,
            instance_id: iid,
            registered: r.expires > self.now,
            last_registerer: Some(r.registerer.to_string()),
            xtr_id: Some(hex::encode(r.xtr_id)),
            site_id: Some(hex::encode(r.site_id)),
            first_registered_ago: Some(secs(self.now.saturating_sub(r.first_registered))),
            last_registered_ago: Some(secs(self.now.saturating_sub(r.last_registered))),
            expires_in: Some(secs(r.expires.saturating_sub(self.now))),
            ttl: Some(r.ttl),
            flags,
            rlocs: r.rlocs.iter().map(registered_rloc).collect(),
        }
    }

    fn key_text(&self, rloc: IpAddr) -> String {
        match self.data.send_keys.iter().find(|k| k.0 == rloc) {
            Some((_, suite, key_id, _)) => format!("{} key-id {key_id}", suite.name()),
            None => "none".into(),
        }
    }

    pub fn map_cache(&self) -> Vec<MapCacheView> {
        use crate::mapping::MappingSource;
        self.engine
            .map_cache()
            .iter()
            .map(|e| MapCacheView {
                eid: e.eid.to_string(),
                instance_id: e.eid.iid,
                uptime_secs: secs(self.now.saturating_sub(e.installed)),
                expires_in: secs(e.expires.saturating_sub(self.now)),
                ttl: e.ttl,
                source: match e.source {
                    MappingSource::LocalDatabase => "database",
                    MappingSource::MapReply { .. } => "map-reply",
                }
                .into(),
                action: if e.is_negative() {
                    crate::wire::action::name(e.action).into()
                } else {
                    "forward".into()
                },
                rlocs: e
                    .rlocs
                    .iter()
                    .map(|c| {
                        let ip = c.record.locator.ip();
                        let traffic = ip.and_then(|ip| self.data.stats.per_rloc.get(&ip));
                        RlocView {
                            state: state_name(c.state).into(),
                            rtt_ms: c.rtt.map(|d| d.as_secs_f64() * 1000.0),
                            key: ip.map(|ip| self.key_text(ip)),
                            packets: traffic.map(|t| t.encapsulated.packets),
                            bytes: traffic.map(|t| t.encapsulated.bytes),
                            ..registered_rloc(&c.record)
                        }
                    })
                    .collect(),
            })
            .collect()
    }

    /// Our RLOC addresses.
    fn own_rlocs(&self) -> Vec<IpAddr> {
        self.engine
            .config()
            .rlocs
            .iter()
            .map(|r| r.address)
            .collect()
    }

    /// The peer group as this node sees it: the members it replicates to (RFC 9962 §4) and
    /// every other RLOC that registered with it (with underlay multicast, members are known
    /// only by their registrations).
    fn peer_rlocs(&self) -> Vec<IpAddr> {
        let own = self.own_rlocs();
        let mut all: std::collections::BTreeSet<IpAddr> =
            self.engine.members().into_iter().collect();
        all.extend(self.engine.site_db().registerers());
        all.into_iter().filter(|a| !own.contains(a)).collect()
    }

    pub fn peers(&self) -> Vec<PeerView> {
        let site = self.engine.site_db();
        // Who registered from which RLOC: the xTR-ID, the name it registered, and for a node
        // behind a NAT (an RTR locator, priority 254, its own at 255) the RTR. Such a node
        // goes by its own RLOC: what its registers came from is its NAT's address, or its
        // own address in the inner header of those carried in data.
        let mut by_rloc: HashMap<IpAddr, (String, Option<String>, Option<IpAddr>)> = HashMap::new();
        let mut nat_sources: std::collections::HashSet<IpAddr> = Default::default();
        for (key, entry) in site.iter() {
            for r in entry.regs() {
                let name = match &key {
                    EidKey::Name { name, .. } => Some(String::from_utf8_lossy(name).into_owned()),
                    _ => None,
                };
                let rtr = r.rlocs.iter().find_map(|l| {
                    (l.priority == crate::control::rtr::RTR_PRIORITY)
                        .then(|| l.locator.ip())
                        .flatten()
                });
                let rloc = match rtr {
                    Some(_) => {
                        nat_sources.insert(r.registerer);
                        r.rlocs
                            .iter()
                            .find(|l| l.priority == 255)
                            .and_then(|l| l.locator.ip())
                            .unwrap_or(r.registerer)
                    }
                    None => r.registerer,
                };
                let slot = by_rloc
                    .entry(rloc)
                    .or_insert_with(|| (hex::encode(r.xtr_id), None, None));
                if name.is_some() {
                    slot.1 = name;
                }
                if rtr.is_some() {
                    slot.2 = rtr;
                }
            }
        }
        // Members, and the nodes behind NATs that registered through an RTR (they leave
        // the replication: no member can reach them directly); not their NATs' addresses.
        let own = self.own_rlocs();
        let mut peers: Vec<IpAddr> = self
            .peer_rlocs()
            .into_iter()
            .filter(|a| !nat_sources.contains(a) || by_rloc.get(a).is_some_and(|k| k.2.is_none()))
            .collect();
        let mut behind: Vec<IpAddr> = by_rloc
            .iter()
            .filter(|(a, k)| k.2.is_some() && !peers.contains(a) && !own.contains(a))
            .map(|(a, _)| *a)
            .collect();
        behind.sort();
        peers.extend(behind);
        peers
            .into_iter()
            .map(|m| {
                let known = by_rloc.get(&m);
                PeerView {
                    rloc: m.to_string(),
                    xtr_id: known.map(|k| k.0.clone()),
                    name: known.and_then(|k| k.1.clone()),
                    last_heard_ago: self
                        .engine
                        .last_heard(m)
                        .map(|t| secs(self.now.saturating_sub(t))),
                    via_rtr: known.and_then(|k| k.2).map(|a| a.to_string()),
                    path: if known.is_some_and(|k| k.2.is_some()) {
                        "rtr"
                    } else {
                        "direct"
                    }
                    .into(),
                }
            })
            .collect()
    }

    pub fn keys(&self) -> Vec<KeyView> {
        let probes = self.engine.probes();
        let mut out: Vec<KeyView> = self
            .data
            .send_keys
            .iter()
            .map(|(ip, suite, key_id, packets)| {
                let p = probes.get(ip);
                KeyView {
                    rloc: ip.to_string(),
                    direction: "encap".into(),
                    cipher_suite: suite.name().into(),
                    key_id: *key_id,
                    age_secs: p
                        .and_then(|p| p.keyed_at())
                        .map(|t| secs(self.now.saturating_sub(t))),
                    rekeys: p.map(|p| p.rekeys.saturating_sub(1)),
                    packets: Some(*packets),
                }
            })
            .collect();
        for k in &self.data.recv_keys {
            out.push(KeyView {
                rloc: k.itr.to_string(),
                direction: "decap".into(),
                cipher_suite: k.suite.name().into(),
                key_id: k.key_id,
                age_secs: Some(secs(self.now.saturating_sub(k.installed))),
                rekeys: Some(k.keys.saturating_sub(1)),
                packets: None,
            });
        }
        out.sort_by(|a, b| (&a.rloc, &a.direction).cmp(&(&b.rloc, &b.direction)));
        out
    }

    pub fn metrics(&self) -> MetricsView {
        let mut probes: Vec<ProbeView> = self
            .engine
            .probes()
            .iter()
            .map(|(ip, p)| ProbeView {
                rloc: ip.to_string(),
                state: state_name(p.state).into(),
                rtt_ms: p.rtt.map(|d| d.as_secs_f64() * 1000.0),
                rekeys: p.rekeys.saturating_sub(1),
            })
            .collect();
        probes.sort_by(|a, b| a.rloc.cmp(&b.rloc));
        MetricsView {
            status: self.status(),
            probes,
        }
    }
}
