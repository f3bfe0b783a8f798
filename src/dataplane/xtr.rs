//! The data plane of one node as a sans-IO state machine (boringtun's `noise::Tunn`,
//! quinn-proto's `Connection` shape): inner packets and received datagrams go in with the
//! time, datagrams to send, packets for the TUN devices and requests for the control plane
//! come out. No socket, no clock, no TUN: the node runtime drives it, and so does the
//! simulator, so everything the data plane decides is tested deterministically.
//!
//! - ITR (RFC 9300 §5, §6, §10): the inner destination is looked up in the map-cache, an
//!   RLOC chosen by the flow hash, the packet encapsulated (and sealed with the RLOC's
//!   lisp-crypto key, RFC 8061 §6) into a GSO batch; packets wait (bounded) for a mapping
//!   (pull mode, RFC 9301 §5) or a key (RFC 8061 §5), and what the tunnel cannot carry with
//!   DF set is answered with an ICMP error (RFC 9300 §7.1).
//! - ETR (RFC 9300 §7; RFC 8061 §9): the K bits pick the key, the ICV and the replay window
//!   are checked, and only our EIDs are delivered; Instance-ID 0xFFFFFF (RFC 9962 §4: control
//!   carried in data) is decided here, once, and handed to the control plane.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::keys::{CurrentKey, Install, RecvKeys};
use super::liveness::{Heard, Liveness};
use super::rtr::Relay;
use super::stats::{DataStats, Drop};
use super::waiting::MappingQueue;
use super::{FlowKey, encap, icmp, select};
use crate::crypto::lisp_crypto::{CipherSuite, CryptoError, RecvKey, SendKey, reverse_key};
use crate::mapping::{EidPrefix, MapCache, PrefixTable};
use crate::wire::ip::IpPacket;
use crate::wire::{CONTROL_INSTANCE_ID, DATA_PORT, DataHeader};

/// Packets held per RLOC while its lisp-crypto key is being agreed.
pub const KEY_QUEUE: usize = 64;
/// RLOCs with packets waiting for a key, at most.
pub const KEY_QUEUE_RLOCS: usize = 1024;
/// Datagrams in one GSO send, at most (the kernel's UDP_MAX_SEGMENTS is 64).
pub const MAX_SEGMENTS: usize = 64;
/// Bytes in one GSO send, at most (a UDP datagram's 64 KB).
pub const MAX_GSO_BYTES: usize = 65000;
/// Room [`Xtr::encapsulate_in_place`] needs before a packet: the LISP header and the largest
/// IV (AES-128-GCM's 12 bytes, RFC 8061 §6).
pub const HEADROOM: usize = DataHeader::LEN + 12;
/// Where a caller best puts a packet in its buffer for [`Xtr::encapsulate_in_place`]: at
/// least [`HEADROOM`] in, and a multiple of 16, so the packet is as aligned as its buffer
/// (16 bytes from the allocator) and the AEAD reads and writes it aligned (measured: 7 ns
/// less for a 1400-byte AES-128-GCM packet than at [`HEADROOM`], 4 bytes off).
pub const PACKET_AT: usize = 64;
const _: () = assert!(PACKET_AT >= HEADROOM);
/// Room [`Xtr::encapsulate_in_place`] needs after a packet: the AEAD tag.
pub const TAILROOM: usize = crate::crypto::lisp_crypto::TAG_LEN;
/// Spare transmit buffers kept for reuse.
const SPARE_BUFFERS: usize = 8;

/// A lisp-crypto key for the data plane, from an exchange in an RLOC-probe (RFC 8061 §5-§7):
/// 32 bytes of key material under a key-id (1-3, RFC 8061 §8) for a suite. Each rekey of the
/// RFC profile moves to the next key-id (1, 2, 3, 1, ...); the ETR keeps a key per key-id
/// and picks it by the K bits of each packet, so packets still in flight under the previous
/// key decrypt after a rekey. The contract from the control plane to the data plane.
#[derive(Clone, PartialEq, Eq)]
pub enum KeyEvent {
    /// ITR: encrypt what goes to `rloc` with this key, sent from our RLOC `source` (the
    /// one it was agreed from: the ETR keys by the ITR's address, RFC 8061 §9; `None`:
    /// the nearest).
    Send {
        rloc: IpAddr,
        suite: CipherSuite,
        key_id: u8,
        key: [u8; 32],
        source: Option<IpAddr>,
    },
    /// ETR: a key `itr` may send under `key_id`. It is a candidate until a packet from `itr`
    /// opens under it (return routability): it never replaces a key in use before that. The
    /// same key again (each probe re-offers it) only keeps it alive.
    Recv {
        itr: IpAddr,
        suite: CipherSuite,
        key_id: u8,
        key: [u8; 32],
    },
    /// ITR: `rloc` answered a probe without a key (it runs no lisp-crypto, or not our suite).
    NoKey { rloc: IpAddr },
    /// ITR: the ETR of `rloc` now holds our send key for our RLOC `source` (the same key
    /// offered again from there): data to it may leave from there.
    Source {
        rloc: IpAddr,
        source: Option<IpAddr>,
    },
    /// Behind a NAT: everything we send goes to this RTR, from the data port
    /// (draft-ermagan-lisp-nat-traversal-19 §5.1.1, §5.4); `None`: to the mappings' RLOCs.
    ViaRtr { rtr: Option<IpAddr> },
    /// A key a node behind a NAT agreed with us from the binding `at` (its NAT's address
    /// and port) in a probe it sent: what it sends from there opens under `key`. As its
    /// RTR (`reverse`) we also seal what we send it under the reverse key
    /// ([`crate::crypto::lisp_crypto::reverse_key`]): we cannot probe it through its NAT.
    /// On a direct path the node probed is probed too and keys its own direction.
    Binding {
        at: SocketAddr,
        suite: CipherSuite,
        key_id: u8,
        key: [u8; 32],
        reverse: bool,
    },
    /// RTR: the node behind a NAT that registered `eid` through us is reached at the
    /// binding `at` (draft §5.3); `None`: no longer. Behind a NAT: the direct path to the
    /// node of `eid`, behind another NAT at `at`.
    Bind {
        eid: EidPrefix,
        at: Option<SocketAddr>,
    },
    /// Behind a NAT: a key we offered the node behind another NAT at `at` (a direct path):
    /// we seal under `key`, and open what it sends under the reverse key.
    Direct {
        at: SocketAddr,
        suite: CipherSuite,
        key_id: u8,
        key: [u8; 32],
    },
}

impl std::fmt::Debug for KeyEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyEvent::Send {
                rloc,
                suite,
                key_id,
                ..
            } => write!(f, "Send({rloc}, {suite:?}, key-id {key_id})"),
            KeyEvent::Recv {
                itr, suite, key_id, ..
            } => write!(f, "Recv({itr}, {suite:?}, key-id {key_id})"),
            KeyEvent::NoKey { rloc } => write!(f, "NoKey({rloc})"),
            KeyEvent::Source { rloc, source } => write!(f, "Source({rloc}, {source:?})"),
            KeyEvent::ViaRtr { rtr } => write!(f, "ViaRtr({rtr:?})"),
            KeyEvent::Binding {
                at, suite, key_id, ..
            } => {
                write!(f, "Binding({at}, {suite:?}, key-id {key_id})")
            }
            KeyEvent::Bind { eid, at } => write!(f, "Bind({eid}, {at:?})"),
            KeyEvent::Direct {
                at, suite, key_id, ..
            } => write!(f, "Direct({at}, {suite:?}, key-id {key_id})"),
        }
    }
}

impl KeyEvent {
    /// The event with its keys built (one key schedule however many workers install it).
    pub fn prepare(self) -> PreparedKey {
        match self {
            KeyEvent::Send {
                rloc,
                suite,
                key_id,
                key,
                source,
            } => PreparedKey::Send {
                rloc,
                key: SendKey::new(suite, key_id, &key),
                source,
            },
            KeyEvent::Recv {
                itr,
                suite,
                key_id,
                key,
            } => PreparedKey::Recv {
                itr,
                key: RecvKey::new(suite, key_id, &key),
                material: key,
                valid_id: (1..=3).contains(&key_id),
            },
            KeyEvent::NoKey { rloc } => PreparedKey::NoKey { rloc },
            KeyEvent::Source { rloc, source } => PreparedKey::Source { rloc, source },
            KeyEvent::ViaRtr { rtr } => PreparedKey::ViaRtr { rtr },
            KeyEvent::Binding {
                at,
                suite,
                key_id,
                key,
                reverse,
            } => PreparedKey::Binding {
                at,
                valid_id: (1..=3).contains(&key_id),
                recv: Some((RecvKey::new(suite, key_id, &key), key)),
                send: reverse.then(|| {
                    let r = reverse_key(&key);
                    (SendKey::new(suite, key_id, &r), r)
                }),
            },
            KeyEvent::Bind { eid, at } => PreparedKey::Bind { eid, at },
            KeyEvent::Direct {
                at,
                suite,
                key_id,
                key,
            } => PreparedKey::Binding {
                at,
                valid_id: (1..=3).contains(&key_id),
                recv: None,
                send: Some((SendKey::new(suite, key_id, &key), key)),
            },
        }
    }
}

/// A [`KeyEvent`] with its keys built, for [`Xtr::install_key`]. The data-plane workers of
/// one node each install a [`share`](PreparedKey::share) of the same prepared key: their
/// copies of a send key take IVs from one counter (RFC 8061 §9: an IV never repeats under a
/// key) and their copies of a receive key record packets in one anti-replay window.
// Built once per key event and moved, never stored: the size difference does not matter.
#[allow(clippy::large_enum_variant)]
pub enum PreparedKey {
    Send {
        rloc: IpAddr,
        key: SendKey,
        source: Option<IpAddr>,
    },
    Recv {
        itr: IpAddr,
        key: RecvKey,
        material: [u8; 32],
        /// The key-id is 1-3 (RFC 8061 §8); any other is refused.
        valid_id: bool,
    },
    NoKey {
        rloc: IpAddr,
    },
    Source {
        rloc: IpAddr,
        source: Option<IpAddr>,
    },
    ViaRtr {
        rtr: Option<IpAddr>,
    },
    /// Each half with the material it was built from.
    Binding {
        at: SocketAddr,
        recv: Option<(RecvKey, [u8; 32])>,
        send: Option<(SendKey, [u8; 32])>,
        valid_id: bool,
    },
    Bind {
        eid: EidPrefix,
        at: Option<SocketAddr>,
    },
}

impl PreparedKey {
    /// Another handle on the same keys, for another worker.
    pub fn share(&mut self) -> PreparedKey {
        match self {
            PreparedKey::Send { rloc, key, source } => PreparedKey::Send {
                rloc: *rloc,
                key: key.share(),
                source: *source,
            },
            PreparedKey::Recv {
                itr,
                key,
                material,
                valid_id,
            } => PreparedKey::Recv {
                itr: *itr,
                key: key.share(),
                material: *material,
                valid_id: *valid_id,
            },
            PreparedKey::NoKey { rloc } => PreparedKey::NoKey { rloc: *rloc },
            PreparedKey::Source { rloc, source } => PreparedKey::Source {
                rloc: *rloc,
                source: *source,
            },
            PreparedKey::ViaRtr { rtr } => PreparedKey::ViaRtr { rtr: *rtr },
            PreparedKey::Binding {
                at,
                recv,
                send,
                valid_id,
            } => PreparedKey::Binding {
                at: *at,
                recv: recv.as_mut().map(|(k, m)| (k.share(), *m)),
                send: send.as_mut().map(|(k, m)| (k.share(), *m)),
                valid_id: *valid_id,
            },
            PreparedKey::Bind { eid, at } => PreparedKey::Bind { eid: *eid, at: *at },
        }
    }
}

/// What the views of a node need of a data plane, merged over its workers: the counters and
/// the keys in use.
#[derive(Debug, Clone, Default)]
pub struct DataReport {
    pub stats: DataStats,
    /// Per RLOC we encapsulate to: suite, key-id, packets sealed under the key.
    pub send_keys: Vec<(IpAddr, CipherSuite, u8, u64)>,
    /// The ETR's keys in use.
    pub recv_keys: Vec<CurrentKey>,
}

impl DataReport {
    /// Adds another worker's report: counters summed, keys listed once (the workers share
    /// them: the packet counts are already totals).
    pub fn merge(&mut self, other: DataReport) {
        self.stats.merge(&other.stats);
        for k in other.send_keys {
            if !self.send_keys.iter().any(|s| s.0 == k.0) {
                self.send_keys.push(k);
            }
        }
        for k in other.recv_keys {
            match self
                .recv_keys
                .iter_mut()
                .find(|c| c.itr == k.itr && c.key_id == k.key_id)
            {
                Some(c) => c.keys = c.keys.max(k.keys),
                None => self.recv_keys.push(k),
            }
        }
    }
}

/// What the data plane asks of the control plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlRequest {
    /// The map-cache has no live entry for `dst`: resolve it (push mode from the database at
    /// once, pull mode or an outside Map-Resolver by Map-Request). Packets wait for
    /// [`Xtr::handle_mappings`].
    Resolve { iid: u32, dst: IpAddr },
    /// Packets to `rloc` (serving `prefix`) wait for a key: probe it now (RFC 8061 §5).
    Probe { rloc: IpAddr, prefix: EidPrefix },
    /// The key to `rloc` spent its packet budget: agree a fresh one (RFC 8061 §10).
    Rekey { rloc: IpAddr },
    /// Packets go to `rloc` and nothing comes back from its peer
    /// ([`liveness`](super::liveness)): check it now (RFC 9300 §10).
    Check { rloc: IpAddr },
    /// As RTR: traffic crosses between the nodes behind the NATs at the bindings `a` and
    /// `b`: tell each where the other is, so they may try a direct path.
    Introduce { a: SocketAddr, b: SocketAddr },
    /// Behind a NAT: packets go to the node at `at` on a direct path and nothing comes
    /// back: check the path now (a NAT on it may have forgotten its binding).
    CheckDirect { at: SocketAddr },
}

/// What became of an inner packet handed to [`Xtr::encapsulate`].
#[derive(Debug, PartialEq, Eq)]
pub enum Encapsulated {
    /// Encapsulated into the current batch: [`Xtr::poll_transmit`] gives it out.
    Staged,
    /// Held until a mapping or a key arrives (a [`ControlRequest`] is out).
    Queued,
    /// Dropped and counted.
    Dropped(Drop),
    /// Too big for the tunnel with DF set: this ICMP error goes back into the TUN device of
    /// the packet's Instance-ID (the packet is counted as [`Drop::TooBig`]).
    IcmpToTun(Vec<u8>),
}

/// What to do with a received LISP data packet.
#[derive(Debug, PartialEq, Eq)]
pub enum Decapsulated<'a> {
    /// Hand the inner packet to the TUN device of this Instance-ID.
    Deliver { iid: u32, packet: &'a [u8] },
    /// Instance-ID 0xFFFFFF: control carried in data (LISP-Decent replication, RFC 9962
    /// §4), never encrypted, for the control plane: the IP / UDP / control message after
    /// the LISP header.
    Control { payload: &'a [u8] },
    /// RTR (draft-ermagan-lisp-nat-traversal-19 §5.3.1): from a node behind a NAT, or to
    /// one that registered through us: to be encapsulated again ([`Xtr::forward`]).
    Forward { iid: u32, packet: &'a [u8] },
    /// Dropped and counted.
    Dropped(Drop),
}

/// A datagram, or a GSO batch of datagrams of the same outer header, to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmit {
    /// Our RLOC to send from (`None`: the kernel chooses).
    pub src: Option<IpAddr>,
    /// The RLOC and port 4341.
    pub dst: SocketAddr,
    /// Outer TTL and TOS, copied from the inner packet (RFC 9300 §5.3).
    pub ttl: u8,
    pub tos: u8,
    /// The flow hash: the node picks the UDP source port by it (RFC 9300 §5.3), so one
    /// flow keeps one port and the underlay's ECMP spreads flows.
    pub flow: u64,
    /// Several datagrams of `segment` bytes each (the last may be shorter) in one buffer,
    /// for one UDP GSO send; `None` for one datagram.
    pub segment: Option<usize>,
    /// Datagrams in the buffer.
    pub datagrams: usize,
    /// Send from the control port: lispers.net keys its decryption by the source port of
    /// our RLOC-probes (PROTOCOL.md §5.2 item 12).
    pub from_control_port: bool,
    /// Send from the data port: to our RTR from behind a NAT, or as RTR to a node behind
    /// one, whose NAT binding knows that port (draft-ermagan-lisp-nat-traversal-19 §5.1.3).
    pub from_data_port: bool,
}

/// What the data plane needs to know of the node.
#[derive(Debug, Clone)]
pub struct XtrConfig {
    /// Our EID-prefixes: what the ETR delivers.
    pub database: Vec<EidPrefix>,
    /// Our RLOCs: the source of each datagram is chosen among them.
    pub rlocs: Vec<IpAddr>,
    /// The lisp-crypto suite we ask for (RFC 8061); `None`: clear.
    pub encryption: Option<CipherSuite>,
    /// With encryption on, still send clear to RLOCs without a key and accept clear data.
    pub allow_clear: bool,
    /// The underlay MTU: longer outer packets are refused with an ICMP error when DF is set.
    pub underlay_mtu: u16,
    /// A key's packet budget before a rekey is asked for (RFC 8061 §10).
    pub rekey_packets: u64,
    /// Seed of the LISP nonces' generator (deterministic under the simulator).
    pub rng_seed: u64,
}

/// Where one datagram of a transmit lies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// In the transmit's own buffer ([`Datagrams::buf`]).
    Own(Range<usize>),
    /// In the caller's buffer `slot`, encapsulated and sealed where the packet was read
    /// ([`Xtr::encapsulate_in_place`]).
    Slot { slot: usize, range: Range<usize> },
}

/// The datagrams of one transmit, in order: the datagrams encapsulated by copy lie in `buf`,
/// one after the other; those encapsulated in place lie in the caller's buffers.
#[derive(Debug, Default)]
pub struct Datagrams {
    pub buf: Vec<u8>,
    pub parts: Vec<Part>,
}

impl Datagrams {
    fn clear(&mut self) {
        self.buf.clear();
        self.parts.clear();
    }
}

/// The batch being filled: datagrams to one RLOC with the same outer header.
#[derive(Default)]
struct Staged {
    meta: Option<Transmit>,
    /// The Instance-ID and inner bytes of the batch (counted when it is closed).
    iid: u32,
    inner_bytes: u64,
    segment: usize,
    /// Bytes of the batch's datagrams.
    bytes: usize,
    /// The last datagram was shorter than `segment`: nothing more may follow it.
    closed: bool,
    out: Datagrams,
}

/// Where the inner packet handed to [`Xtr::stage`] lies.
enum Src<'a> {
    /// Anywhere: encapsulated by copying it into the batch's own buffer.
    Copy(&'a [u8]),
    /// `buf[packet]`, in the caller's buffer `slot`: encapsulated where it lies when the
    /// room around it allows.
    InPlace {
        slot: usize,
        buf: &'a mut [u8],
        packet: Range<usize>,
    },
}

impl Src<'_> {
    fn bytes(&self) -> &[u8] {
        match self {
            Src::Copy(p) => p,
            Src::InPlace { buf, packet, .. } => &buf[packet.clone()],
        }
    }
}

/// The data plane of a node: keys, waiting packets, the batch being filled and its counters.
pub struct Xtr {
    cfg: XtrConfig,
    ours: PrefixTable<()>,
    /// The database prefix the last delivered packet fell in: a stream to our EIDs costs a
    /// containment test per packet, not a longest-prefix match (`ours` never changes).
    ours_last: Option<EidPrefix>,
    stats: DataStats,
    send_keys: super::flow::RlocMap<SendKey>,
    /// RLOCs that answered a probe without a key.
    keyless: HashSet<IpAddr>,
    /// RLOCs whose key's budget is spent and a rekey was asked for (once per key).
    rekey_asked: HashSet<IpAddr>,
    /// ETR keys per ITR address and key-id 1-3 (RFC 8061 §8).
    recv_keys: RecvKeys,
    /// Packets waiting for a mapping (pull mode).
    waiting: MappingQueue,
    /// Packets waiting for a key: RLOC -> (Instance-ID, our RLOC they leave from, packet).
    pending: HashMap<IpAddr, VecDeque<KeyWait>>,
    /// What is sent to each RLOC and heard back from its peer.
    liveness: Liveness,
    staged: Staged,
    ready: VecDeque<(Transmit, Datagrams)>,
    spare: Vec<Datagrams>,
    /// What [`Xtr::poll_transmit`] swaps through.
    scratch: Datagrams,
    requests: VecDeque<ControlRequest>,
    /// ICMP errors for packets released from a queue: (Instance-ID, packet).
    to_tun: VecDeque<(u32, Vec<u8>)>,
    rng: StdRng,
    next_key_expiry: Duration,
    /// Packets delivered from one RLOC in one Instance-ID since the last count: (RLOC,
    /// Instance-ID, packets, bytes), added to the counters when another sender comes or at
    /// [`Xtr::flush_counters`], so a batch costs one counter update, not one per packet.
    rx_run: Option<(IpAddr, u32, u64, u64, Option<IpAddr>)>,
    /// The last destination looked up and the RLOC its flow took.
    last_route: Option<Route>,
    /// Behind a NAT: the RTR everything goes to (draft §5.1.1).
    via_rtr: Option<IpAddr>,
    /// As RTR: the nodes behind NATs registered through us (draft §5.3); behind a NAT,
    /// the direct paths to nodes behind other NATs.
    relay: Relay,
    /// As RTR: the pairs of bindings introduced to each other, forgotten with the key
    /// expiry sweep (so again at most every [`KEY_EXPIRY_EVERY`]), at most [`MAX_INTRODUCED`].
    introduced: HashSet<(SocketAddr, SocketAddr)>,
}

/// Pairs of bindings introduced between two sweeps, at most.
const MAX_INTRODUCED: usize = 256;

/// A packet waiting for a key: its Instance-ID, our RLOC it leaves from, its bytes.
type KeyWait = (u32, Option<IpAddr>, Vec<u8>);

/// A route the ITR looked up: valid while the map-cache keeps its generation and the entry
/// lives.
#[derive(Debug, Clone, Copy)]
struct Route {
    iid: u32,
    dst: IpAddr,
    flow: u64,
    generation: u64,
    expires: Duration,
    rloc: IpAddr,
    port: u16,
    binding: bool,
    prefix: EidPrefix,
    source: Option<IpAddr>,
}

/// Where the ITR sends a packet: its flow hash, outer TTL and TOS, RLOC, the map-cache
/// prefix it fell in (`None` for a packet that waited for a key) and our RLOC it leaves
/// from.
struct Routed {
    flow: u64,
    outer: (u8, u8),
    rloc: IpAddr,
    /// The destination port: 4341, or a NAT binding's.
    port: u16,
    /// To a node behind a NAT that registered through us (we are its RTR).
    binding: bool,
    prefix: Option<EidPrefix>,
    source: Option<IpAddr>,
}

/// How often the ETR's idle keys and candidates are looked at.
const KEY_EXPIRY_EVERY: Duration = Duration::from_secs(10);

impl Xtr {
    pub fn new(cfg: XtrConfig) -> Self {
        Self::with_heard(cfg, Heard::new())
    }

    /// A data plane that shares `heard` (whom the ETR heard from) with the node's other
    /// workers: replies to what this one sends may reach another one.
    pub fn with_heard(cfg: XtrConfig, heard: Arc<Heard>) -> Self {
        let mut ours = PrefixTable::new();
        for p in &cfg.database {
            ours.insert(*p, ());
        }
        Xtr {
            rng: StdRng::seed_from_u64(cfg.rng_seed),
            cfg,
            ours,
            ours_last: None,
            stats: DataStats::default(),
            send_keys: Default::default(),
            keyless: HashSet::new(),
            rekey_asked: HashSet::new(),
            recv_keys: RecvKeys::new(),
            waiting: MappingQueue::default(),
            pending: HashMap::new(),
            liveness: Liveness::new(heard),
            staged: Staged::default(),
            ready: VecDeque::new(),
            spare: Vec::new(),
            scratch: Datagrams::default(),
            requests: VecDeque::new(),
            to_tun: VecDeque::new(),
            next_key_expiry: KEY_EXPIRY_EVERY,
            rx_run: None,
            last_route: None,
            via_rtr: None,
            relay: Relay::default(),
            introduced: HashSet::new(),
        }
    }

    /// The counters. What was delivered since the last [`flush_counters`](Self::flush_counters)
    /// is not in them yet: the runtime flushes after each batch it read.
    pub fn stats(&self) -> &DataStats {
        &self.stats
    }

    /// Adds the deliveries counted in the current run to the counters.
    pub fn flush_counters(&mut self) {
        if let Some((rloc, iid, packets, bytes, _)) = self.rx_run.take() {
            self.stats.received_n(rloc, iid, packets, bytes);
        }
    }

    /// The counters, for what the runtime counts around the data plane (TUN writes, reads
    /// that held several packets).
    pub fn stats_mut(&mut self) -> &mut DataStats {
        &mut self.stats
    }

    /// The ETR's keys per ITR.
    pub fn recv_keys(&self) -> &RecvKeys {
        &self.recv_keys
    }

    /// Our RLOCs changed (interfaces re-read).
    pub fn set_rlocs(&mut self, rlocs: Vec<IpAddr>) {
        self.cfg.rlocs = rlocs;
        // The route memo holds the source chosen among the old ones.
        self.last_route = None;
    }

    /// Bytes the encapsulation to `rloc` adds now: with its key's suite, none when it has
    /// no key and will get clear data, else the suite we ask for.
    pub fn overhead(&self, rloc: IpAddr) -> usize {
        let suite = match self.send_keys.get(&rloc) {
            Some(k) => Some(k.suite),
            None if self.keyless.contains(&rloc) => None,
            None => self.cfg.encryption,
        };
        encap::overhead(rloc.is_ipv6(), suite)
    }

    /// ITR: an inner packet from the TUN device of `iid`, looked up in `cache` at `now`,
    /// encapsulated by copying it into the batch being filled.
    pub fn encapsulate(
        &mut self,
        now: Duration,
        iid: u32,
        packet: &[u8],
        cache: &MapCache,
    ) -> Encapsulated {
        match self.route(now, iid, packet, cache) {
            Ok(r) => self.stage(now, &r, iid, Src::Copy(packet)),
            Err(done) => done,
        }
    }

    /// [`encapsulate`](Self::encapsulate) of the packet `buf[packet]`, read into the
    /// caller's buffer number `slot`: with [`HEADROOM`] bytes before it and [`TAILROOM`]
    /// after it, the LISP header (and IV) go in front of it, it is sealed where it lies and
    /// the tag goes after it (RFC 8061 §6), so the transmit's datagram is a [`Part::Slot`] of
    /// `buf` and nothing is copied. The caller leaves its buffers as they are until
    /// [`poll_transmit_parts`](Self::poll_transmit_parts) has handed out every transmit. A
    /// packet that waits for a mapping or a key, or goes to lispers.net's padded suite, is
    /// copied as [`encapsulate`](Self::encapsulate) does.
    #[allow(clippy::too_many_arguments)]
    pub fn encapsulate_in_place(
        &mut self,
        now: Duration,
        iid: u32,
        slot: usize,
        buf: &mut [u8],
        packet: Range<usize>,
        cache: &MapCache,
    ) -> Encapsulated {
        let Some(bytes) = buf.get(packet.clone()) else {
            return self.dropped(Drop::Malformed);
        };
        match self.route(now, iid, bytes, cache) {
            Ok(r) => {
                let src = Src::InPlace { slot, buf, packet };
                self.stage(now, &r, iid, src)
            }
            Err(done) => done,
        }
    }

    /// The look-up before staging: where `packet` goes, or what became of it (dropped,
    /// waiting for a mapping, an ICMP error).
    fn route(
        &mut self,
        now: Duration,
        iid: u32,
        packet: &[u8],
        cache: &MapCache,
    ) -> Result<Routed, Encapsulated> {
        let Ok(ip) = IpPacket::new_checked(packet) else {
            return Err(self.dropped(Drop::Malformed));
        };
        let dst = ip.destination();
        if !encap::is_unicast_eid(dst) {
            return Err(self.dropped(Drop::NotUnicast));
        }
        let flow = FlowKey::of_ip(&ip).hash64();
        // The last route, while the map-cache has not changed and its entry is live: a
        // stream of packets to one destination costs one longest-prefix match.
        let memo = self
            .last_route
            .as_ref()
            .filter(|r| {
                r.iid == iid
                    && r.dst == dst
                    && r.flow == flow
                    && r.generation == cache.generation()
                    && now < r.expires
            })
            .map(|r| (r.rloc, r.port, r.binding, r.prefix, r.source));
        let (rloc, port, binding, prefix, source) = match memo {
            Some(m) => m,
            None if self.via_rtr.is_some_and(|r| r.is_ipv4() == dst.is_ipv4()) => {
                // Behind a NAT everything goes to our RTR, which looks the destination up
                // (draft §5.1.1: the RTR is our default mapping, 0/0), except to a node
                // behind another NAT we reach directly.
                let prefix = EidPrefix::host(iid, dst);
                match self.relay.binding_of(iid, dst) {
                    Some(at) => {
                        let source = self.source_for(at.ip(), None);
                        (at.ip(), at.port(), true, prefix, source)
                    }
                    None => {
                        let rtr = self.via_rtr.unwrap_or(dst);
                        (rtr, DATA_PORT, false, prefix, self.source_for(rtr, None))
                    }
                }
            }
            None => {
                let Some(entry) = cache.lookup(iid, dst, now) else {
                    // A Map-Request (pull mode) or a database lookup (push mode) is asked
                    // for; the packet waits, bounded, for the mapping.
                    if !self.waiting.hold(now, iid, dst, packet) {
                        return Err(self.dropped(Drop::NoMapping));
                    }
                    self.stats.queued_for_mapping += 1;
                    self.requests
                        .push_back(ControlRequest::Resolve { iid, dst });
                    return Err(Encapsulated::Queued);
                };
                if entry.is_negative() {
                    return Err(self.dropped(Drop::Negative));
                }
                let rlocs = &self.cfg.rlocs;
                let ours = |a: IpAddr| rlocs.iter().any(|r| r.is_ipv4() == a.is_ipv4());
                let Some((rloc, via)) =
                    select::choose_where(&entry.rlocs, flow, ours).and_then(|i| {
                        let r = &entry.rlocs[i];
                        Some((r.record.locator.ip()?, r.via))
                    })
                else {
                    return Err(self.dropped(Drop::NoRloc));
                };
                // Our own RLOC: the destination is behind a NAT and registered through us
                // (we are its RTR): to its binding.
                let (rloc, port, binding) = if self.cfg.rlocs.contains(&rloc) {
                    match self.relay.binding_of(iid, dst) {
                        Some(at) => (at.ip(), at.port(), true),
                        None => return Err(self.dropped(Drop::NotOurEid)),
                    }
                } else {
                    (rloc, DATA_PORT, false)
                };
                let source = self.source_for(rloc, via);
                self.last_route = Some(Route {
                    iid,
                    dst,
                    flow,
                    generation: cache.generation(),
                    expires: entry.expires,
                    rloc,
                    port,
                    binding,
                    prefix: entry.eid,
                    source,
                });
                (rloc, port, binding, entry.eid, source)
            }
        };
        // RFC 9300 §7.1: what the tunnel cannot carry with DF set is refused with an ICMP
        // error into the TUN; without DF the outer packet is fragmented by the kernel. The
        // exact overhead is looked at only when the largest one would not fit.
        let mtu = usize::from(self.cfg.underlay_mtu);
        if packet.len() + encap::MAX_OVERHEAD > mtu {
            let overhead = self.overhead(rloc);
            if packet.len() + overhead > mtu {
                let room = u16::try_from(mtu.saturating_sub(overhead)).unwrap_or(u16::MAX);
                // From the unreachable side of the tunnel: the kernel takes an error from
                // one of its own addresses for a martian, and the route back is the TUN.
                if let Some(error) = icmp::too_big(packet, room, dst) {
                    self.stats.drop(Drop::TooBig);
                    self.stats.icmp_too_big += 1;
                    return Err(Encapsulated::IcmpToTun(error));
                }
            }
        }
        Ok(Routed {
            flow,
            outer: encap::outer_ttl_tos_of(&ip),
            rloc,
            port,
            binding,
            prefix: Some(prefix),
            source,
        })
    }

    fn dropped(&mut self, d: Drop) -> Encapsulated {
        self.stats.drop(d);
        Encapsulated::Dropped(d)
    }

    /// Encapsulates (and seals, when there is a key) one packet to `rloc`:4341 into the
    /// batch being filled, or into a batch of its own: where it lies when `src` allows,
    /// else by copying it into the batch's buffer. Without a key yet (encryption on, the
    /// RLOC not known to be keyless) the packet waits, bounded, and the RLOC serving
    /// `prefix` is probed now; a packet released from that queue comes with no prefix.
    /// One look-up of the RLOC's key per packet.
    fn stage(&mut self, now: Duration, r: &Routed, iid: u32, src: Src<'_>) -> Encapsulated {
        let &Routed {
            flow,
            outer: (ttl, tos),
            rloc,
            port,
            binding,
            prefix,
            source,
        } = r;
        // A new batch on a direct path (behind a NAT): noted once the key is done with.
        let mut direct_batch = false;
        let Xtr {
            cfg,
            send_keys,
            keyless,
            staged,
            ready,
            spare,
            stats,
            rng,
            pending,
            requests,
            rekey_asked,
            liveness,
            relay,
            via_rtr,
            ..
        } = self;
        let inner_len = src.bytes().len();
        let mut key = if binding {
            relay.send_key(&SocketAddr::new(rloc, port))
        } else {
            send_keys.get_mut(&rloc)
        };
        if key.is_none() && cfg.encryption.is_some() && binding && !cfg.allow_clear {
            // A node behind a NAT agrees its key with us before anything can reach it.
            stats.drop(Drop::NoKey);
            return Encapsulated::Dropped(Drop::NoKey);
        }
        if key.is_none() && cfg.encryption.is_some() && !binding {
            if !keyless.contains(&rloc) {
                let Some(prefix) = prefix else {
                    stats.drop(Drop::NoKey);
                    return Encapsulated::Dropped(Drop::NoKey);
                };
                // No key yet: hold the packet (bounded) and probe the RLOC now.
                let rlocs = pending.len();
                let q = match pending.get_mut(&rloc) {
                    Some(q) => q,
                    None if rlocs < KEY_QUEUE_RLOCS => pending.entry(rloc).or_default(),
                    None => {
                        stats.drop(Drop::KeyQueueFull);
                        return Encapsulated::Dropped(Drop::KeyQueueFull);
                    }
                };
                if q.len() >= KEY_QUEUE {
                    stats.drop(Drop::KeyQueueFull);
                    return Encapsulated::Dropped(Drop::KeyQueueFull);
                }
                // The first packet of the queue asks for the probe; the rest wait with it.
                if q.is_empty() {
                    requests.push_back(ControlRequest::Probe { rloc, prefix });
                }
                q.push_back((iid, source, src.bytes().to_vec()));
                stats.queued_for_key += 1;
                return Encapsulated::Queued;
            }
            if !cfg.allow_clear {
                stats.drop(Drop::NoKey);
                return Encapsulated::Dropped(Drop::NoKey);
            }
        }
        let nonce = rng.random::<u32>() & 0x00ff_ffff;
        // From where the peer's ETR holds the key, while that is ours.
        let source = key
            .as_ref()
            .and_then(|k| k.source)
            .filter(|s| cfg.rlocs.contains(s))
            .or(source);
        let from_control_port = key
            .as_ref()
            .is_some_and(|k| k.suite == CipherSuite::LispersCs6);
        // AEAD suites add a fixed overhead; lispers.net's padded suite leaves from the
        // control port in a batch of its own, so its length is never compared.
        let len = DataHeader::LEN + inner_len + key.as_ref().map_or(0, |k| k.suite.overhead());
        let joins = staged.meta.is_some_and(|m| {
            m.src == source
                && m.dst.ip() == rloc
                && m.dst.port() == port
                && m.ttl == ttl
                && m.tos == tos
                && m.flow == flow
                && !m.from_control_port
                && m.datagrams < MAX_SEGMENTS
        }) && staged.iid == iid
            && !from_control_port
            && !staged.closed
            && len <= staged.segment
            && staged.bytes + len <= MAX_GSO_BYTES;
        if !joins {
            // Once per batch: what is sent to the RLOC, for data-driven reachability.
            if !binding {
                liveness.sent(now, rloc, source, prefix);
            }
            direct_batch = binding && via_rtr.is_some();
            close_batch(staged, ready, stats);
            staged.meta = Some(Transmit {
                src: source,
                dst: SocketAddr::new(rloc, port),
                ttl,
                tos,
                flow,
                segment: None,
                datagrams: 0,
                from_control_port,
                // Behind a NAT (to our RTR), or to a node behind one: from the data port.
                from_data_port: binding || *via_rtr == Some(rloc),
            });
            staged.iid = iid;
            staged.segment = len;
            staged.out = spare.pop().unwrap_or_default();
            staged.out.clear();
        }
        let hdr = DataHeader::with_instance(iid, nonce, 0);
        let written = match write_datagram(src, hdr, key.as_deref_mut(), &mut staged.out) {
            Ok(n) => n,
            Err(_) => {
                stats.drop(Drop::NoKey);
                return Encapsulated::Dropped(Drop::NoKey);
            }
        };
        let mut rekey = false;
        if let Some(k) = key.as_ref() {
            stats.encrypted += 1;
            // The key's packet budget is spent: ask once for a fresh key (RFC 8061 §10).
            rekey = k.packets() >= cfg.rekey_packets;
        }
        staged.bytes += written;
        staged.closed = written < staged.segment || from_control_port;
        staged.inner_bytes += inner_len as u64;
        if let Some(m) = staged.meta.as_mut() {
            m.datagrams += 1;
        }
        if direct_batch {
            relay.sent(now, SocketAddr::new(rloc, port));
        }
        if rekey && !binding && rekey_asked.insert(rloc) {
            requests.push_back(ControlRequest::Rekey { rloc });
        }
        Encapsulated::Staged
    }

    /// The next datagram or GSO batch to send, its bytes swapped into `buf` (whose old
    /// buffer is kept for reuse, so the steady state allocates nothing). Closes the batch
    /// being filled: call it after each read of packets. For a data plane that only
    /// [`encapsulate`](Self::encapsulate)s; a transmit with datagrams encapsulated in place
    /// (which `buf` cannot hold) is counted as failed and skipped.
    pub fn poll_transmit(&mut self, buf: &mut Vec<u8>) -> Option<Transmit> {
        let mut out = std::mem::take(&mut self.scratch);
        std::mem::swap(buf, &mut out.buf);
        let t = loop {
            let Some(t) = self.poll_transmit_parts(&mut out) else {
                break None;
            };
            if out.parts.iter().all(|p| matches!(p, Part::Own(_))) {
                break Some(t);
            }
            self.transmit_failed(&t);
        };
        std::mem::swap(buf, &mut out.buf);
        self.scratch = out;
        t
    }

    /// The next datagram or GSO batch to send, its datagrams swapped into `out` (whose old
    /// buffers are kept for reuse): each [`Part`] in `out.buf` or in a buffer the caller
    /// gave [`encapsulate_in_place`](Self::encapsulate_in_place). Closes the batch being
    /// filled: call it after each read of packets, until it gives nothing.
    pub fn poll_transmit_parts(&mut self, out: &mut Datagrams) -> Option<Transmit> {
        if self.ready.is_empty() {
            close_batch(&mut self.staged, &mut self.ready, &mut self.stats);
        }
        let (meta, mut contents) = self.ready.pop_front()?;
        std::mem::swap(out, &mut contents);
        if self.spare.len() < SPARE_BUFFERS
            && (contents.buf.capacity() > 0 || contents.parts.capacity() > 0)
        {
            self.spare.push(contents);
        }
        Some(meta)
    }

    /// The runtime could not send `t`: its datagrams are counted as dropped.
    pub fn transmit_failed(&mut self, t: &Transmit) {
        self.stats.drop_n(Drop::SendFailed, t.datagrams as u64);
    }

    /// The next request for the control plane.
    pub fn poll_control_request(&mut self) -> Option<ControlRequest> {
        self.requests.pop_front()
    }

    /// The next packet for a TUN device (an ICMP error for a packet released from a queue).
    pub fn poll_to_tun(&mut self) -> Option<(u32, Vec<u8>)> {
        self.to_tun.pop_front()
    }

    /// The control plane changed the map-cache: the packets whose destination it now
    /// answers for leave, those that waited longer than the wait bound are dropped.
    pub fn handle_mappings(&mut self, now: Duration, cache: &MapCache) {
        if self.waiting.is_empty() {
            return;
        }
        let (ready, expired) = self
            .waiting
            .release(now, |iid, dst| cache.lookup(iid, dst, now).is_some());
        self.stats.drop_n(Drop::NoMapping, expired as u64);
        for (iid, packet) in ready {
            if let Encapsulated::IcmpToTun(error) = self.encapsulate(now, iid, &packet, cache) {
                self.to_tun.push_back((iid, error));
            }
        }
    }

    /// Installs what the control plane agreed (RFC 8061 key exchange in RLOC-probes) and
    /// stages the packets that waited for it.
    pub fn handle_key_event(&mut self, now: Duration, e: KeyEvent) {
        self.install_key(now, e.prepare());
    }

    /// [`handle_key_event`](Self::handle_key_event) with the keys already built (a share of
    /// one prepared key per worker).
    pub fn install_key(&mut self, now: Duration, k: PreparedKey) {
        match k {
            PreparedKey::Send {
                rloc,
                mut key,
                source,
            } => {
                tracing::info!(%rloc, suite = ?key.suite, key_id = key.key_id, "lisp-crypto key agreed (send)");
                // Packets sealed under it leave from where it was agreed: the source changes
                // with the key, never before it (a node that moves or fails over).
                key.source = source;
                self.send_keys.insert(rloc, key);
                self.rekey_asked.remove(&rloc);
                self.keyless.remove(&rloc);
                self.flush_pending(now, rloc);
            }
            PreparedKey::Recv {
                itr,
                key,
                material,
                valid_id,
            } => {
                let (suite, key_id) = (key.suite, key.key_id);
                let installed = if valid_id {
                    self.recv_keys.install_key(now, itr, key, material)
                } else {
                    Install::Full
                };
                if self.counted_new(installed) {
                    tracing::info!(%itr, ?suite, key_id, "lisp-crypto key agreed (receive; in use once data proves it)")
                }
            }
            PreparedKey::Source { rloc, source } => {
                if let Some(k) = self.send_keys.get_mut(&rloc) {
                    k.source = source;
                }
            }
            PreparedKey::ViaRtr { rtr } => {
                match rtr {
                    Some(rtr) => tracing::info!(%rtr, "behind a NAT: all traffic through the RTR"),
                    None => tracing::info!("traffic to the mappings' RLOCs again (no RTR)"),
                }
                // Going behind a NAT we relay for nobody; leaving it, our direct paths to
                // nodes behind other NATs go (a public node must not relay for them).
                if rtr != self.via_rtr {
                    self.relay = Relay::default();
                }
                self.via_rtr = rtr;
                self.last_route = None;
            }
            PreparedKey::Binding {
                at,
                recv,
                send,
                valid_id,
            } => {
                let installed = if valid_id {
                    self.relay.install(now, at, recv, send)
                } else {
                    Install::Full
                };
                if self.counted_new(installed) {
                    tracing::info!(%at, "lisp-crypto key agreed with a node behind a NAT");
                }
            }
            PreparedKey::Bind { eid, at } => {
                self.relay.bind(eid, at);
                self.last_route = None;
            }
            PreparedKey::NoKey { rloc } => {
                tracing::warn!(%rloc, allow_clear = self.cfg.allow_clear, "RLOC offers no lisp-crypto key");
                self.keyless.insert(rloc);
                if self.cfg.allow_clear {
                    self.flush_pending(now, rloc);
                } else if let Some(q) = self.pending.remove(&rloc) {
                    self.stats.drop_n(Drop::NoKey, q.len() as u64);
                }
            }
        }
    }

    /// As RTR: a packet [`Decapsulated::Forward`] gave, encapsulated again toward its
    /// destination (draft-ermagan-lisp-nat-traversal-19 §5.3.1), by copying.
    pub fn forward(
        &mut self,
        now: Duration,
        iid: u32,
        packet: &[u8],
        cache: &MapCache,
    ) -> Encapsulated {
        self.encapsulate(now, iid, packet, cache)
    }

    /// As RTR: the nodes behind NATs registered through us, and where.
    pub fn relay(&self) -> &Relay {
        &self.relay
    }

    /// Counts a key refused for a full table; whether it is a new one.
    fn counted_new(&mut self, installed: Install) -> bool {
        match installed {
            Install::Candidate => true,
            Install::Refreshed => false,
            Install::Full => {
                self.stats.recv_keys_refused += 1;
                false
            }
        }
    }

    /// The counters and keys in use, for the views.
    pub fn report(&self) -> DataReport {
        DataReport {
            stats: self.stats.clone(),
            send_keys: self
                .send_keys
                .iter()
                .map(|(ip, k)| (*ip, k.suite, k.key_id, k.packets()))
                .collect(),
            recv_keys: self.recv_keys.current().collect(),
        }
    }

    /// Our RLOC that packets to `rloc` leave from when its key does not say
    /// ([`SendKey::source`]): the one probing found reaches it (`via`: a multi-homed node
    /// whose nearest path failed) while it is still ours, else the nearest by address.
    fn source_for(&self, rloc: IpAddr, via: Option<IpAddr>) -> Option<IpAddr> {
        via.filter(|a| self.cfg.rlocs.contains(a))
            .or_else(|| select::source_rloc(self.cfg.rlocs.iter().copied(), rloc))
    }

    fn flush_pending(&mut self, now: Duration, rloc: IpAddr) {
        if let Some(q) = self.pending.remove(&rloc) {
            for (iid, source, p) in q {
                // Each packet was checked when it was queued.
                let Ok(ip) = IpPacket::new_checked(&p[..]) else {
                    continue;
                };
                let r = Routed {
                    flow: FlowKey::of_ip(&ip).hash64(),
                    outer: encap::outer_ttl_tos_of(&ip),
                    rloc,
                    port: DATA_PORT,
                    binding: false,
                    prefix: None,
                    source,
                };
                self.stage(now, &r, iid, Src::Copy(&p));
            }
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) has work: packets waiting for a
    /// mapping run out of time, and the RLOCs sent to are looked at
    /// ([`liveness`](super::liveness); the ETR's key expiry needs no exact time).
    pub fn poll_timeout(&self) -> Option<Duration> {
        match (self.waiting.next_expiry(), self.liveness.next_check()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Timers: the ETR's idle keys and unproven candidates expire (RFC 8061 §9). Packets
    /// waiting too long for a mapping are dropped by [`handle_mappings`](Self::handle_mappings),
    /// which `Engine::exchange` runs at every wake-up (and [`poll_timeout`](Self::poll_timeout)
    /// makes one happen when they run out of time).
    pub fn handle_timeout(&mut self, now: Duration, cache: &MapCache) {
        if now >= self.next_key_expiry {
            self.next_key_expiry = now + KEY_EXPIRY_EVERY;
            self.recv_keys.expire(now);
            self.relay.expire(now);
            self.introduced.clear();
        }
        for at in self.relay.silent(now) {
            self.requests.push_back(ControlRequest::CheckDirect { at });
        }
        for rloc in self.liveness.check(now, cache) {
            self.stats.path_checks_asked += 1;
            self.requests.push_back(ControlRequest::Check { rloc });
        }
    }

    /// ETR: a datagram that arrived on port 4341 from `from`. An encrypted packet is
    /// decrypted in place; the inner packet is a slice of `datagram`.
    pub fn decapsulate<'a>(
        &mut self,
        now: Duration,
        from: SocketAddr,
        datagram: &'a mut [u8],
    ) -> Decapsulated<'a> {
        self.decapsulate_at(now, from, None, datagram)
    }

    /// [`decapsulate`](Self::decapsulate) of a datagram sent to our address `local`
    /// (`None`: not known): which of our RLOCs a peer reaches tells which of our paths to
    /// it works ([`liveness`](super::liveness)).
    pub fn decapsulate_at<'a>(
        &mut self,
        now: Duration,
        from: SocketAddr,
        local: Option<IpAddr>,
        datagram: &'a mut [u8],
    ) -> Decapsulated<'a> {
        match self.decide(now, from, datagram) {
            Ok(Inner::Deliver { iid, range }) => {
                let (rloc, bytes) = (from.ip(), range.len() as u64);
                match &mut self.rx_run {
                    Some((r, i, p, b, l)) if *r == rloc && *i == iid && *l == local => {
                        *p += 1;
                        *b += bytes;
                    }
                    _ => {
                        self.flush_counters();
                        self.rx_run = Some((rloc, iid, 1, bytes, local));
                        // Once per run of packets from one sender: heard from it.
                        self.liveness.heard().note(now, rloc, local);
                    }
                }
                Decapsulated::Deliver {
                    iid,
                    packet: &datagram[range],
                }
            }
            Ok(Inner::Control) => Decapsulated::Control {
                payload: &datagram[DataHeader::LEN..],
            },
            Ok(Inner::Forward { iid, range }) => {
                self.stats.relayed += 1;
                Decapsulated::Forward {
                    iid,
                    packet: &datagram[range],
                }
            }
            Err(d) => {
                self.stats.drop(d);
                Decapsulated::Dropped(d)
            }
        }
    }

    fn decide(
        &mut self,
        now: Duration,
        from: SocketAddr,
        datagram: &mut [u8],
    ) -> Result<Inner, Drop> {
        let h = DataHeader::parse(datagram).map_err(|_| Drop::Malformed)?;
        // RFC 9300 §5.3: without the I bit the packet belongs to the default Instance-ID 0
        // (lispers.net and OOR send their IID-0 data so).
        let iid = h.instance_id().unwrap_or(0);
        if iid == CONTROL_INSTANCE_ID {
            // Control carried in data (LISP-Decent replication): never encrypted.
            return if h.key_id == 0 {
                Ok(Inner::Control)
            } else {
                Err(Drop::EncryptedControl)
            };
        }
        // As RTR: from a node behind a NAT, known by its binding (draft §5.3).
        let binding = !self.relay.is_empty() && self.relay.is_binding(&from);
        let range = if h.key_id != 0 {
            // The keys of the sending address under the packet's key-id; then the ICV first,
            // the replay window, and decryption (RFC 8061 §9), in place.
            let r = if binding {
                self.relay.open(now, from, datagram).inspect(|_| {
                    if self.via_rtr.is_some() {
                        self.relay.heard(now, from);
                    }
                })
            } else {
                self.recv_keys.open(now, from.ip(), datagram)
            };
            let r = r.map_err(|e| match e {
                CryptoError::Replay => Drop::Replayed,
                CryptoError::NoKey(_) => Drop::NoKey,
                _ => Drop::IcvFailed,
            })?;
            self.stats.decrypted += 1;
            r
        } else if self.cfg.encryption.is_some() && !self.cfg.allow_clear {
            return Err(Drop::ClearRefused);
        } else {
            DataHeader::LEN..datagram.len()
        };
        let dst = IpPacket::new_checked(&datagram[range.clone()])
            .map_err(|_| Drop::Malformed)?
            .destination();
        if self.ours_last.is_some_and(|p| p.contains(iid, dst)) {
            return Ok(Inner::Deliver { iid, range });
        }
        if let Some((p, _)) = self.ours.lookup(iid, dst) {
            self.ours_last = Some(p);
            return Ok(Inner::Deliver { iid, range });
        }
        // As RTR (draft §5.3.1): what a node behind a NAT sends anywhere, and what anyone
        // sends to a node that registered through us, is encapsulated again; nothing else
        // is relayed, and a node behind a NAT relays nothing.
        if self.via_rtr.is_none() && !self.relay.is_empty() {
            let to = self.relay.binding_of(iid, dst);
            if let (true, Some(to)) = (binding, to)
                && self.introduced.len() < MAX_INTRODUCED
                && self.introduced.insert((from.min(to), from.max(to)))
            {
                // Between two nodes behind NATs: they may find a direct path.
                self.requests
                    .push_back(ControlRequest::Introduce { a: from, b: to });
            }
            if binding || to.is_some() {
                return Ok(Inner::Forward { iid, range });
            }
        }
        let known_instance = self.ours.iter().any(|(p, _)| p.iid == iid);
        Err(if known_instance {
            Drop::NotOurEid
        } else {
            Drop::UnknownInstance
        })
    }
}

/// Writes one datagram (LISP header, and with `key` IV, sealed packet and tag) of `src` into
/// `out`: where the packet lies when `src` is in place with room around it and the suite
/// allows, else copied after the datagrams `out.buf` holds. Returns its length; on a
/// failed seal nothing is added.
fn write_datagram(
    src: Src<'_>,
    hdr: DataHeader,
    key: Option<&mut SendKey>,
    out: &mut Datagrams,
) -> Result<usize, CryptoError> {
    let copy = |out: &mut Datagrams, key: Option<&mut SendKey>, packet: &[u8]| {
        let before = out.buf.len();
        match key {
            Some(k) => {
                if let Err(e) = k.seal_append(hdr, packet, &mut out.buf) {
                    out.buf.truncate(before);
                    return Err(e);
                }
            }
            None => encap::append_clear(&mut out.buf, hdr, packet),
        }
        out.parts.push(Part::Own(before..out.buf.len()));
        Ok(out.buf.len() - before)
    };
    match src {
        Src::Copy(packet) => copy(out, key, packet),
        Src::InPlace { slot, buf, packet } => {
            let head = match key.as_deref() {
                Some(k) => k.head_len(),
                None => Some(DataHeader::LEN),
            };
            let tail = if key.is_some() { TAILROOM } else { 0 };
            let fits = head.is_some_and(|h| packet.start >= h)
                && packet.end.checked_add(tail).is_some_and(|e| e <= buf.len());
            if !fits {
                return copy(out, key, &buf[packet]);
            }
            let range = match key {
                Some(k) => k.seal_in_place(hdr, buf, packet)?,
                None => {
                    let start = packet.start - DataHeader::LEN;
                    // Eight bytes always take the header.
                    let _ = hdr.emit(&mut buf[start..packet.start]);
                    start..packet.end
                }
            };
            let n = range.len();
            out.parts.push(Part::Slot { slot, range });
            Ok(n)
        }
    }
}

/// Moves the batch being filled to the ready queue, and counts it (per RLOC and
/// Instance-ID once per batch, not per packet).
fn close_batch(
    staged: &mut Staged,
    ready: &mut VecDeque<(Transmit, Datagrams)>,
    stats: &mut DataStats,
) {
    let Some(mut meta) = staged.meta.take() else {
        return;
    };
    if meta.datagrams > 1 {
        meta.segment = Some(staged.segment);
        stats.batched_sends += 1;
    }
    stats.sent_n(
        meta.dst.ip(),
        staged.iid,
        meta.datagrams as u64,
        std::mem::take(&mut staged.inner_bytes),
    );
    staged.closed = false;
    staged.bytes = 0;
    ready.push_back((meta, std::mem::take(&mut staged.out)));
}

/// The ETR's decision, before the borrow of the datagram is handed out.
enum Inner {
    Deliver { iid: u32, range: Range<usize> },
    Control,
    Forward { iid: u32, range: Range<usize> },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clear_xtr(rloc: [u8; 4], database: &[&str]) -> Xtr {
        Xtr::new(XtrConfig {
            database: database
                .iter()
                .map(|d| EidPrefix::new(0, d.parse().expect("a prefix")))
                .collect(),
            rlocs: vec![IpAddr::from(rloc)],
            encryption: None,
            allow_clear: true,
            underlay_mtu: 1500,
            rekey_packets: u64::MAX,
            rng_seed: 1,
        })
    }

    /// A UDP packet from 10.1.0.1 to `dst`.
    fn packet(dst: [u8; 4]) -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 1, 0, 1];
        p.extend_from_slice(&dst);
        p.extend_from_slice(&[0x13, 0x88, 0x13, 0x89, 0, 20, 0, 0]);
        p.resize(40, 0x5a);
        p
    }

    /// The ETR remembers the database prefix of the last packet it delivered; a packet
    /// outside it, or under another Instance-ID, is still looked up and refused.
    #[test]
    fn the_last_delivered_prefix_admits_only_what_it_covers() {
        let now = Duration::from_secs(1);
        let (itr_rloc, etr_rloc) = ([192, 0, 2, 1], [192, 0, 2, 2]);
        let mut itr = clear_xtr(itr_rloc, &["10.1.0.0/16"]);
        let mut etr = clear_xtr(etr_rloc, &["10.3.0.0/16", "10.5.0.0/16"]);
        let mut cache = MapCache::new();
        for iid in [0, 7] {
            cache.insert(crate::sim::cache_entry(
                EidPrefix::new(iid, "10.0.0.0/8".parse().expect("a prefix")),
                &[IpAddr::from(etr_rloc)],
                Duration::from_secs(3600),
            ));
        }
        let from = SocketAddr::new(IpAddr::from(itr_rloc), 61000);
        let mut send = |iid: u32, dst: [u8; 4]| -> Result<u32, Drop> {
            assert_eq!(
                itr.encapsulate(now, iid, &packet(dst), &cache),
                Encapsulated::Staged
            );
            let mut out = Vec::new();
            itr.poll_transmit(&mut out).expect("one datagram");
            match etr.decapsulate(now, from, &mut out) {
                Decapsulated::Deliver { iid, .. } => Ok(iid),
                Decapsulated::Dropped(d) => Err(d),
                Decapsulated::Control { .. } => panic!("not control"),
                Decapsulated::Forward { .. } => panic!("not an RTR"),
            }
        };
        assert_eq!(send(0, [10, 3, 0, 1]), Ok(0));
        assert_eq!(send(0, [10, 3, 9, 9]), Ok(0));
        assert_eq!(send(0, [10, 4, 0, 1]), Err(Drop::NotOurEid));
        assert_eq!(send(7, [10, 3, 0, 1]), Err(Drop::UnknownInstance));
        assert_eq!(send(0, [10, 5, 0, 1]), Ok(0));
        assert_eq!(send(0, [10, 3, 0, 2]), Ok(0));
        assert_eq!(send(7, [10, 5, 0, 1]), Err(Drop::UnknownInstance));
    }

    /// The datagrams of `d`, resolved against the caller's buffers `slots`.
    fn resolve(d: &Datagrams, slots: &[Vec<u8>]) -> Vec<Vec<u8>> {
        d.parts
            .iter()
            .map(|p| match p {
                Part::Own(r) => d.buf[r.clone()].to_vec(),
                Part::Slot { slot, range } => slots[*slot][range.clone()].to_vec(),
            })
            .collect()
    }

    /// Encapsulating where the packet lies sends, transmit by transmit, the same bytes as
    /// encapsulating by copy (same seeds, same keys): clear, both AEAD suites, in batches and
    /// alone; it works in place exactly when the room is there and the suite allows, copies
    /// otherwise, and a packet waiting for its key is copied and released later. The
    /// one-buffer `poll_transmit` counts in-place transmits it cannot hand out as failed.
    #[test]
    fn in_place_encapsulation_sends_what_copying_sends() {
        let now = Duration::from_secs(1);
        let etr = IpAddr::from([192, 0, 2, 2]);
        let mut cache = MapCache::new();
        cache.insert(crate::sim::cache_entry(
            EidPrefix::new(0, "10.0.0.0/8".parse().expect("a prefix")),
            &[etr],
            Duration::from_secs(3600),
        ));
        // Four packets of one flow (the last shorter: it closes the batch), one of another
        // flow, one read without room around it.
        let mut packets: Vec<Vec<u8>> = (0..4).map(|_| packet([10, 3, 0, 1])).collect();
        packets[3].truncate(36);
        packets[3][3] = 36;
        packets.push(packet([10, 3, 0, 2]));
        packets.push(packet([10, 3, 0, 1]));
        let roomy = |p: &[u8]| {
            let mut b = vec![0u8; HEADROOM + p.len() + TAILROOM];
            b[HEADROOM..HEADROOM + p.len()].copy_from_slice(p);
            (b, HEADROOM..HEADROOM + p.len())
        };
        for suite in [
            None,
            Some(CipherSuite::Aes128Gcm),
            Some(CipherSuite::ChaCha20Poly1305),
        ] {
            let make = || {
                let mut x = clear_xtr([192, 0, 2, 1], &["10.1.0.0/16"]);
                x.cfg.encryption = suite;
                if let Some(suite) = suite {
                    x.handle_key_event(
                        now,
                        KeyEvent::Send {
                            rloc: etr,
                            suite,
                            key_id: 1,
                            key: [3; 32],
                            source: None,
                        },
                    );
                }
                x
            };
            let (mut copying, mut in_place) = (make(), make());
            let mut slots = Vec::new();
            for (i, p) in packets.iter().enumerate() {
                assert_eq!(copying.encapsulate(now, 0, p, &cache), Encapsulated::Staged);
                let (mut b, r) = if i == packets.len() - 1 {
                    (p.clone(), 0..p.len())
                } else {
                    roomy(p)
                };
                let got = in_place.encapsulate_in_place(now, 0, i, &mut b, r, &cache);
                assert_eq!(got, Encapsulated::Staged);
                slots.push(b);
            }
            let (mut a, mut b) = (Vec::new(), Datagrams::default());
            let mut transmits = 0;
            while let Some(want) = copying.poll_transmit(&mut a) {
                let got = in_place
                    .poll_transmit_parts(&mut b)
                    .expect("as many transmits");
                assert_eq!(got, want, "{suite:?}");
                let datagrams = resolve(&b, &slots);
                assert_eq!(datagrams.concat(), a, "{suite:?}");
                assert_eq!(datagrams.len(), want.datagrams);
                // In place exactly where the room was (the last packet had none).
                let last = b
                    .parts
                    .iter()
                    .any(|p| matches!(p, Part::Slot { slot: 5, .. }));
                assert!(!last);
                assert!(
                    b.parts
                        .iter()
                        .all(|p| matches!(p, Part::Slot { .. }) || transmits == 2)
                );
                transmits += 1;
            }
            assert_eq!(transmits, 3, "four packets batched, then one, then one");
            assert!(in_place.poll_transmit_parts(&mut b).is_none());
        }

        // lispers.net's padded suite is copied; so is a packet that waited for its key.
        let mut x = clear_xtr([192, 0, 2, 1], &["10.1.0.0/16"]);
        x.cfg.encryption = Some(CipherSuite::ChaCha20Poly1305);
        let (mut b, r) = roomy(&packets[0]);
        let waited = x.encapsulate_in_place(now, 0, 0, &mut b, r.clone(), &cache);
        assert_eq!(waited, Encapsulated::Queued);
        assert_eq!(
            &b[r.clone()],
            &packets[0][..],
            "a waiting packet is left alone"
        );
        x.handle_key_event(
            now,
            KeyEvent::Send {
                rloc: etr,
                suite: CipherSuite::LispersCs6,
                key_id: 1,
                key: [3; 32],
                source: None,
            },
        );
        let (mut b2, r2) = roomy(&packets[1]);
        let got = x.encapsulate_in_place(now, 0, 1, &mut b2, r2.clone(), &cache);
        assert_eq!(got, Encapsulated::Staged);
        assert_eq!(&b2[r2], &packets[1][..], "cs6 is not sealed in place");
        let mut d = Datagrams::default();
        let mut own = 0;
        while let Some(t) = x.poll_transmit_parts(&mut d) {
            assert!(t.from_control_port);
            assert!(matches!(d.parts[..], [Part::Own(_)]));
            own += 1;
        }
        assert_eq!(own, 2, "the released packet and the new one");

        // The one-buffer poll cannot hand out datagrams that lie in the caller's buffers.
        let mut x = clear_xtr([192, 0, 2, 1], &["10.1.0.0/16"]);
        let (mut b, r) = roomy(&packets[0]);
        x.encapsulate_in_place(now, 0, 0, &mut b, r, &cache);
        let mut out = Vec::new();
        assert!(x.poll_transmit(&mut out).is_none());
        assert_eq!(x.stats().drops.get(&Drop::SendFailed), Some(&1));
    }
}
