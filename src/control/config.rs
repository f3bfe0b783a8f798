//! What the control engine is told at start: the node's identity, RLOCs, database mappings,
//! how it reaches its peer group, its site policy and its timers. Built from the TOML
//! configuration by `node`, or directly by tests and the simulator.

use std::net::IpAddr;
use std::time::Duration;

use crate::crypto::auth::{AuthKey, KeyRing};
use crate::mapping::EidPrefix;

use super::pull::PullHash;

/// One of the node's own locators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalRloc {
    pub address: IpAddr,
    pub priority: u8,
    pub weight: u8,
}

/// A database mapping: an EID-prefix this node is the ETR for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseMapping {
    pub eid: EidPrefix,
}

/// How Map-Registers reach the peer group (RFC 9962 §4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Underlay multicast to G:4342 with this IP TTL.
    Multicast { ttl: u8 },
    /// Head-end replication: one LISP-data-encapsulated copy (Instance-ID 0xFFFFFF) per
    /// member of the merged RLE of (0/0, G).
    Replicate,
}

/// Push mode: a peer group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerGroup {
    pub group: IpAddr,
    pub delivery: Delivery,
    /// RLOCs of members to register with until the membership is known (bootstrap).
    pub seeds: Vec<IpAddr>,
    /// Encode the `(0/0, G)` membership registration as lispers.net does: its padded
    /// Multicast-Info LCAF and the RLE wrapped in an AFI List after an AFI 0 item
    /// (PROTOCOL.md §2.1, §3.11). Off: the RFC 8060 / RFC 8378 layout (a plain RLE locator),
    /// which every decoder reads. Both layouts are always accepted.
    pub lispers_membership_encoding: bool,
}

/// Pull mode: a hash picks the Map-Server set of each EID (RFC 9962 §5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullMode {
    pub modulus: u32,
    pub dns_suffix: String,
    pub hash: PullHash,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MappingSystem {
    Push(PeerGroup),
    Pull(PullMode),
}

/// An EID-prefix the site may register (RFC 9301 §8.2 site configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedPrefix {
    pub eid: EidPrefix,
    pub accept_more_specifics: bool,
}

/// A distinguished-name EID (AFI 17) the site may register: the site configuration of RFC
/// 9301 §8.2 applied to names as to prefixes. `pattern` is a name, or a name start followed
/// by `*` (`"n*"`, or `"*"` for any name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedName {
    pub pattern: String,
    pub instance_id: u32,
}

impl AllowedName {
    /// Whether `name` (as registered, without its terminating NUL) in Instance-ID `iid` is
    /// allowed by this entry.
    pub fn matches(&self, iid: u32, name: &[u8]) -> bool {
        if iid != self.instance_id {
            return false;
        }
        match self.pattern.strip_suffix('*') {
            Some(start) => name.starts_with(start.as_bytes()),
            None => name == self.pattern.as_bytes(),
        }
    }
}

/// Who may register what.
#[derive(Debug, Clone, Default)]
pub struct SitePolicy {
    pub keys: KeyRing,
    /// The key-id and secret our own Map-Registers are signed with.
    pub own_key: Option<(AuthKey, u8)>,
    pub allowed: Vec<AllowedPrefix>,
    /// The names the site may register; a name no entry matches is refused like a prefix
    /// outside `allowed`.
    pub allowed_names: Vec<AllowedName>,
    /// Accept alg-id 0 group-membership registrations (lispers.net sends them so; PROTOCOL.md
    /// §8.1 L3). Off by default: an unauthenticated registration is rejected and counted.
    pub accept_unauthenticated_membership: bool,
}

/// Timers and TTLs (RFC 9301 §8.2; PROTOCOL.md §4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timers {
    pub register_interval: Duration,
    /// Record TTL of our registrations, minutes.
    pub record_ttl_mins: u32,
    /// TTL of a positive (proxy) Map-Reply, minutes.
    pub map_reply_ttl_mins: u32,
    /// Negative Map-Reply TTL where nothing is configured, minutes.
    pub negative_ttl_mins: u32,
    /// Negative Map-Reply TTL where a prefix is configured but not registered, minutes.
    pub unregistered_ttl_mins: u32,
    /// Map-Requests per second accepted from one source address (bucket depth: twice that).
    pub requests_per_second: u32,
    /// RLOC-probe interval for the RLOCs in use (RFC 9301 §6.3.2); zero turns probing off.
    pub probe_interval: Duration,
    /// lisp-crypto keys older than this are replaced through the next probe.
    pub rekey_interval: Duration,
    /// Packets an ITR seals under one lisp-crypto key before it asks for a new one.
    pub rekey_packets: u64,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            register_interval: Duration::from_secs(60),
            record_ttl_mins: 3,
            map_reply_ttl_mins: 1440,
            negative_ttl_mins: 15,
            unregistered_ttl_mins: 1,
            requests_per_second: 100,
            probe_interval: Duration::from_secs(10),
            rekey_interval: Duration::from_secs(600),
            rekey_packets: 1 << 32,
        }
    }
}

/// How lisp-crypto is spoken with a peer (PROTOCOL.md §5; chosen per peer RLOC prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CryptoProfile {
    /// The default, for members of our peer group: RFC 8061 as written, the suite of
    /// `data_plane.encryption`, and the exchange signed with the site key
    /// ([`crate::crypto::kx_auth`]); unsigned offers and replies carry no key.
    Decent,
    /// RFC 8061 as written without the signature, for other implementations: a key rests
    /// on return routability alone (the ETR uses it once data opens under it).
    Rfc8061,
    /// lispers.net's suite-6 variant (PROTOCOL.md §5.2), with return routability.
    LispersCs6,
}

impl CryptoProfile {
    pub fn name(self) -> &'static str {
        match self {
            CryptoProfile::Decent => "decent",
            CryptoProfile::Rfc8061 => "rfc8061",
            CryptoProfile::LispersCs6 => "lispers-cs6",
        }
    }
}

/// Peers whose RLOCs fall in `rlocs` speak `profile`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CryptoPeer {
    pub rlocs: ipnet::IpNet,
    pub profile: CryptoProfile,
}

/// A Map-Server outside the peer group that our mappings are registered with (RFC 9301
/// §8.2), as a plain ETR: never sent the group's membership or greetings.
#[derive(Debug, Clone)]
pub struct MapServerPeer {
    pub address: IpAddr,
    /// The key our registers to it are signed with and its Map-Notifies verified with.
    pub key: AuthKey,
    pub alg_id: u8,
    /// Ask it to answer Map-Requests for our EIDs itself (the P bit, RFC 9301 §5.6).
    pub proxy_reply: bool,
}

/// Everything the engine needs.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub name: String,
    pub xtr_id: [u8; 16],
    pub site_id: [u8; 8],
    pub rlocs: Vec<LocalRloc>,
    pub database: Vec<DatabaseMapping>,
    pub mapping_system: MappingSystem,
    pub site: SitePolicy,
    pub timers: Timers,
    /// lisp-crypto (RFC 8061): the suite offered in RLOC-probes and accepted from ITRs;
    /// `None` leaves data in clear.
    pub encryption: Option<crate::crypto::lisp_crypto::CipherSuite>,
    /// Peers that speak another lisp-crypto profile than the peer group's.
    pub crypto_peers: Vec<CryptoPeer>,
    /// Register the node name as a distinguished-name EID (in a Map-Register of its own).
    pub register_name: bool,
    /// Map-Servers outside the group our own mappings are registered with.
    pub map_servers: Vec<MapServerPeer>,
    /// Map-Resolvers outside the group that lookups our database cannot answer go to.
    pub map_resolvers: Vec<IpAddr>,
    /// Where our Map-Register nonces start counting (RFC 9301 §5.6 replay detection): the
    /// wall clock in microseconds at start, so they grow across restarts.
    pub register_nonce_base: u64,
    /// Seed of the engine's random numbers (nonces); fixed in the simulator.
    pub rng_seed: u64,
    /// NAT traversal (draft-ermagan-lisp-nat-traversal-19).
    pub nat: NatConfig,
    /// The RTR our mappings are registered through and all our data goes to, while an RLOC
    /// of ours is behind a NAT (draft §5.1.1): state the engine sets from what NAT
    /// detection found, not configuration.
    pub via_rtr: Option<IpAddr>,
}

/// `[nat]`: NAT traversal (draft-ermagan-lisp-nat-traversal-19).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NatConfig {
    /// Serve as a Re-encapsulating Tunnel Router (draft §5.3) for members behind NAT:
    /// listed in our Info-Replies, relaying their traffic. For a node with a public RLOC.
    pub rtr: bool,
    /// RTRs our Info-Replies list besides ourselves (draft §5.2: the Map-Server's list).
    pub rtrs: Vec<IpAddr>,
    /// Behind a NAT, register through an RTR an Info-Reply offered and send everything
    /// through it (default on).
    pub use_rtr: bool,
}
