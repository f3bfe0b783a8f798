//! The Map-Server half of the engine (RFC 9301 §8.2; RFC 9962 §4): authenticate, check the
//! site policy, store one registration per xTR-ID, notify.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::crypto::auth::{self, AuthKey};
use crate::mapping::{EidKey, RegisterOutcome, XtrRegistration};
use crate::wire::{Authentication, CONTROL_PORT, EidRecord, MapNotify, MapRegister, RlocRecord};

use super::config::MappingSystem;
use super::engine::{Arrival, Engine, NOTIFY_COALESCE, NOTIFY_RETRY, PendingNotify, Transmit};

/// The xTR-ID of a registrant that sends none (OOR): its source address, IPv4-mapped.
fn xtr_id_of(src: IpAddr) -> [u8; 16] {
    match src {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    }
}

/// How long a registration lives: the Record TTL when T is set (minutes; lispers.net's bit 31
/// means seconds), else three register intervals (RFC 9301 §8.2).
fn lifetime(reg: &MapRegister, rec: &EidRecord, interval: Duration) -> Duration {
    if reg.use_ttl {
        if rec.ttl & 0x8000_0000 != 0 {
            Duration::from_secs(u64::from(rec.ttl & 0x7fff_ffff))
        } else {
            Duration::from_secs(u64::from(rec.ttl) * 60)
        }
    } else {
        interval * 3
    }
}

impl Engine {
    /// The key a message authenticated with, or why it did not.
    fn authenticate(
        &mut self,
        bytes: &[u8],
        alg_id: u8,
        membership_only: bool,
    ) -> Result<Option<AuthKey>, ()> {
        if alg_id == auth::alg::NONE {
            if membership_only && self.cfg.site.accept_unauthenticated_membership {
                return Ok(None);
            }
            self.counters.register_rejected_unauthenticated += 1;
            return Err(());
        }
        match self.cfg.site.keys.verify(bytes) {
            Ok(i) => Ok(self.cfg.site.keys.keys.get(i).cloned()),
            Err(_) => {
                self.counters.register_rejected_auth += 1;
                Err(())
            }
        }
    }

    /// Whether the site policy lets this EID be registered.
    fn allowed_key(&self, key: &EidKey) -> bool {
        match key {
            EidKey::Prefix(p) => match self.allowed.lookup_prefix(p) {
                Some((a, more_specifics)) => a.prefix == p.prefix || *more_specifics,
                None => false,
            },
            EidKey::Name { iid, name } => self
                .cfg
                .site
                .allowed_names
                .iter()
                .any(|a| a.matches(*iid, name)),
            EidKey::Group(g) => match &self.cfg.mapping_system {
                MappingSystem::Push(pg) => g.group.addr() == pg.group && g.source.prefix_len() == 0,
                MappingSystem::Pull(_) => false,
            },
        }
    }

    /// Processes a Map-Register that arrived as `arrival` says ([`Arrival::Local`]: our
    /// own register handed over internally, as a group delivery every member also gets).
    pub(crate) fn process_register(
        &mut self,
        now: Duration,
        src: SocketAddr,
        bytes: &[u8],
        reg: &MapRegister,
        arrival: Arrival,
    ) {
        let local = arrival == Arrival::Local;
        let via_group = matches!(arrival, Arrival::Group | Arrival::Local);
        self.counters.map_registers_received += 1;
        if !local && reg.trailer.is_some_and(|t| t.xtr_id == self.cfg.xtr_id) {
            // Our own register looped back by underlay multicast: already handled locally.
            self.counters.own_looped_registers += 1;
            return;
        }
        let membership_only = !reg.records.is_empty()
            && reg.records.iter().all(|r| {
                matches!(
                    EidKey::from_wire(&r.eid, r.mask_len),
                    Some(EidKey::Group(_))
                )
            });
        let Ok(key) = self.authenticate(bytes, reg.auth.alg_id, membership_only) else {
            return;
        };
        let xtr_id = reg
            .trailer
            .map_or_else(|| xtr_id_of(src.ip()), |t| t.xtr_id);
        let site_id = reg.trailer.map_or([0; 8], |t| t.site_id);
        let mut restarted = false;
        if !local {
            // RFC 9301 §5.6: an old register (or withdrawal) replayed is refused.
            let withdrawal = !reg.records.is_empty() && reg.records.iter().all(|r| r.ttl == 0);
            let mut fingerprint = [0u8; 8];
            for (f, b) in fingerprint.iter_mut().zip(&reg.auth.data) {
                *f = *b;
            }
            match self.map_server.register_nonces.admit(
                now,
                (xtr_id, site_id),
                reg.nonce,
                fingerprint,
                withdrawal,
            ) {
                Err(_) => {
                    self.counters.register_rejected_replay += 1;
                    return;
                }
                Ok(super::register_replay::Admitted::Restarted) => restarted = true,
                Ok(_) => {}
            }
        }
        let mut accepted = false;
        let mut group_changed = false;
        let mut new_peer = false;
        let mut rle_peers: Vec<IpAddr> = Vec::new();
        for rec in &reg.records {
            let Some(k) = EidKey::from_wire(&rec.eid, rec.mask_len) else {
                self.counters.register_rejected_bad_eid += 1;
                continue;
            };
            if !self.allowed_key(&k) {
                self.counters.register_rejected_not_allowed += 1;
                continue;
            }
            accepted = true;
            let changed = if rec.ttl == 0 {
                self.site.deregister(&k, &xtr_id)
            } else {
                let r = XtrRegistration {
                    xtr_id,
                    site_id,
                    registerer: src.ip(),
                    first_registered: now,
                    last_registered: now,
                    expires: now + lifetime(reg, rec, self.cfg.timers.register_interval),
                    ttl: rec.ttl,
                    proxy_reply: reg.proxy_reply,
                    merge: reg.merge,
                    want_notify: reg.want_notify,
                    key_id: reg.auth.key_id,
                    rlocs: rec.rlocs.clone(),
                };
                let outcome = self.site.register(&k, r);
                if outcome == RegisterOutcome::New {
                    new_peer = true;
                }
                outcome != RegisterOutcome::Refreshed
            };
            if changed {
                if matches!(k, EidKey::Group(_)) {
                    group_changed = true;
                    for l in &rec.rlocs {
                        rle_peers.extend(
                            crate::mapping::rle_entries(&l.locator)
                                .into_iter()
                                .flatten()
                                .filter_map(|e| e.address.ip()),
                        );
                    }
                }
                self.mapping_changed(now, &k);
            }
        }
        if !accepted {
            return;
        }
        self.counters.map_registers_accepted += 1;
        if !local {
            // A lost member is back.
            self.registrar.lost.remove(&src.ip());
        }
        // Asked for a Map-Notify: answered, also for a copy that came as replication (a
        // member's greeting does); underlay-multicast group registers never ask.
        if reg.want_notify && !local {
            self.send_register_notify(src, reg, key.as_ref());
        }
        if group_changed && !via_group && !local {
            // One round of Notifies for every change within the coalescing window.
            self.map_server
                .notify_due
                .get_or_insert(now + NOTIFY_COALESCE);
            self.map_server.notify_again = true;
        }
        if (new_peer || restarted)
            && !local
            && matches!(self.cfg.mapping_system, MappingSystem::Push(_))
        {
            // A newcomer, or a member that came back (its registrations may still be here,
            // but it lost ours): send it our registrations now rather than at the next
            // interval.
            if restarted {
                self.counters.members_restarted += 1;
                self.registrar.greeted.remove(&src.ip());
                // And tell it the membership (a Notify round), so it greets the others and
                // they, seeing its counter jump too, greet it back.
                if !via_group {
                    self.map_server
                        .notify_due
                        .get_or_insert(now + NOTIFY_COALESCE);
                }
            }
            self.greet(now, src.ip());
        }
        for peer in rle_peers {
            self.greet(now, peer);
        }
    }

    /// The Map-Notify that acknowledges a Map-Register (RFC 9301 §5.7): nonce, records and
    /// trailer copied, authenticated with the key that verified the register.
    fn send_register_notify(&mut self, dst: SocketAddr, reg: &MapRegister, key: Option<&AuthKey>) {
        let n = MapNotify {
            reserved: 0,
            nonce: reg.nonce,
            auth: Authentication::unsigned(reg.auth.key_id, reg.auth.alg_id),
            records: reg.records.clone(),
            trailer: reg.trailer,
            unflagged_trailer: false,
        };
        if let Some(bytes) = signed(
            &crate::wire::ControlMessage::MapNotify(n),
            key.map(|k| &k.secret[..]),
        ) {
            self.counters.map_notifies_sent += 1;
            let src = self.rloc_for(dst.ip());
            self.push(Transmit {
                src,
                src_port: CONTROL_PORT,
                dst,
                ttl: None,
                payload: bytes,
            });
        }
    }

    /// The merged `(0/0, G)` record as the Map-Server answers it.
    pub(crate) fn group_record(&self) -> Option<EidRecord> {
        let g = self.group_key()?;
        let entry = self.site.group(&g)?;
        let pad = matches!(&self.cfg.mapping_system, MappingSystem::Push(p) if p.lispers_membership_encoding);
        let (eid, ml) = EidKey::Group(g).to_wire(pad);
        let mut rec = EidRecord::new(
            eid,
            ml,
            self.cfg.timers.record_ttl_mins,
            entry.merged_rlocs().to_vec(),
        );
        rec.authoritative = true;
        Some(rec)
    }

    /// Tells every RLE member of the peer group the merged membership (RFC 9962 §4: this is
    /// how a newcomer and the existing members learn of each other).
    pub(crate) fn notify_rle_members(&mut self, now: Duration) {
        let Some(rec) = self.group_record() else {
            return;
        };
        let Some((key, alg)) = self.cfg.site.own_key.clone() else {
            return;
        };
        for m in self.members() {
            let nonce = self.nonce();
            let n = MapNotify {
                reserved: 0,
                nonce,
                auth: Authentication::unsigned(key.key_id.unwrap_or(0), alg),
                records: vec![rec.clone()],
                trailer: None,
                unflagged_trailer: false,
            };
            let Some(bytes) = signed(
                &crate::wire::ControlMessage::MapNotify(n),
                Some(&key.secret),
            ) else {
                continue;
            };
            let dst = SocketAddr::new(m, CONTROL_PORT);
            self.counters.map_notifies_sent += 1;
            self.push(Transmit {
                src: self.rloc_for(m),
                src_port: CONTROL_PORT,
                dst,
                ttl: None,
                payload: bytes.clone(),
            });
            self.map_server.pending_notifies.insert(
                nonce,
                PendingNotify {
                    dst,
                    payload: bytes,
                    retries_left: 2,
                    next: now + NOTIFY_RETRY,
                },
            );
            self.map_server
                .notify_timers
                .schedule(nonce, now + NOTIFY_RETRY);
        }
    }

    /// Unacknowledged Notifies go again (RFC 9301 §5.7), from the timer table: no walk over
    /// the pending ones.
    pub(crate) fn retransmit_notifies(&mut self, now: Duration) {
        let pending = &self.map_server.pending_notifies;
        let due = self
            .map_server
            .notify_timers
            .due(now, |n, at| pending.get(&n).is_some_and(|p| p.next == at));
        for nonce in due {
            let Some(p) = self.map_server.pending_notifies.get_mut(&nonce) else {
                continue;
            };
            if p.retries_left == 0 {
                self.map_server.pending_notifies.remove(&nonce);
                continue;
            }
            p.retries_left -= 1;
            p.next = now + NOTIFY_RETRY;
            self.map_server.notify_timers.schedule(nonce, p.next);
            let t = Transmit {
                src: None,
                src_port: CONTROL_PORT,
                dst: p.dst,
                ttl: None,
                payload: p.payload.clone(),
            };
            self.counters.map_notifies_sent += 1;
            self.push(t);
        }
    }

    /// A Map-Notify to us: the answer to one of our Map-Registers, or an unsolicited one
    /// carrying the peer group's membership, which we learn and acknowledge.
    pub(crate) fn process_notify(
        &mut self,
        now: Duration,
        src: SocketAddr,
        bytes: &[u8],
        n: &MapNotify,
    ) {
        self.counters.map_notifies_received += 1;
        if self.map_server_notify(now, bytes, n) {
            return;
        }
        if self.cfg.site.keys.verify(bytes).is_err() {
            self.counters.map_notify_rejected_auth += 1;
            return;
        }
        // An answer to one of our registers (periodic, to a seed, or a greeting) echoes our
        // records; only an unsolicited Notify is the teller's view of the membership, and
        // only that one is acknowledged.
        let solicited = self.registrar.sent_register_nonces.contains(&n.nonce)
            || self.registrar.seed_nonces.contains_key(&n.nonce)
            || self.registrar.greeting_nonces.contains_key(&n.nonce);
        let mut learned = Vec::new();
        if let Some(g) = self.group_key() {
            let teller = src.ip();
            let mut told = solicited;
            for rec in &n.records {
                if EidKey::from_wire(&rec.eid, rec.mask_len) != Some(EidKey::Group(g)) {
                    continue;
                }
                if !told {
                    // The membership as this member holds it now replaces what it told us.
                    told = true;
                    self.registrar
                        .learned_members
                        .retain(|_, (_, from)| *from != teller);
                }
                let expires = now + Duration::from_secs(u64::from(rec.ttl.max(1)) * 60);
                for l in &rec.rlocs {
                    for e in crate::mapping::rle_entries(&l.locator)
                        .into_iter()
                        .flatten()
                    {
                        if let Some(a) = e.address.ip()
                            && !self.is_own_rloc(a)
                        {
                            self.registrar.learned_members.insert(a, (expires, teller));
                            learned.push(a);
                        }
                    }
                }
            }
        }
        for a in learned {
            self.greet(now, a);
        }
        self.greeting_answered(&n.nonce);
        if let Some((seeds, membership)) = self.registrar.seed_nonces.remove(&n.nonce) {
            // OOR may answer from another of its addresses: then the ack counts for every
            // seed that register went to.
            let acked = if seeds.contains(&src.ip()) {
                vec![src.ip()]
            } else {
                seeds
            };
            if membership {
                self.registrar.acked_seed_memberships.extend(acked);
            } else {
                self.registrar.acked_seeds.extend(acked);
            }
        }
        if !solicited {
            self.send_notify_ack(src, n);
        }
    }

    /// Map-Notify-Ack: the real record count and the records copied (lispers.net's MS needs
    /// at least one record; PROTOCOL.md §3.7).
    fn send_notify_ack(&mut self, dst: SocketAddr, n: &MapNotify) {
        let Some((key, alg)) = self.cfg.site.own_key.clone() else {
            return;
        };
        let ack = MapNotify {
            reserved: 0,
            nonce: n.nonce,
            auth: Authentication::unsigned(key.key_id.unwrap_or(0), alg),
            records: n.records.clone(),
            trailer: None,
            unflagged_trailer: false,
        };
        if let Some(bytes) = signed(
            &crate::wire::ControlMessage::MapNotifyAck(ack),
            Some(&key.secret),
        ) {
            self.counters.map_notify_acks_sent += 1;
            self.push(Transmit {
                src: self.rloc_for(dst.ip()),
                src_port: CONTROL_PORT,
                dst,
                ttl: None,
                payload: bytes,
            });
        }
    }

    pub(crate) fn process_notify_ack(&mut self, bytes: &[u8], n: &MapNotify) {
        if self.map_server.pending_notifies.contains_key(&n.nonce)
            && self.cfg.site.keys.verify(bytes).is_ok()
        {
            self.counters.map_notify_acks_received += 1;
            self.map_server.pending_notifies.remove(&n.nonce);
        }
    }

    /// The answer for `key` changed: ITRs that asked for it get an SMR, and our own
    /// map-cache entries for it are refreshed.
    pub(crate) fn mapping_changed(&mut self, now: Duration, key: &EidKey) {
        self.generation += 1;
        let EidKey::Prefix(p) = key else { return };
        self.refresh_cache(now, p);
        self.send_smrs(now, p);
    }
}

/// Emits `m` and fills in its HMAC with `secret` (or leaves alg-id 0 without one).
pub(crate) fn signed(m: &crate::wire::ControlMessage, secret: Option<&[u8]>) -> Option<Vec<u8>> {
    let mut bytes = m.to_bytes().ok()?;
    if let Some(s) = secret
        && m.authentication().is_some_and(|a| a.alg_id != 0)
    {
        auth::sign(&mut bytes, s).ok()?;
    }
    Some(bytes)
}

/// The RLOC-records of a proxy Map-Reply: as registered, with the L bit cleared (the replier
/// is not the site; RFC 9301 §5.4).
pub(crate) fn proxy_rlocs(rlocs: Vec<RlocRecord>) -> Vec<RlocRecord> {
    rlocs
        .into_iter()
        .map(|mut r| {
            r.flags &= !RlocRecord::LOCAL;
            r
        })
        .collect()
}
