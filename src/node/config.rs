//! The node's TOML configuration: what an operator writes, checked field by field. Every
//! problem is reported with its path (`database[1].prefix: ...`), all of them at once, by
//! `decent check-config` and by `decent run` before it starts.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

use crate::control::{
    AllowedName, AllowedPrefix, DatabaseMapping, Delivery, MappingSystem, PeerGroup, PullMode,
    SitePolicy, Timers, pull::PullHash,
};
use crate::crypto::auth::{AuthKey, KeyRing, alg};
use crate::mapping::EidPrefix;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    name: Option<String>,
    register_name: Option<bool>,
    state_dir: Option<PathBuf>,
    site_id: Option<u64>,
    #[serde(default)]
    rloc: Vec<RawRloc>,
    #[serde(default)]
    database: Vec<RawDatabase>,
    peer_group: Option<RawPeerGroup>,
    pull: Option<RawPull>,
    site: Option<RawSite>,
    #[serde(default)]
    timers: RawTimers,
    #[serde(default)]
    listen: RawListen,
    #[serde(default)]
    instance: Vec<RawInstance>,
    #[serde(default)]
    data_plane: RawDataPlane,
    #[serde(default)]
    api: RawApi,
    #[serde(default)]
    map_server: Vec<RawMapServer>,
    #[serde(default)]
    map_resolver: Vec<RawMapResolver>,
    #[serde(default)]
    nat: RawNat,
}

/// `[nat]`: NAT traversal.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNat {
    #[serde(default)]
    rtr: bool,
    #[serde(default)]
    rtrs: Vec<String>,
    use_rtr: Option<bool>,
}

/// `[[map_server]]`: a Map-Server outside the peer group we register with.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMapServer {
    address: String,
    #[serde(default)]
    key_id: u8,
    secret: Option<String>,
    secret_file: Option<PathBuf>,
    #[serde(default = "sha256")]
    algorithm: String,
    #[serde(default)]
    proxy_reply: bool,
}

/// `[[map_resolver]]`: a Map-Resolver outside the peer group.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMapResolver {
    address: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApi {
    listen: Option<String>,
    token_file: Option<PathBuf>,
}

/// The HTTP API, web UI and /metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiSettings {
    /// `None`: no HTTP server (`listen = "off"`).
    pub listen: Option<std::net::SocketAddr>,
    /// The file holding the bearer token write operations need; none: writes are refused.
    pub token_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDataPlane {
    encryption: Option<String>,
    #[serde(default)]
    allow_clear: bool,
    underlay_mtu: Option<u32>,
    workers: Option<u32>,
    receive_buffer_kib: Option<u32>,
    #[serde(default)]
    peer: Vec<RawCryptoPeer>,
}

/// `data_plane.receive_buffer_kib` when unset: in scripts/bench-dataplane.sh --buffers, 1 MiB
/// carried as much as 4 and 16 MiB with a lower p99 under load, 256 KiB 12 % less.
const DEFAULT_RECEIVE_BUFFER_KIB: u32 = 1024;

/// `data_plane.workers` when unset: one per CPU, at most this many (each worker holds a few
/// MB of read buffers under load; a tunnel endpoint gains little beyond a few cores).
const DEFAULT_WORKERS_AT_MOST: usize = 8;

/// Data-plane workers, at most (a TUN device has at most 256 queues).
pub const MAX_WORKERS: usize = 64;
const MAX_WORKERS_U32: u32 = MAX_WORKERS as u32;

/// `[[data_plane.peer]]`: the lisp-crypto profile of the peers in some RLOC prefixes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCryptoPeer {
    rlocs: Vec<String>,
    profile: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInstance {
    #[serde(default)]
    instance_id: u32,
    tun: Option<String>,
    #[serde(default)]
    addresses: Vec<String>,
    table: Option<u32>,
    mtu: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRloc {
    address: Option<String>,
    interface: Option<String>,
    family: Option<String>,
    #[serde(default = "one")]
    priority: u8,
    #[serde(default = "hundred")]
    weight: u8,
}

fn one() -> u8 {
    1
}
fn hundred() -> u8 {
    100
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDatabase {
    prefix: String,
    #[serde(default)]
    instance_id: u32,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPeerGroup {
    group: String,
    delivery: String,
    #[serde(default)]
    seeds: Vec<String>,
    multicast_ttl: Option<u8>,
    multicast_interface: Option<String>,
    #[serde(default)]
    lispers_membership_encoding: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPull {
    modulus: u32,
    dns_suffix: String,
    hash: String,
    #[serde(default)]
    hash_mask_len: usize,
    hash_width: Option<usize>,
    dns_server: Option<String>,
    resolve_interval_secs: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSite {
    #[serde(default)]
    key: Vec<RawKey>,
    #[serde(default)]
    allowed: Vec<RawAllowed>,
    #[serde(default)]
    accept_unauthenticated_membership: bool,
    #[serde(default)]
    accept_truncated_auth: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKey {
    #[serde(default)]
    key_id: u8,
    secret: Option<String>,
    secret_file: Option<PathBuf>,
    #[serde(default = "sha256")]
    algorithm: String,
}

fn sha256() -> String {
    "sha256".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAllowed {
    prefix: Option<String>,
    name: Option<String>,
    #[serde(default)]
    instance_id: u32,
    #[serde(default)]
    accept_more_specifics: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTimers {
    register_interval_secs: Option<u64>,
    record_ttl_mins: Option<u32>,
    map_reply_ttl_mins: Option<u32>,
    negative_ttl_mins: Option<u32>,
    unregistered_ttl_mins: Option<u32>,
    requests_per_second: Option<u32>,
    probe_interval_secs: Option<u64>,
    rekey_interval_secs: Option<u64>,
    rekey_packets: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListen {
    #[serde(default)]
    addresses: Vec<String>,
    control_port: Option<u16>,
    data_port: Option<u16>,
}

/// An RLOC as configured: a fixed address, or whatever addresses an interface has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RlocSource {
    Address(IpAddr),
    Interface { name: String, v4: bool, v6: bool },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RlocConfig {
    pub source: RlocSource,
    pub priority: u8,
    pub weight: u8,
}

/// Pull-mode settings the node (not the engine) needs: how to resolve the set names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsSettings {
    pub server: Option<std::net::SocketAddr>,
    pub resolve_interval: Duration,
}

/// A TUN device carrying one Instance-ID's traffic (RFC 9300 §8: one VRF per Instance-ID).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceConfig {
    pub instance_id: u32,
    pub tun: String,
    /// EID addresses of this node, put on the device as host addresses.
    pub addresses: Vec<IpAddr>,
    /// Routing table for the Instance-ID's EID routes (a VRF-like split: the node adds a
    /// rule "from <address> lookup <table>" per EID address); `None`: the main table.
    pub table: Option<u32>,
    /// MTU of the TUN device; `None`: the underlay MTU minus the largest encapsulation.
    pub mtu: Option<u16>,
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub name: String,
    /// Register `name` as a distinguished-name EID (`register_name`, default true).
    pub register_name: bool,
    pub state_dir: PathBuf,
    pub site_id: [u8; 8],
    pub rlocs: Vec<RlocConfig>,
    pub database: Vec<DatabaseMapping>,
    pub mapping_system: MappingSystem,
    pub multicast_interface: Option<String>,
    pub dns: Option<DnsSettings>,
    pub site: SitePolicy,
    pub timers: Timers,
    pub listen: Vec<IpAddr>,
    pub control_port: u16,
    pub data_port: u16,
    /// Instance-IDs with a TUN device (none: the node is control plane only).
    pub instances: Vec<InstanceConfig>,
    /// lisp-crypto suite (RFC 8061); `None`: data in clear.
    pub encryption: Option<crate::crypto::lisp_crypto::CipherSuite>,
    /// Send and accept clear data where no key can be agreed.
    pub allow_clear: bool,
    /// Peers that speak another lisp-crypto profile than the peer group's.
    pub crypto_peers: Vec<crate::control::CryptoPeer>,
    /// MTU of the underlay path (RFC 9300 §7.1 stateless MTU handling): an inner packet
    /// whose encapsulation would exceed it is refused with an ICMP error into its TUN.
    pub underlay_mtu: u16,
    /// `data_plane.workers`: threads running the data plane, each with its own queue of
    /// every TUN device and its own data-port socket (default: one per CPU, at most 8).
    pub workers: usize,
    /// `data_plane.receive_buffer_kib`: the receive buffer of each data-port socket, in
    /// bytes (default 1 MiB). Larger rides out longer stalls of a worker without loss, at
    /// the price of more queueing delay under load (README, "Benchmarks").
    pub data_receive_buffer: usize,
    pub api: ApiSettings,
    /// `[[map_server]]`: Map-Servers outside the group we register with.
    pub map_servers: Vec<crate::control::MapServerPeer>,
    /// `[[map_resolver]]`: Map-Resolvers outside the group.
    pub map_resolvers: Vec<IpAddr>,
    /// `[nat]`: NAT traversal (RTR role, RTRs offered, registering through one).
    pub nat: crate::control::NatConfig,
}

/// One configuration problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

struct Errors(Vec<ConfigError>);

impl Errors {
    fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigError {
            path: path.into(),
            message: message.into(),
        });
    }
}

/// `value` (when given) must lie in `range`; out of it, an error names the range. Numbers are
/// checked before they become durations, so none can overflow later.
fn check_range<T>(
    errs: &mut Errors,
    path: &str,
    value: Option<T>,
    range: std::ops::RangeInclusive<T>,
) where
    T: PartialOrd + std::fmt::Display + Copy,
{
    if let Some(v) = value
        && !range.contains(&v)
    {
        errs.add(
            path,
            format!("{v}: expected {} to {}", range.start(), range.end()),
        );
    }
}

/// Prefixes listed twice, or one inside another in the same Instance-ID, are errors: a
/// mapping (or a site policy entry) would be ambiguous.
fn check_overlaps(errs: &mut Errors, what: &str, prefixes: &[(String, EidPrefix)]) {
    for (i, (path, p)) in prefixes.iter().enumerate() {
        if let Some((other, q)) = prefixes[..i].iter().find(|(_, q)| {
            q.iid == p.iid && (q.prefix.contains(&p.prefix) || p.prefix.contains(&q.prefix))
        }) {
            let how = if p == q { "is the same as" } else { "overlaps" };
            errs.add(path, format!("{what} {p} {how} {q} ({other})"));
        }
    }
}

/// An authentication key: `key_id`, `secret` or `secret_file` (relative to `base`),
/// `algorithm`. `None` (with the errors added) when it cannot be read.
fn parse_key(errs: &mut Errors, p: &str, k: &RawKey, base: &Path) -> Option<(AuthKey, u8)> {
    let alg_id = match k.algorithm.as_str() {
        "sha256" => alg::HMAC_SHA_256_128,
        "sha1" => alg::HMAC_SHA_1_96,
        other => {
            errs.add(
                format!("{p}.algorithm"),
                format!("\"{other}\": expected sha256 or sha1"),
            );
            alg::HMAC_SHA_256_128
        }
    };
    let secret = match (&k.secret, &k.secret_file) {
        (Some(s), None) => s.as_bytes().to_vec(),
        (None, Some(f)) => {
            let f = base.join(f);
            match std::fs::read_to_string(&f) {
                Ok(s) => s.trim_end_matches(['\n', '\r']).as_bytes().to_vec(),
                Err(e) => {
                    errs.add(
                        format!("{p}.secret_file"),
                        format!("cannot read {}: {e}", f.display()),
                    );
                    return None;
                }
            }
        }
        _ => {
            errs.add(p, "give exactly one of `secret` or `secret_file`");
            return None;
        }
    };
    if secret.is_empty() {
        errs.add(format!("{p}.secret"), "is empty");
    }
    Some((
        AuthKey::new(Some(k.key_id), secret).with_algorithm(alg_id),
        alg_id,
    ))
}

/// A name pattern of `[[site.allowed]]`: not empty, no NUL (names travel NUL-terminated),
/// and `*` only at the end.
fn check_name_pattern(errs: &mut Errors, path: &str, pattern: &str) {
    let body = pattern.strip_suffix('*').unwrap_or(pattern);
    if pattern.is_empty() || pattern.contains('\0') || body.contains('*') {
        errs.add(
            path,
            format!("\"{pattern}\": expected a name, or the start of names followed by *"),
        );
    }
}

fn parse_prefix(errs: &mut Errors, path: &str, text: &str, iid: u32) -> Option<EidPrefix> {
    if iid >= crate::wire::CONTROL_INSTANCE_ID {
        errs.add(
            path.replace("prefix", "instance_id"),
            format!("{iid} is not a usable Instance-ID (24 bits; 0xFFFFFF is reserved)"),
        );
        return None;
    }
    match text.parse::<IpNet>() {
        Ok(n) if n.trunc() == n => Some(EidPrefix::new(iid, n)),
        Ok(n) => {
            errs.add(
                path,
                format!("\"{text}\" has host bits set (did you mean {}?)", n.trunc()),
            );
            None
        }
        Err(_) => {
            errs.add(
                path,
                format!("\"{text}\" is not an IP prefix (like 10.1.0.0/16)"),
            );
            None
        }
    }
}

fn parse_ip(errs: &mut Errors, path: &str, text: &str) -> Option<IpAddr> {
    match text.parse() {
        Ok(a) => Some(a),
        Err(_) => {
            errs.add(path, format!("\"{text}\" is not an IP address"));
            None
        }
    }
}

/// Reads and validates a configuration file; relative paths in it are relative to its
/// directory.
pub fn load(path: &Path) -> Result<NodeConfig, Vec<ConfigError>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![ConfigError {
            path: path.display().to_string(),
            message: format!("cannot read: {e}"),
        }]
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    parse(&text, base)
}

/// Reads the TOML into the raw configuration. A syntax error is reported alone, at its line
/// and column; type errors (a string where a number goes, an unknown field...) are all
/// reported, each at its field path: the first is found, its value taken out, and the
/// document read again.
fn deserialize(text: &str) -> Result<RawConfig, Vec<ConfigError>> {
    let syntax = match toml::from_str::<RawConfig>(text) {
        Ok(raw) => return Ok(raw),
        Err(e) => e,
    };
    let Ok(mut table) = text.parse::<toml::Table>() else {
        return Err(vec![syntax_error(text, &syntax)]);
    };
    let mut errors = Vec::new();
    for _ in 0..100 {
        let doc = toml::Value::Table(table.clone());
        match serde_path_to_error::deserialize::<_, RawConfig>(doc) {
            Ok(raw) if errors.is_empty() => return Ok(raw),
            Ok(_) => break,
            Err(e) => {
                let path = e.path().to_string();
                // toml adds "in `table.field`" on a second line; the path says it already.
                let inner = e.inner().to_string();
                let message = inner.lines().next().unwrap_or_default().to_string();
                let removed = remove_at(&mut table, e.path(), &inner);
                errors.push(ConfigError {
                    path: if path == "." {
                        "(top level)".into()
                    } else {
                        path
                    },
                    message,
                });
                if !removed {
                    break;
                }
            }
        }
    }
    Err(errors)
}

/// Takes the value at `path` out of the document (an unknown field), or puts a harmless
/// value of the expected type in its place (a wrong type: the error says which type was
/// expected), so that reading again goes past it; false when nothing could be done.
fn remove_at(table: &mut toml::Table, path: &serde_path_to_error::Path, message: &str) -> bool {
    use serde_path_to_error::Segment;
    let segs: Vec<&Segment> = path.iter().collect();
    let replacement = if message.starts_with("unknown field") {
        None
    } else {
        match placeholder(message) {
            Some(v) => Some(v),
            None => return false,
        }
    };
    fn in_table(t: &mut toml::Table, segs: &[&Segment], with: Option<toml::Value>) -> bool {
        match segs {
            [Segment::Map { key }] => match with {
                None => t.remove(key.as_str()).is_some(),
                Some(v) => t.insert(key.clone(), v).is_some(),
            },
            [Segment::Map { key }, rest @ ..] => t
                .get_mut(key.as_str())
                .is_some_and(|v| in_value(v, rest, with)),
            _ => false,
        }
    }
    fn in_value(v: &mut toml::Value, segs: &[&Segment], with: Option<toml::Value>) -> bool {
        match (v, segs) {
            (toml::Value::Table(t), s) => in_table(t, s, with),
            (toml::Value::Array(a), [Segment::Seq { index }]) => match (a.get_mut(*index), with) {
                (Some(slot), Some(v)) => {
                    *slot = v;
                    true
                }
                _ => false,
            },
            (toml::Value::Array(a), [Segment::Seq { index }, rest @ ..]) => {
                a.get_mut(*index).is_some_and(|v| in_value(v, rest, with))
            }
            _ => false,
        }
    }
    in_table(table, &segs, replacement)
}

/// A value of the type a serde error says was expected.
fn placeholder(message: &str) -> Option<toml::Value> {
    let expected = message.rsplit("expected ").next()?;
    Some(if expected.starts_with('u') || expected.starts_with('i') {
        toml::Value::Integer(0)
    } else if expected.contains("bool") {
        toml::Value::Boolean(false)
    } else if expected.contains("sequence") {
        toml::Value::Array(Vec::new())
    } else if expected.contains("struct") || expected.contains("map") {
        toml::Value::Table(toml::Table::new())
    } else if expected.contains("string") || expected.contains("path") || expected.contains("char")
    {
        toml::Value::String(String::new())
    } else {
        return None;
    })
}

fn syntax_error(text: &str, e: &toml::de::Error) -> ConfigError {
    let (line, col) = e
        .span()
        .map(|s| {
            let before = &text[..s.start.min(text.len())];
            (
                before.lines().count().max(1),
                before.rsplit('\n').next().map_or(0, str::len) + 1,
            )
        })
        .unwrap_or((0, 0));
    ConfigError {
        path: format!("line {line}, column {col}"),
        message: e.message().to_string(),
    }
}

/// Validates configuration text.
pub fn parse(text: &str, base: &Path) -> Result<NodeConfig, Vec<ConfigError>> {
    let raw: RawConfig = deserialize(text)?;
    let mut errs = Errors(Vec::new());

    let name = raw.name.clone().unwrap_or_default();
    if name.is_empty() || name.contains('\0') {
        errs.add(
            "name",
            "required: the node's name (it is also registered as a distinguished-name EID)",
        );
    }

    if raw.rloc.is_empty() {
        errs.add(
            "rloc",
            "at least one [[rloc]] is required (an address or an interface)",
        );
    }
    let mut rlocs = Vec::new();
    for (i, r) in raw.rloc.iter().enumerate() {
        let p = format!("rloc[{i}]");
        let source = match (&r.address, &r.interface) {
            (Some(a), None) => {
                parse_ip(&mut errs, &format!("{p}.address"), a).map(RlocSource::Address)
            }
            (None, Some(n)) => {
                let (v4, v6) = match r.family.as_deref().unwrap_or("both") {
                    "ipv4" => (true, false),
                    "ipv6" => (false, true),
                    "both" => (true, true),
                    other => {
                        errs.add(
                            format!("{p}.family"),
                            format!("\"{other}\": expected ipv4, ipv6 or both"),
                        );
                        (true, true)
                    }
                };
                Some(RlocSource::Interface {
                    name: n.clone(),
                    v4,
                    v6,
                })
            }
            _ => {
                errs.add(&p, "give exactly one of `address` or `interface`");
                None
            }
        };
        if let Some(source) = source {
            if rlocs.iter().any(|r: &RlocConfig| r.source == source) {
                errs.add(&p, "the same RLOC is listed twice");
            }
            rlocs.push(RlocConfig {
                source,
                priority: r.priority,
                weight: r.weight,
            });
        }
    }

    let mut database = Vec::new();
    let mut database_paths = Vec::new();
    for (i, d) in raw.database.iter().enumerate() {
        if let Some(eid) = parse_prefix(
            &mut errs,
            &format!("database[{i}].prefix"),
            &d.prefix,
            d.instance_id,
        ) {
            database.push(DatabaseMapping { eid });
            database_paths.push((format!("database[{i}].prefix"), eid));
        }
    }
    check_overlaps(&mut errs, "database prefix", &database_paths);

    let mut multicast_interface = None;
    let mut dns = None;
    let mapping_system = match (&raw.peer_group, &raw.pull) {
        (Some(g), None) => {
            let group = parse_ip(&mut errs, "peer_group.group", &g.group);
            if let Some(a) = group
                && !a.is_multicast()
            {
                errs.add(
                    "peer_group.group",
                    format!("{a} is not a multicast address"),
                );
            }
            check_range(
                &mut errs,
                "peer_group.multicast_ttl",
                g.multicast_ttl,
                1..=255,
            );
            let delivery = match g.delivery.as_str() {
                "multicast" => Delivery::Multicast {
                    ttl: g.multicast_ttl.unwrap_or(32),
                },
                "replicate" => Delivery::Replicate,
                other => {
                    errs.add(
                        "peer_group.delivery",
                        format!("\"{other}\": expected multicast or replicate"),
                    );
                    Delivery::Replicate
                }
            };
            let seeds = g
                .seeds
                .iter()
                .enumerate()
                .filter_map(|(i, s)| parse_ip(&mut errs, &format!("peer_group.seeds[{i}]"), s))
                .collect();
            multicast_interface = g.multicast_interface.clone();
            Some(MappingSystem::Push(PeerGroup {
                group: group.unwrap_or(IpAddr::from([224, 0, 0, 0])),
                delivery,
                seeds,
                lispers_membership_encoding: g.lispers_membership_encoding,
            }))
        }
        (None, Some(p)) => {
            if p.modulus == 0 || p.modulus > 255 {
                errs.add("pull.modulus", format!("{}: expected 1 to 255", p.modulus));
            }
            if p.dns_suffix.is_empty() {
                errs.add(
                    "pull.dns_suffix",
                    "required: the DNS suffix of the Map-Server set names",
                );
            }
            let hash = match p.hash.as_str() {
                "draft" => PullHash::Draft {
                    mask_len: p.hash_mask_len,
                },
                "lispers" => PullHash::Lispers {
                    width: p.hash_width.unwrap_or(6),
                },
                other => {
                    errs.add(
                        "pull.hash",
                        format!("\"{other}\": expected draft or lispers"),
                    );
                    PullHash::Lispers { width: 6 }
                }
            };
            if let Some(w) = p.hash_width
                && !(1..=32).contains(&w)
            {
                errs.add("pull.hash_width", format!("{w}: expected 1 to 32 bytes"));
            }
            let server = p.dns_server.as_ref().and_then(|s| match s.parse() {
                Ok(a) => Some(a),
                Err(_) => {
                    errs.add("pull.dns_server", format!("\"{s}\" is not an address:port"));
                    None
                }
            });
            check_range(
                &mut errs,
                "pull.resolve_interval_secs",
                p.resolve_interval_secs,
                1..=86_400,
            );
            dns = Some(DnsSettings {
                server,
                resolve_interval: Duration::from_secs(p.resolve_interval_secs.unwrap_or(30).max(1)),
            });
            Some(MappingSystem::Pull(PullMode {
                modulus: p.modulus.clamp(1, 255),
                dns_suffix: p.dns_suffix.clone(),
                hash,
            }))
        }
        (Some(_), Some(_)) => {
            errs.add(
                "peer_group",
                "give either [peer_group] (push mode) or [pull], not both",
            );
            None
        }
        (None, None) => {
            errs.add(
                "peer_group",
                "required: [peer_group] (push mode) or [pull] (pull mode)",
            );
            None
        }
    };

    let mut site = SitePolicy::default();
    match &raw.site {
        None => errs.add("site", "required: [[site.key]] and [[site.allowed]]"),
        Some(s) => {
            if s.key.is_empty() {
                errs.add(
                    "site.key",
                    "at least one [[site.key]] is required: Map-Registers are authenticated",
                );
            }
            let mut keys = Vec::new();
            for (i, k) in s.key.iter().enumerate() {
                if let Some(key) = parse_key(&mut errs, &format!("site.key[{i}]"), k, base) {
                    keys.push(key);
                }
            }
            site.own_key = keys.first().cloned();
            site.keys = KeyRing::new(keys.into_iter().map(|(k, _)| k).collect());
            site.keys.accept_truncated = s.accept_truncated_auth;
            let mut allowed_paths = Vec::new();
            for (i, a) in s.allowed.iter().enumerate() {
                let prefix = match (&a.prefix, &a.name) {
                    (Some(p), None) => p,
                    (None, Some(n)) => {
                        check_name_pattern(&mut errs, &format!("site.allowed[{i}].name"), n);
                        if a.accept_more_specifics {
                            errs.add(
                                format!("site.allowed[{i}].accept_more_specifics"),
                                "applies to a prefix, not to a name (end the name with * instead)",
                            );
                        }
                        site.allowed_names.push(AllowedName {
                            pattern: n.clone(),
                            instance_id: a.instance_id,
                        });
                        continue;
                    }
                    _ => {
                        errs.add(
                            format!("site.allowed[{i}]"),
                            "give exactly one of `prefix` or `name`",
                        );
                        continue;
                    }
                };
                if let Some(eid) = parse_prefix(
                    &mut errs,
                    &format!("site.allowed[{i}].prefix"),
                    prefix,
                    a.instance_id,
                ) {
                    site.allowed.push(AllowedPrefix {
                        eid,
                        accept_more_specifics: a.accept_more_specifics,
                    });
                    allowed_paths.push((format!("site.allowed[{i}].prefix"), eid));
                }
            }
            check_overlaps(&mut errs, "allowed prefix", &allowed_paths);
            site.accept_unauthenticated_membership = s.accept_unauthenticated_membership;
        }
    }
    for (i, d) in database.iter().enumerate() {
        let ok = site.allowed.iter().any(|a| {
            a.eid.iid == d.eid.iid
                && (a.eid.prefix == d.eid.prefix
                    || (a.accept_more_specifics && a.eid.prefix.contains(&d.eid.prefix)))
        });
        if !ok && raw.site.is_some() {
            errs.add(
                format!("database[{i}].prefix"),
                format!(
                    "{} is not allowed by any [[site.allowed]]: every member would refuse it",
                    d.eid
                ),
            );
        }
    }
    let mut map_servers: Vec<crate::control::MapServerPeer> = Vec::new();
    for (i, m) in raw.map_server.iter().enumerate() {
        let p = format!("map_server[{i}]");
        let address = parse_ip(&mut errs, &format!("{p}.address"), &m.address);
        let key = RawKey {
            key_id: m.key_id,
            secret: m.secret.clone(),
            secret_file: m.secret_file.clone(),
            algorithm: m.algorithm.clone(),
        };
        let key = parse_key(&mut errs, &p, &key, base);
        if let Some(a) = address
            && map_servers.iter().any(|m| m.address == a)
        {
            errs.add(format!("{p}.address"), format!("{a} is listed twice"));
        }
        if let (Some(address), Some((key, alg_id))) = (address, key) {
            map_servers.push(crate::control::MapServerPeer {
                address,
                key,
                alg_id,
                proxy_reply: m.proxy_reply,
            });
        }
    }
    let mut map_resolvers: Vec<IpAddr> = Vec::new();
    for (i, m) in raw.map_resolver.iter().enumerate() {
        let path = format!("map_resolver[{i}].address");
        if let Some(a) = parse_ip(&mut errs, &path, &m.address) {
            if map_resolvers.contains(&a) {
                errs.add(path, format!("{a} is listed twice"));
            } else {
                map_resolvers.push(a);
            }
        }
    }
    let mut nat = crate::control::NatConfig {
        rtr: raw.nat.rtr,
        rtrs: Vec::new(),
        use_rtr: raw.nat.use_rtr.unwrap_or(true),
    };
    for (i, a) in raw.nat.rtrs.iter().enumerate() {
        let path = format!("nat.rtrs[{i}]");
        if let Some(a) = parse_ip(&mut errs, &path, a) {
            if nat.rtrs.contains(&a) {
                errs.add(path, format!("{a} is listed twice"));
            } else {
                nat.rtrs.push(a);
            }
        }
    }

    if raw.register_name.unwrap_or(true)
        && raw.site.is_some()
        && !name.is_empty()
        && !site
            .allowed_names
            .iter()
            .any(|a| a.matches(0, name.as_bytes()))
    {
        errs.add(
            "name",
            format!(
                "\"{name}\" is not allowed by any [[site.allowed]] name: every member would \
                 refuse it (add `name = \"{name}\"` there, or set register_name = false)"
            ),
        );
    }

    let t = &raw.timers;
    let d = Timers::default();
    let day = 86_400;
    check_range(
        &mut errs,
        "timers.register_interval_secs",
        t.register_interval_secs,
        1..=3600,
    );
    check_range(
        &mut errs,
        "timers.record_ttl_mins",
        t.record_ttl_mins,
        1..=day as u32 / 60 * 7,
    );
    check_range(
        &mut errs,
        "timers.map_reply_ttl_mins",
        t.map_reply_ttl_mins,
        1..=day as u32 / 60 * 7,
    );
    check_range(
        &mut errs,
        "timers.negative_ttl_mins",
        t.negative_ttl_mins,
        0..=day as u32 / 60,
    );
    check_range(
        &mut errs,
        "timers.unregistered_ttl_mins",
        t.unregistered_ttl_mins,
        0..=day as u32 / 60,
    );
    check_range(
        &mut errs,
        "timers.requests_per_second",
        t.requests_per_second,
        1..=1_000_000,
    );
    check_range(
        &mut errs,
        "timers.probe_interval_secs",
        t.probe_interval_secs,
        0..=3600,
    );
    check_range(
        &mut errs,
        "timers.rekey_interval_secs",
        t.rekey_interval_secs,
        1..=7 * day,
    );
    check_range(
        &mut errs,
        "timers.rekey_packets",
        t.rekey_packets,
        1000..=1 << 62,
    );
    let t = RawTimers {
        register_interval_secs: t.register_interval_secs.map(|v| v.clamp(1, 3600)),
        probe_interval_secs: t.probe_interval_secs.map(|v| v.min(3600)),
        rekey_interval_secs: t.rekey_interval_secs.map(|v| v.clamp(1, 7 * day)),
        ..*t
    };
    let t = &t;
    let timers = Timers {
        register_interval: Duration::from_secs(
            t.register_interval_secs
                .unwrap_or(d.register_interval.as_secs()),
        ),
        record_ttl_mins: t.record_ttl_mins.unwrap_or(d.record_ttl_mins),
        map_reply_ttl_mins: t.map_reply_ttl_mins.unwrap_or(d.map_reply_ttl_mins),
        negative_ttl_mins: t.negative_ttl_mins.unwrap_or(d.negative_ttl_mins),
        unregistered_ttl_mins: t.unregistered_ttl_mins.unwrap_or(d.unregistered_ttl_mins),
        requests_per_second: t.requests_per_second.unwrap_or(d.requests_per_second),
        probe_interval: t
            .probe_interval_secs
            .map_or(d.probe_interval, Duration::from_secs),
        rekey_interval: t
            .rekey_interval_secs
            .map_or(d.rekey_interval, Duration::from_secs),
        rekey_packets: t.rekey_packets.unwrap_or(d.rekey_packets),
    };
    let interval_ok = raw
        .timers
        .register_interval_secs
        .is_none_or(|v| (1..=3600).contains(&v));
    if interval_ok && u64::from(timers.record_ttl_mins) * 60 < timers.register_interval.as_secs() {
        errs.add(
            "timers.record_ttl_mins",
            format!(
                "{} min is shorter than the register interval ({} s): registrations would expire between registers",
                timers.record_ttl_mins,
                timers.register_interval.as_secs()
            ),
        );
    }
    let listen = raw
        .listen
        .addresses
        .iter()
        .enumerate()
        .filter_map(|(i, a)| parse_ip(&mut errs, &format!("listen.addresses[{i}]"), a))
        .collect();

    let mut instances = Vec::new();
    for (i, inst) in raw.instance.iter().enumerate() {
        let p = format!("instance[{i}]");
        if inst.instance_id >= crate::wire::CONTROL_INSTANCE_ID {
            errs.add(
                format!("{p}.instance_id"),
                "0xFFFFFF is reserved for control traffic",
            );
        }
        let tun = inst
            .tun
            .clone()
            .unwrap_or_else(|| format!("lisp{}", inst.instance_id));
        if tun.is_empty() || tun.len() > 15 {
            errs.add(
                format!("{p}.tun"),
                format!("\"{tun}\": an interface name has 1 to 15 characters"),
            );
        }
        let mut addresses = Vec::new();
        for (k, a) in inst.addresses.iter().enumerate() {
            let ap = format!("{p}.addresses[{k}]");
            if let Some(ip) = parse_ip(&mut errs, &ap, a) {
                if !database
                    .iter()
                    .any(|d| d.eid.iid == inst.instance_id && d.eid.prefix.contains(&ip))
                {
                    errs.add(
                        ap,
                        format!(
                            "{ip} is not inside a [[database]] prefix of Instance-ID {}",
                            inst.instance_id
                        ),
                    );
                }
                addresses.push(ip);
            }
        }
        if instances.iter().any(|x: &InstanceConfig| x.tun == tun) {
            errs.add(
                format!("{p}.tun"),
                format!("\"{tun}\" is used by another [[instance]]"),
            );
        }
        if instances
            .iter()
            .any(|x: &InstanceConfig| x.instance_id == inst.instance_id)
        {
            errs.add(
                format!("{p}.instance_id"),
                format!("Instance-ID {} has two devices", inst.instance_id),
            );
        }
        if let Some(t) = inst.table
            && (t == 0 || (253..=255).contains(&t))
        {
            errs.add(
                format!("{p}.table"),
                format!("{t} is reserved (0 unspecified, 253 default, 254 main, 255 local)"),
            );
        }
        let mtu = match inst.mtu {
            Some(m) if !(576..=65535).contains(&m) => {
                errs.add(format!("{p}.mtu"), format!("{m}: expected 576 to 65535"));
                None
            }
            m => m.map(|m| m as u16),
        };
        instances.push(InstanceConfig {
            instance_id: inst.instance_id,
            tun,
            addresses,
            table: inst.table,
            mtu,
        });
    }

    let underlay_mtu = match raw.data_plane.underlay_mtu.unwrap_or(1500) {
        m @ 1280..=65535 => m as u16,
        m => {
            errs.add(
                "data_plane.underlay_mtu",
                format!("{m}: expected 1280 to 65535"),
            );
            1500
        }
    };
    let workers = match raw.data_plane.workers {
        None => {
            std::thread::available_parallelism().map_or(1, |n| n.get().min(DEFAULT_WORKERS_AT_MOST))
        }
        Some(n @ 1..=MAX_WORKERS_U32) => n as usize,
        Some(n) => {
            errs.add(
                "data_plane.workers",
                format!("{n}: expected 1 to {MAX_WORKERS}"),
            );
            1
        }
    };
    let data_receive_buffer = match raw
        .data_plane
        .receive_buffer_kib
        .unwrap_or(DEFAULT_RECEIVE_BUFFER_KIB)
    {
        k @ 64..=65536 => k as usize * 1024,
        k => {
            errs.add(
                "data_plane.receive_buffer_kib",
                format!("{k}: expected 64 to 65536"),
            );
            DEFAULT_RECEIVE_BUFFER_KIB as usize * 1024
        }
    };
    let encryption = match raw.data_plane.encryption.as_deref().unwrap_or("aes128-gcm") {
        "aes128-gcm" => Some(crate::crypto::lisp_crypto::CipherSuite::Aes128Gcm),
        "chacha20-poly1305" => Some(crate::crypto::lisp_crypto::CipherSuite::ChaCha20Poly1305),
        "none" => None,
        other => {
            errs.add(
                "data_plane.encryption",
                format!("\"{other}\": expected aes128-gcm, chacha20-poly1305 or none"),
            );
            None
        }
    };

    let mut crypto_peers = Vec::new();
    for (i, peer) in raw.data_plane.peer.iter().enumerate() {
        use crate::control::CryptoProfile;
        let path = format!("data_plane.peer[{i}]");
        let profile = match peer.profile.as_str() {
            "decent" => Some(CryptoProfile::Decent),
            "rfc8061" => Some(CryptoProfile::Rfc8061),
            "lispers-cs6" => Some(CryptoProfile::LispersCs6),
            other => {
                errs.add(
                    format!("{path}.profile"),
                    format!("\"{other}\": expected decent, rfc8061 or lispers-cs6"),
                );
                None
            }
        };
        if peer.rlocs.is_empty() {
            errs.add(format!("{path}.rlocs"), "lists no RLOC prefix");
        }
        for (j, text) in peer.rlocs.iter().enumerate() {
            let net = match text.parse::<IpNet>() {
                Ok(n) => Some(n),
                Err(_) => text.parse::<IpAddr>().ok().map(IpNet::from),
            };
            match (net, profile) {
                (Some(n), _) if n.trunc() != n => errs.add(
                    format!("{path}.rlocs[{j}]"),
                    format!("\"{text}\" has host bits set (did you mean {}?)", n.trunc()),
                ),
                (Some(rlocs), Some(profile)) => {
                    if crypto_peers
                        .iter()
                        .any(|p: &crate::control::CryptoPeer| p.rlocs == rlocs)
                    {
                        errs.add(
                            format!("{path}.rlocs[{j}]"),
                            format!("{rlocs} is listed twice"),
                        );
                    }
                    crypto_peers.push(crate::control::CryptoPeer { rlocs, profile });
                }
                (Some(_), None) => {}
                (None, _) => errs.add(
                    format!("{path}.rlocs[{j}]"),
                    format!("\"{text}\" is not an address or prefix (like 192.0.2.21/32)"),
                ),
            }
        }
    }

    let api = ApiSettings {
        listen: match raw.api.listen.as_deref().unwrap_or("127.0.0.1:8080") {
            "off" => None,
            text => match text.parse() {
                Ok(a) => Some(a),
                Err(_) => {
                    errs.add(
                        "api.listen",
                        format!("\"{text}\": expected address:port (127.0.0.1:8080) or \"off\""),
                    );
                    None
                }
            },
        },
        token_file: raw.api.token_file.map(|f| base.join(f)),
    };
    let site_id = raw.site_id.unwrap_or(0).to_be_bytes();
    let state_dir = base.join(
        raw.state_dir
            .unwrap_or_else(|| PathBuf::from(format!("state/{name}"))),
    );
    match (errs.0.is_empty(), mapping_system) {
        (true, Some(mapping_system)) => Ok(NodeConfig {
            name,
            register_name: raw.register_name.unwrap_or(true),
            state_dir,
            site_id,
            rlocs,
            database,
            mapping_system,
            multicast_interface,
            dns,
            site,
            timers,
            listen,
            control_port: raw.listen.control_port.unwrap_or(crate::wire::CONTROL_PORT),
            data_port: raw.listen.data_port.unwrap_or(crate::wire::DATA_PORT),
            instances,
            encryption,
            allow_clear: raw.data_plane.allow_clear || encryption.is_none(),
            crypto_peers,
            underlay_mtu,
            workers,
            data_receive_buffer,
            api,
            map_servers,
            map_resolvers,
            nat,
        }),
        _ => Err(errs.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "n1"
[[rloc]]
address = "127.0.0.1"
[[database]]
prefix = "10.1.0.0/16"
[peer_group]
group = "224.1.1.1"
delivery = "replicate"
seeds = ["127.0.0.2"]
[site]
[[site.key]]
key_id = 1
secret = "k"
[[site.allowed]]
prefix = "10.0.0.0/8"
accept_more_specifics = true
[[site.allowed]]
name = "n*"
"#;

    #[test]
    fn a_good_config() {
        let c = parse(GOOD, Path::new("/etc/decent")).unwrap();
        assert_eq!(c.name, "n1");
        assert_eq!(c.state_dir, PathBuf::from("/etc/decent/state/n1"));
        assert_eq!(c.database[0].eid.to_string(), "[0]10.1.0.0/16");
        assert_eq!(c.timers.register_interval, Duration::from_secs(60));
        assert!(
            matches!(&c.mapping_system, MappingSystem::Push(g) if g.delivery == Delivery::Replicate)
        );
        assert_eq!(
            c.site.own_key.as_ref().map(|(k, a)| (k.key_id, *a)),
            Some((Some(1), 2))
        );
    }

    #[test]
    fn the_api_section() {
        let c = parse(GOOD, Path::new("/etc/decent")).unwrap();
        assert_eq!(c.api.listen, Some("127.0.0.1:8080".parse().unwrap()));
        assert_eq!(c.api.token_file, None);
        let text = format!("{GOOD}[api]\nlisten = \"[::1]:9000\"\ntoken_file = \"t\"\n");
        let c = parse(&text, Path::new("/etc/decent")).unwrap();
        assert_eq!(c.api.listen, Some("[::1]:9000".parse().unwrap()));
        assert_eq!(c.api.token_file, Some(PathBuf::from("/etc/decent/t")));
        let c = parse(&format!("{GOOD}[api]\nlisten = \"off\"\n"), Path::new(".")).unwrap();
        assert_eq!(c.api.listen, None);
        let errs = parse(&format!("{GOOD}[api]\nlisten = \"8080\"\n"), Path::new(".")).unwrap_err();
        assert_eq!(errs[0].path, "api.listen", "{errs:?}");
    }

    /// Numbers out of range are errors before they become durations (a register interval of
    /// 2^64-1 s passed and then panicked the node on an overflow; a multicast TTL of 0 passed).
    /// Every type error is listed at its field path, not only the first by line and column.
    #[test]
    fn every_type_error_with_its_path() {
        let text = GOOD
            .replace("name = \"n1\"", "name = \"n1\"\nbogus = 3")
            .replace(
                "prefix = \"10.1.0.0/16\"",
                "prefix = 10\ninstance_id = \"five\"",
            )
            .replace(
                "seeds = [\"127.0.0.2\"]",
                "seeds = [\"127.0.0.2\", 5]\nmulticast_ttl = 300",
            )
            .replace(
                "accept_more_specifics = true",
                "accept_more_specifics = \"yes\"",
            );
        let errs = parse(&text, Path::new(".")).unwrap_err();
        let mut paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
        paths.sort();
        assert_eq!(
            paths,
            [
                "bogus",
                "database[0].instance_id",
                "database[0].prefix",
                "peer_group.multicast_ttl",
                "peer_group.seeds[1]",
                "site.allowed[0].accept_more_specifics",
            ],
            "{errs:?}"
        );
        assert!(errs.iter().all(|e| !e.message.contains('\n')), "{errs:?}");
        // A syntax error stops the reading: it alone is reported, at its line.
        let errs = parse("name = \"x", Path::new(".")).unwrap_err();
        assert_eq!(errs.len(), 1);
        assert!(errs[0].path.starts_with("line 1"), "{errs:?}");
    }

    #[test]
    fn numbers_are_range_checked() {
        let text = format!(
            "{GOOD}[timers]\nregister_interval_secs = 18446744073709551615\nprobe_interval_secs = 99999\n\
             requests_per_second = 0\nrekey_packets = 10\nmap_reply_ttl_mins = 0\n"
        )
        .replace("delivery = \"replicate\"", "delivery = \"multicast\"\nmulticast_ttl = 0");
        let errs = parse(&text, Path::new(".")).unwrap_err();
        let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "peer_group.multicast_ttl",
                "timers.register_interval_secs",
                "timers.map_reply_ttl_mins",
                "timers.requests_per_second",
                "timers.probe_interval_secs",
                "timers.rekey_packets",
            ],
            "{errs:?}"
        );
        assert!(errs[1].message.contains("expected 1 to 3600"), "{errs:?}");
        // A record TTL shorter than the register interval would expire registrations.
        let short = format!("{GOOD}[timers]\nregister_interval_secs = 600\nrecord_ttl_mins = 3\n");
        let errs = parse(&short, Path::new(".")).unwrap_err();
        assert_eq!(errs[0].path, "timers.record_ttl_mins", "{errs:?}");
    }

    /// Names are allowed like prefixes: the node's own name must be allowed (or not
    /// registered), a pattern has `*` only at its end, and an entry gives a prefix or a name.
    #[test]
    fn names_obey_the_site_policy() {
        let c = parse(GOOD, Path::new(".")).unwrap();
        assert_eq!(c.site.allowed_names.len(), 1);
        assert!(c.site.allowed_names[0].matches(0, b"n17"));
        assert!(!c.site.allowed_names[0].matches(0, b"m1"));
        assert!(!c.site.allowed_names[0].matches(3, b"n1"));
        let other = GOOD.replace("name = \"n1\"", "name = \"gw\"");
        let errs = parse(&other, Path::new(".")).unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].path, "name");
        assert!(
            errs[0].message.contains("register_name = false"),
            "{errs:?}"
        );
        parse(&format!("register_name = false\n{other}"), Path::new(".")).unwrap();
        let bad = GOOD.replace("name = \"n*\"", "name = \"n*x\"\nprefix = \"10.9.0.0/16\"")
            + "[[site.allowed]]\nname = \"a*b\"\naccept_more_specifics = true\n";
        let errs = parse(&bad, Path::new(".")).unwrap_err();
        let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "site.allowed[1]",
                "site.allowed[2].name",
                "site.allowed[2].accept_more_specifics",
                "name"
            ],
            "{errs:?}"
        );
    }

    /// Duplicate or overlapping database and allowed prefixes, duplicate RLOCs and TUN names
    /// are errors, each at its own path.
    #[test]
    fn duplicates_and_overlaps_are_errors() {
        let text = GOOD
            .replace(
                "[[database]]\nprefix = \"10.1.0.0/16\"",
                "[[database]]\nprefix = \"10.1.0.0/16\"\n[[database]]\nprefix = \"10.1.2.0/24\"\n\
                 [[database]]\nprefix = \"10.1.2.0/24\"\ninstance_id = 5",
            )
            .replace(
                "[[rloc]]\naddress = \"127.0.0.1\"",
                "[[rloc]]\naddress = \"127.0.0.1\"\n[[rloc]]\naddress = \"127.0.0.1\"",
            );
        let text = format!(
            "{text}[[site.allowed]]\nprefix = \"10.0.0.0/8\"\n[[site.allowed]]\nprefix = \"10.0.0.0/8\"\ninstance_id = 5\naccept_more_specifics = true\n\
             [[instance]]\ntun = \"vpn\"\n[[instance]]\ninstance_id = 5\ntun = \"vpn\"\n"
        );
        let errs = parse(&text, Path::new(".")).unwrap_err();
        let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "rloc[1]",
                "database[1].prefix",
                "site.allowed[2].prefix",
                "instance[1].tun"
            ],
            "{errs:?}"
        );
        assert!(
            errs[1].message.contains("overlaps [0]10.1.0.0/16"),
            "{errs:?}"
        );
        assert!(errs[2].message.contains("the same as"), "{errs:?}");
    }

    /// `[[map_server]]` and `[[map_resolver]]`: keys read like site keys, addresses checked,
    /// none listed twice.
    #[test]
    fn map_servers_and_resolvers() {
        let text = format!(
            "{GOOD}[[map_server]]\naddress = \"192.0.2.21\"\nsecret = \"ms-key\"\nalgorithm = \"sha1\"\n\
             proxy_reply = true\n[[map_resolver]]\naddress = \"192.0.2.21\"\n[[map_resolver]]\naddress = \"2001:db8::1\"\n"
        );
        let c = parse(&text, Path::new(".")).unwrap();
        assert_eq!(c.map_servers.len(), 1);
        let ms = &c.map_servers[0];
        assert_eq!(ms.address, "192.0.2.21".parse::<IpAddr>().unwrap());
        assert_eq!(
            (ms.key.key_id, ms.alg_id, ms.proxy_reply),
            (Some(0), 1, true)
        );
        assert_eq!(ms.key.secret, b"ms-key");
        assert_eq!(c.map_resolvers.len(), 2);
        let bad = format!(
            "{GOOD}[[map_server]]\naddress = \"x\"\nsecret = \"k\"\n[[map_server]]\naddress = \"192.0.2.1\"\n\
             [[map_server]]\naddress = \"192.0.2.1\"\nsecret = \"k\"\nalgorithm = \"md5\"\n\
             [[map_resolver]]\naddress = \"192.0.2.1\"\n[[map_resolver]]\naddress = \"192.0.2.1\"\n"
        );
        let errs = parse(&bad, Path::new(".")).unwrap_err();
        let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "map_server[0].address",
                "map_server[1]",
                "map_server[2].algorithm",
                "map_resolver[1].address"
            ],
            "{errs:?}"
        );
    }

    #[test]
    fn crypto_peer_profiles() {
        use crate::control::{CryptoPeer, CryptoProfile};
        let text = format!(
            "{GOOD}[data_plane]\n[[data_plane.peer]]\nrlocs = [\"192.0.2.21\", \"198.51.100.0/24\"]\n\
             profile = \"lispers-cs6\"\n[[data_plane.peer]]\nrlocs = [\"2001:db8::/32\"]\nprofile = \"rfc8061\"\n"
        );
        let c = parse(&text, Path::new(".")).unwrap();
        assert_eq!(
            c.crypto_peers,
            vec![
                CryptoPeer {
                    rlocs: "192.0.2.21/32".parse().unwrap(),
                    profile: CryptoProfile::LispersCs6
                },
                CryptoPeer {
                    rlocs: "198.51.100.0/24".parse().unwrap(),
                    profile: CryptoProfile::LispersCs6
                },
                CryptoPeer {
                    rlocs: "2001:db8::/32".parse().unwrap(),
                    profile: CryptoProfile::Rfc8061
                },
            ]
        );
        let bad = format!(
            "{GOOD}[data_plane]\n[[data_plane.peer]]\nrlocs = [\"192.0.2.1/8\", \"nope\", \"192.0.2.9\", \"192.0.2.9\"]\n\
             profile = \"wireguard\"\n[[data_plane.peer]]\nrlocs = []\nprofile = \"decent\"\n"
        );
        let errs = parse(&bad, Path::new(".")).unwrap_err();
        let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "data_plane.peer[0].profile",
                "data_plane.peer[0].rlocs[0]",
                "data_plane.peer[0].rlocs[1]",
                "data_plane.peer[1].rlocs"
            ],
            "{errs:?}"
        );
        let dup = format!(
            "{GOOD}[data_plane]\n[[data_plane.peer]]\nrlocs = [\"192.0.2.9\", \"192.0.2.9/32\"]\nprofile = \"rfc8061\"\n"
        );
        let errs = parse(&dup, Path::new(".")).unwrap_err();
        assert_eq!(errs[0].path, "data_plane.peer[0].rlocs[1]", "{errs:?}");
        assert!(errs[0].message.contains("twice"));
    }

    /// `data_plane.workers`: one per CPU (at most 8) unless set, 1 to 64;
    /// `receive_buffer_kib`.
    #[test]
    fn data_plane_workers() {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
        assert_eq!(parse(GOOD, Path::new(".")).unwrap().workers, cpus);
        let two = format!("{GOOD}[data_plane]\nworkers = 2\n");
        assert_eq!(parse(&two, Path::new(".")).unwrap().workers, 2);
        for bad in ["0", "65"] {
            let cfg = format!("{GOOD}[data_plane]\nworkers = {bad}\n");
            let errs = parse(&cfg, Path::new(".")).unwrap_err();
            assert_eq!(errs[0].path, "data_plane.workers", "{errs:?}");
            assert!(errs[0].message.contains("1 to 64"), "{errs:?}");
        }
        assert_eq!(
            parse(GOOD, Path::new(".")).unwrap().data_receive_buffer,
            1 << 20
        );
        let small = format!("{GOOD}[data_plane]\nreceive_buffer_kib = 256\n");
        assert_eq!(
            parse(&small, Path::new(".")).unwrap().data_receive_buffer,
            256 << 10
        );
        for bad in ["63", "65537"] {
            let cfg = format!("{GOOD}[data_plane]\nreceive_buffer_kib = {bad}\n");
            let errs = parse(&cfg, Path::new(".")).unwrap_err();
            assert_eq!(errs[0].path, "data_plane.receive_buffer_kib", "{errs:?}");
        }
    }

    #[test]
    fn every_error_with_its_path() {
        let bad = GOOD
            .replace("10.1.0.0/16", "10.1.0.0/33")
            .replace("\"224.1.1.1\"", "\"10.0.0.1\"")
            .replace("\"replicate\"", "\"flood\"")
            .replace("127.0.0.2", "not-an-ip");
        let errs = parse(&bad, Path::new(".")).unwrap_err();
        let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "database[0].prefix",
                "peer_group.group",
                "peer_group.delivery",
                "peer_group.seeds[0]"
            ],
            "{errs:?}"
        );
        let errs = parse("name = 1", Path::new(".")).unwrap_err();
        assert_eq!(errs[0].path, "name", "{errs:?}");
        let errs = parse(
            &GOOD.replace("name = \"n1\"", "name = \"n1\"\nbogus = 2"),
            Path::new("."),
        )
        .unwrap_err();
        assert!(
            errs[0].message.contains("unknown field `bogus`"),
            "{errs:?}"
        );
        let errs = parse(
            &GOOD.replace("10.0.0.0/8", "192.168.0.0/16"),
            Path::new("."),
        )
        .unwrap_err();
        assert_eq!(errs[0].path, "database[0].prefix");
        assert!(errs[0].message.contains("not allowed"));
    }
}
