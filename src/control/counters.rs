//! Counters of what the control engine did and refused (exported by the API later).

/// Every counter the engine keeps. Refusals are counted by reason.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Counters {
    pub packets_received: u64,
    pub packets_malformed: u64,
    pub map_registers_received: u64,
    pub map_registers_accepted: u64,
    pub map_registers_sent: u64,
    pub register_rejected_unauthenticated: u64,
    pub register_rejected_auth: u64,
    pub register_rejected_not_allowed: u64,
    pub register_rejected_bad_eid: u64,
    pub registrations_expired: u64,
    pub own_looped_registers: u64,
    pub map_notifies_sent: u64,
    pub map_notifies_received: u64,
    pub map_notify_rejected_auth: u64,
    pub map_notify_acks_sent: u64,
    pub map_notify_acks_received: u64,
    pub map_requests_received: u64,
    pub map_requests_rate_limited: u64,
    /// Authenticated Map-Registers refused as replays (RFC 9301 §5.6).
    pub register_rejected_replay: u64,
    /// Members seen coming back (their register counter jumped): greeted at once.
    pub members_restarted: u64,
    pub map_requests_sent: u64,
    pub map_replies_sent: u64,
    pub negative_replies_sent: u64,
    pub map_replies_received: u64,
    pub map_replies_unmatched: u64,
    pub probes_answered: u64,
    pub probes_sent: u64,
    /// Probes that waited for the next second's budget (`PROBES_PER_SECOND`).
    pub probes_postponed: u64,
    pub probe_replies_received: u64,
    pub rlocs_marked_down: u64,
    /// NAT detection (Info-Request / Info-Reply): sent and received, refused for a missing
    /// or wrong site-key signature, replies to no request of ours, requests over the
    /// Map-Request rate limit, and our RLOCs found behind a NAT.
    pub info_requests_sent: u64,
    pub info_requests_received: u64,
    pub info_replies_sent: u64,
    pub info_replies_received: u64,
    pub info_unauthenticated: u64,
    pub info_replies_unmatched: u64,
    pub info_rate_limited: u64,
    /// Info-Requests not answered: the same nonce was answered within 2 minutes (a
    /// replay), or 4,096 were answered in that time.
    pub info_requests_replayed: u64,
    pub nat_detected: u64,
    /// Behind a NAT: the RTR we register and send through changed (taken, left or another).
    pub rtr_changes: u64,
    /// As RTR: EID-prefixes of nodes behind NATs bound (or moved) to a binding, refused
    /// because the table was full, and the control those nodes sent us carried in data.
    pub rtr_bindings: u64,
    pub rtr_bindings_refused: u64,
    pub rtr_control_received: u64,
    /// As RTR: introductions sent (two nodes behind NATs told where the other is).
    pub rtr_introductions: u64,
    /// Behind a NAT, direct paths to nodes behind other NATs: introductions taken, refused
    /// (table full), probes sent, answered from another address, answered without a key we
    /// take, paths up, down (back to the RTR) and given up.
    pub direct_introductions: u64,
    pub direct_refused: u64,
    pub direct_probes_sent: u64,
    pub direct_probes_misrouted: u64,
    pub direct_probes_keyless: u64,
    pub direct_paths_up: u64,
    pub direct_paths_down: u64,
    pub direct_given_up: u64,
    /// Copies for a member we could not send: it has no RLOC of a family we have.
    pub members_unreachable_by_family: u64,
    /// Checks of an RLOC the data plane sent to without hearing back (probed at once).
    pub path_checks: u64,
    /// Probes that left from another RLOC of ours than the last one, after a miss (a
    /// multi-homed node trying its other paths).
    pub probe_sources_changed: u64,
    pub keys_agreed: u64,
    /// Map-Requests from sources beyond the bucket table's bound, rate-limited together.
    pub map_requests_shared_bucket: u64,
    /// Map-Requests refused because all of them together were over the total rate.
    pub map_requests_over_total_rate: u64,
    /// ITRs not remembered for SMRs: the requester table was full.
    pub requesters_not_remembered: u64,
    /// Membership Map-Notifies sent once, without waiting for their Ack: the table of
    /// pending Notifies was full.
    pub notifies_not_tracked: u64,
    /// lisp-crypto offers refused: another suite than ours, or lisp-crypto off.
    pub key_offers_refused: u64,
    /// Offers in the peer-group profile without a valid site-key signature: no state kept.
    pub key_offers_unauthenticated: u64,
    /// Offers refused because the ETR's key table is full (spoofed sources cannot grow it).
    pub key_offers_dropped_full: u64,
    /// Probe replies in the peer-group profile whose key was not signed: the key is ignored.
    pub key_replies_unauthenticated: u64,
    /// Key-exchange trailers that did not verify with our site key.
    pub key_exchange_bad_signature: u64,
    pub smrs_sent: u64,
    pub smrs_received: u64,
    pub replicated_copies_sent: u64,
    pub replicated_received: u64,
    pub data_packets_ignored: u64,
    pub unsupported_messages: u64,
    /// Registrations sent to members whose registrations expired (partitioned or dead).
    pub lost_members_chased: u64,
    /// Map-Notifies from a configured `[[map_server]]` answering our registers.
    pub map_server_notifies_received: u64,
    /// Map-Requests (ECM) sent to a configured `[[map_resolver]]`.
    pub map_resolver_requests_sent: u64,
}
