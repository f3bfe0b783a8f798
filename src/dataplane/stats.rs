//! Data-plane counters: packets and bytes per RLOC and per Instance-ID, in each direction, and
//! every drop by reason (RFC 9300 §5 encapsulation / decapsulation; RFC 8061 §9 for the
//! lisp-crypto drops, which are silent on the wire and so only visible here).

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// Packets and their inner bytes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Traffic {
    pub packets: u64,
    pub bytes: u64,
}

impl Traffic {
    fn add_all(&mut self, t: Traffic) {
        self.packets += t.packets;
        self.bytes += t.bytes;
    }
}

/// Traffic of one RLOC or one Instance-ID: encapsulated (sent to it / from it) and
/// decapsulated (received from it / into it).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Directions {
    pub encapsulated: Traffic,
    pub decapsulated: Traffic,
}

/// Why a data packet was not forwarded.
impl Directions {
    fn add_all(&mut self, o: &Directions) {
        self.encapsulated.add_all(o.encapsulated);
        self.decapsulated.add_all(o.decapsulated);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Drop {
    /// Too short, or the inner packet is not IPv4 / IPv6.
    Malformed,
    /// An Instance-ID we have no EIDs in.
    UnknownInstance,
    /// The inner destination is not one of our EIDs in that Instance-ID (RFC 9300 §7).
    NotOurEid,
    /// Instance-ID 0xFFFFFF with the K bits set: control is never encrypted.
    EncryptedControl,
    /// ITR: no mapping for the destination (yet), and the wait queue was full or timed out.
    NoMapping,
    /// ITR: a multicast, broadcast, link-local or unspecified destination: not an EID a
    /// mapping can exist for (the kernel's own IPv6 router solicitations and the like).
    NotUnicast,
    /// ITR: a negative map-cache entry whose action is to drop.
    Negative,
    /// ITR: a mapping whose RLOCs are all down or priority 255.
    NoRloc,
    /// ETR: no TUN device for the Instance-ID.
    NoDevice,
    /// ETR: the TUN device refused the write (down, or a super-packet it did not take).
    TunWriteFailed,
    /// lisp-crypto: no key for the RLOC / key-id (RFC 8061 §9).
    NoKey,
    /// lisp-crypto: the ICV did not verify.
    IcvFailed,
    /// lisp-crypto: outside or already seen in the anti-replay window.
    Replayed,
    /// Clear LISP data refused while encryption is on (`allow_clear` unset).
    ClearRefused,
    /// ITR: the bounded queue waiting for a key was full.
    KeyQueueFull,
    /// ITR: larger than the tunnel can carry; an ICMP error went back into the TUN.
    TooBig,
    /// The underlay socket refused the datagram.
    SendFailed,
    /// Control carried in data (RFC 9962 §4) arrived faster than the control plane took
    /// it: the bounded queue toward it was full.
    ControlQueueFull,
}

/// RLOCs counted one by one; traffic of any further RLOC is added to `other_rlocs`, so
/// spoofed sources cannot grow the table without bound.
pub const MAX_RLOCS: usize = 4096;

/// Every counter of the data path.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct DataStats {
    pub encapsulated: Traffic,
    pub decapsulated: Traffic,
    /// Packets sealed / opened with lisp-crypto.
    pub encrypted: u64,
    pub decrypted: u64,
    /// Packets that waited for a key, or for a mapping (pull mode), before they left.
    pub queued_for_key: u64,
    pub queued_for_mapping: u64,
    /// ETR keys refused because the key table was full (bounded against spoofed sources).
    pub recv_keys_refused: u64,
    /// As RTR: packets decapsulated from or for a node behind a NAT and encapsulated again
    /// (draft-ermagan-lisp-nat-traversal-19 §5.3.1).
    pub relayed: u64,
    /// ICMP "fragmentation needed" / "packet too big" written back into a TUN.
    pub icmp_too_big: u64,
    /// Checks asked of the control plane: an RLOC sent to while its peer stayed silent
    /// (`dataplane::liveness`).
    pub path_checks_asked: u64,
    /// Batching by the kernel: TUN reads that carried several packets (a TCP super-packet,
    /// TSO), sends that carried several datagrams (UDP GSO), and data-port reads that
    /// carried several (UDP GRO); TUN writes that carried several TCP segments as one
    /// super-packet (our GRO, `dataplane::gro`).
    pub split_reads: u64,
    pub batched_sends: u64,
    pub coalesced_reads: u64,
    pub coalesced_writes: u64,
    pub per_rloc: BTreeMap<IpAddr, Directions>,
    pub other_rlocs: Directions,
    pub per_instance: BTreeMap<u32, Directions>,
    pub drops: BTreeMap<Drop, u64>,
    /// A node's data-plane workers, each one's own traffic (in worker order; empty for a
    /// single data plane's counters).
    pub per_worker: Vec<Directions>,
}

impl DataStats {
    fn rloc(&mut self, rloc: IpAddr) -> &mut Directions {
        if self.per_rloc.len() >= MAX_RLOCS && !self.per_rloc.contains_key(&rloc) {
            return &mut self.other_rlocs;
        }
        self.per_rloc.entry(rloc).or_default()
    }

    /// A packet of `bytes` (inner) left for `rloc` in `iid`.
    /// `packets` packets of `bytes` inner bytes in all, sent to `rloc` in `iid`.
    pub fn sent_n(&mut self, rloc: IpAddr, iid: u32, packets: u64, bytes: u64) {
        let t = Traffic { packets, bytes };
        self.encapsulated.add_all(t);
        self.rloc(rloc).encapsulated.add_all(t);
        self.per_instance
            .entry(iid)
            .or_default()
            .encapsulated
            .add_all(t);
    }

    /// `packets` packets of `bytes` inner bytes in all, received from `rloc` in `iid`.
    pub fn received_n(&mut self, rloc: IpAddr, iid: u32, packets: u64, bytes: u64) {
        let t = Traffic { packets, bytes };
        self.decapsulated.add_all(t);
        self.rloc(rloc).decapsulated.add_all(t);
        self.per_instance
            .entry(iid)
            .or_default()
            .decapsulated
            .add_all(t);
    }

    pub fn drop(&mut self, d: Drop) {
        self.drop_n(d, 1);
    }

    pub fn drop_n(&mut self, d: Drop, n: u64) {
        if n == 0 {
            return;
        }
        *self.drops.entry(d).or_insert(0) += n;
    }

    /// Drops for one reason.
    /// Adds another worker's counters to these (RLOCs beyond [`MAX_RLOCS`] go to
    /// `other_rlocs`, as they would have in one table).
    pub fn merge(&mut self, o: &DataStats) {
        self.encapsulated.add_all(o.encapsulated);
        self.decapsulated.add_all(o.decapsulated);
        self.encrypted += o.encrypted;
        self.decrypted += o.decrypted;
        self.queued_for_key += o.queued_for_key;
        self.queued_for_mapping += o.queued_for_mapping;
        self.recv_keys_refused += o.recv_keys_refused;
        self.relayed += o.relayed;
        self.icmp_too_big += o.icmp_too_big;
        self.path_checks_asked += o.path_checks_asked;
        self.split_reads += o.split_reads;
        self.batched_sends += o.batched_sends;
        self.coalesced_reads += o.coalesced_reads;
        self.coalesced_writes += o.coalesced_writes;
        for (rloc, d) in &o.per_rloc {
            self.rloc(*rloc).add_all(d);
        }
        self.other_rlocs.add_all(&o.other_rlocs);
        for (iid, d) in &o.per_instance {
            self.per_instance.entry(*iid).or_default().add_all(d);
        }
        for (d, n) in &o.drops {
            self.drop_n(*d, *n);
        }
        self.per_worker.extend(o.per_worker.iter().copied());
    }

    pub fn dropped(&self, d: Drop) -> u64 {
        self.drops.get(&d).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_rloc_and_instance_and_serializes_by_name() {
        let mut s = DataStats::default();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        s.sent_n(a, 1, 1, 100);
        s.sent_n(a, 2, 1, 50);
        s.received_n(b, 1, 1, 10);
        s.drop(Drop::NotOurEid);
        s.drop(Drop::Replayed);
        s.drop(Drop::Replayed);
        assert_eq!(
            s.encapsulated,
            Traffic {
                packets: 2,
                bytes: 150
            }
        );
        assert_eq!(s.per_rloc[&a].encapsulated.bytes, 150);
        assert_eq!(s.per_rloc[&b].decapsulated.packets, 1);
        assert_eq!(s.per_instance[&1].encapsulated.bytes, 100);
        assert_eq!(s.per_instance[&1].decapsulated.bytes, 10);
        assert_eq!(s.per_instance[&2].encapsulated.packets, 1);
        assert_eq!(s.dropped(Drop::Replayed), 2);
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["drops"]["replayed"], 2);
        assert_eq!(v["drops"]["not_our_eid"], 1);
        assert_eq!(v["per_rloc"]["192.0.2.1"]["encapsulated"]["packets"], 2);
        assert_eq!(v["per_instance"]["2"]["encapsulated"]["bytes"], 50);
    }

    #[test]
    fn merging_workers_sums_every_counter() {
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let mut one = DataStats::default();
        one.sent_n(a, 1, 2, 200);
        one.drop(Drop::Replayed);
        one.encrypted = 2;
        let mut two = DataStats::default();
        two.sent_n(a, 1, 3, 300);
        two.received_n(b, 7, 1, 10);
        two.drop_n(Drop::Replayed, 4);
        two.drop(Drop::NoKey);
        two.encrypted = 3;
        one.merge(&two);
        assert_eq!(one.encapsulated.packets, 5);
        assert_eq!(one.per_rloc[&a].encapsulated.bytes, 500);
        assert_eq!(one.per_rloc[&b].decapsulated.packets, 1);
        assert_eq!(one.per_instance[&1].encapsulated.packets, 5);
        assert_eq!(one.per_instance[&7].decapsulated.bytes, 10);
        assert_eq!(one.dropped(Drop::Replayed), 5);
        assert_eq!(one.dropped(Drop::NoKey), 1);
        assert_eq!(one.encrypted, 5);
    }

    #[test]
    fn the_rloc_table_is_bounded() {
        let mut s = DataStats::default();
        for i in 0..(MAX_RLOCS as u32 + 10) {
            s.received_n(IpAddr::from(i.to_be_bytes()), 0, 1, 1);
        }
        assert_eq!(s.per_rloc.len(), MAX_RLOCS);
        assert_eq!(s.other_rlocs.decapsulated.packets, 10);
        assert_eq!(s.decapsulated.packets, MAX_RLOCS as u64 + 10);
    }
}
