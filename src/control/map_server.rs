//! The Map-Server half of the engine (RFC 9301 §8.2; RFC 9962 §4) as a component
//! ([`MapServer`]): authenticate, check the site policy, store one registration per xTR-ID,
//! notify. What a register changed goes back to the engine ([`Registered`]), which tells
//! the other roles (SMRs, the ITR's map-cache, greetings).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::crypto::auth::{self, AuthKey};
use std::collections::HashMap;

use crate::mapping::{EidKey, PrefixTable, RegisterOutcome, SiteDb, XtrRegistration};
use crate::wire::{
    Authentication, CONTROL_PORT, EidRecord, MapNotify, MapRegister, Nonce, RlocRecord,
};

use super::config::{EngineConfig, MappingSystem};
use super::counters::Counters;
use super::engine::{Arrival, Engine, NOTIFY_COALESCE, NOTIFY_REPEAT, NOTIFY_RETRY};
use super::outbox::Outbox;

/// The xTR-ID of a registrant that sends none (OOR): its source address, IPv4-mapped.
fn xtr_id_of(src: IpAddr) -> [u8; 16] {
    match src {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    }
}

/// How long a registration lives: the Record TTL when T is set (minutes; lispers.net's bit 31
/// means seconds), else three register intervals (RFC 9301 §8.2).
pub(crate) fn lifetime(reg: &MapRegister, rec: &EidRecord, interval: Duration) -> Duration {
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

/// Unsolicited Map-Notifies tracked for retransmission at once, at most; beyond, a Notify
/// goes once, untracked, and is counted.
pub(crate) const MAX_PENDING_NOTIFIES: usize = 4096;

/// An unsolicited Map-Notify waiting for its Ack (RFC 9301 §5.7).
#[derive(Debug, Clone)]
pub(crate) struct PendingNotify {
    pub dst: SocketAddr,
    pub payload: Vec<u8>,
    pub retries_left: u8,
    pub next: Duration,
}

/// The Map-Server (RFC 9301 §5.6-§5.7, RFC 9962 §4) beside the database: unsolicited
/// Map-Notifies waiting for their Ack, the coalesced membership rounds and the registers
/// seen per xTR (replays). Bounded: pending Notifies at [`MAX_PENDING_NOTIFIES`], xTRs
/// at [`super::register_replay::MAX_XTRS`].
#[derive(Debug, Default)]
pub(crate) struct MapServer {
    /// Unsolicited Map-Notifies waiting for their Ack (RFC 9301 §5.7), by nonce.
    pub(crate) pending_notifies: HashMap<Nonce, PendingNotify>,
    /// When each pending Notify goes again (valid while its `next` is that time).
    pub(crate) notify_timers: super::timers::TimerTable<Nonce>,
    /// When the coalesced round of membership Notifies is due.
    pub(crate) notify_due: Option<Duration>,
    /// A membership change is announced in two rounds, a second apart (each with its own
    /// retransmissions), so a newcomer and the members learn of each other quickly under
    /// loss.
    pub(crate) notify_again: bool,
    /// The registers we have seen, per xTR (replays refused).
    pub(crate) register_nonces: super::register_replay::RegisterNonces,
}

/// What the Map-Server uses of the rest of the engine: the configuration, the database
/// (which it writes), the site policy's prefixes, the counters, the RNG and the outbox.
pub(crate) struct Ctx<'a> {
    pub cfg: &'a EngineConfig,
    pub site: &'a mut SiteDb,
    pub allowed: &'a PrefixTable<bool>,
    pub counters: &'a mut Counters,
    pub rng: &'a mut rand::rngs::StdRng,
    pub out: &'a mut Outbox,
}

/// What an accepted Map-Register did, for the engine's other roles to act on.
#[derive(Debug, Default)]
pub(crate) struct Registered {
    /// The EIDs whose answer changed (SMRs, our own map-cache).
    pub changed: Vec<EidKey>,
    /// The peer it came from (not our own register handed over internally).
    pub peer: Option<IpAddr>,
    /// The peer restarted (its register counter started again).
    pub restarted: bool,
    /// Members to send our registrations to now: a newcomer or a restarted member, then
    /// the RLE members of a changed group record.
    pub greet: Vec<IpAddr>,
}

impl MapServer {
    /// Processes a Map-Register that arrived as `arrival` says ([`Arrival::Local`]: our
    /// own register handed over internally, as a group delivery every member also gets).
    /// `None` when nothing of it was accepted.
    pub(crate) fn register(
        &mut self,
        now: Duration,
        src: SocketAddr,
        bytes: &[u8],
        reg: &MapRegister,
        arrival: Arrival,
        cx: &mut Ctx<'_>,
    ) -> Option<Registered> {
        let local = arrival == Arrival::Local;
        let via_group = matches!(arrival, Arrival::Group | Arrival::Local);
        cx.counters.map_registers_received += 1;
        if !local && reg.trailer.is_some_and(|t| t.xtr_id == cx.cfg.xtr_id) {
            // Our own register looped back by underlay multicast: already handled locally.
            cx.counters.own_looped_registers += 1;
            return None;
        }
        let membership_only = !reg.records.is_empty()
            && reg.records.iter().all(|r| {
                matches!(
                    EidKey::from_wire(&r.eid, r.mask_len),
                    Some(EidKey::Group(_))
                )
            });
        let key = authenticate(cx, bytes, reg.auth.alg_id, membership_only).ok()?;
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
            match self.register_nonces.admit(
                now,
                (xtr_id, site_id),
                reg.nonce,
                fingerprint,
                withdrawal,
            ) {
                Err(_) => {
                    cx.counters.register_rejected_replay += 1;
                    return None;
                }
                Ok(super::register_replay::Admitted::Restarted) => restarted = true,
                Ok(_) => {}
            }
        }
        let mut accepted = false;
        let mut group_changed = false;
        let mut new_peer = false;
        let mut done = Registered::default();
        let mut rle_peers: Vec<IpAddr> = Vec::new();
        for rec in &reg.records {
            let Some(k) = EidKey::from_wire(&rec.eid, rec.mask_len) else {
                cx.counters.register_rejected_bad_eid += 1;
                continue;
            };
            if !allowed_key(cx, &k) {
                cx.counters.register_rejected_not_allowed += 1;
                continue;
            }
            accepted = true;
            let changed = if rec.ttl == 0 {
                cx.site.deregister(&k, &xtr_id)
            } else {
                let r = XtrRegistration {
                    xtr_id,
                    site_id,
                    registerer: src.ip(),
                    first_registered: now,
                    last_registered: now,
                    expires: now + lifetime(reg, rec, cx.cfg.timers.register_interval),
                    ttl: rec.ttl,
                    proxy_reply: reg.proxy_reply,
                    merge: reg.merge,
                    want_notify: reg.want_notify,
                    key_id: reg.auth.key_id,
                    rlocs: rec.rlocs.clone(),
                };
                let outcome = cx.site.register(&k, r);
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
                done.changed.push(k);
            }
        }
        if !accepted {
            return None;
        }
        cx.counters.map_registers_accepted += 1;
        if !local {
            done.peer = Some(src.ip());
        }
        // Asked for a Map-Notify: answered, also for a copy that came as replication (a
        // member's greeting does); underlay-multicast group registers never ask.
        if reg.want_notify && !local {
            send_register_notify(cx, src, reg, key.as_ref());
        }
        if group_changed && !via_group && !local {
            // One round of Notifies for every change within the coalescing window.
            self.notify_due.get_or_insert(now + NOTIFY_COALESCE);
            self.notify_again = true;
        }
        if (new_peer || restarted)
            && !local
            && matches!(cx.cfg.mapping_system, MappingSystem::Push(_))
        {
            // A newcomer, or a member that came back (its registrations may still be here,
            // but it lost ours): it gets our registrations now rather than at the next
            // interval.
            if restarted {
                cx.counters.members_restarted += 1;
                done.restarted = true;
                // And the membership (a Notify round), so it greets the others and they,
                // seeing its counter jump too, greet it back.
                if !via_group {
                    self.notify_due.get_or_insert(now + NOTIFY_COALESCE);
                }
            }
            done.greet.push(src.ip());
        }
        done.greet.extend(rle_peers);
        Some(done)
    }

    /// When the next membership round or Notify retransmission is due.
    pub(crate) fn next_timer(&self) -> Option<Duration> {
        match (self.notify_timers.next(), self.notify_due) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether a coalesced round of membership Notifies is due at `now` (and the second
    /// round of a change is then scheduled a second later).
    pub(crate) fn membership_round_due(&mut self, now: Duration) -> bool {
        if self.notify_due.is_none_or(|t| t > now) {
            return false;
        }
        self.notify_due = if std::mem::take(&mut self.notify_again) {
            Some(now + NOTIFY_REPEAT)
        } else {
            None
        };
        true
    }

    /// Tells every RLE member of the peer group the merged membership `rec` (RFC 9962 §4:
    /// this is how a newcomer and the existing members learn of each other), each Notify
    /// waiting for its Ack (RFC 9301 §5.7) within [`MAX_PENDING_NOTIFIES`].
    pub(crate) fn notify_members(
        &mut self,
        now: Duration,
        rec: &EidRecord,
        members: &[IpAddr],
        cx: &mut Ctx<'_>,
    ) {
        let Some((key, alg)) = cx.cfg.site.own_key.clone() else {
            return;
        };
        for &m in members {
            let nonce: Nonce = rand::RngExt::random(&mut *cx.rng);
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
            cx.counters.map_notifies_sent += 1;
            cx.out
                .control(super::probe::source_rloc(cx.cfg, m), dst, bytes.clone());
            if self.pending_notifies.len() >= MAX_PENDING_NOTIFIES {
                cx.counters.notifies_not_tracked += 1;
                continue;
            }
            self.pending_notifies.insert(
                nonce,
                PendingNotify {
                    dst,
                    payload: bytes,
                    retries_left: 2,
                    next: now + NOTIFY_RETRY,
                },
            );
            self.notify_timers.schedule(nonce, now + NOTIFY_RETRY);
        }
    }

    /// Unacknowledged Notifies go again (RFC 9301 §5.7), from the timer table: no walk over
    /// the pending ones.
    pub(crate) fn retransmit_notifies(&mut self, now: Duration, cx: &mut Ctx<'_>) {
        let pending = &self.pending_notifies;
        let due = self
            .notify_timers
            .due(now, |n, at| pending.get(&n).is_some_and(|p| p.next == at));
        for nonce in due {
            let Some(p) = self.pending_notifies.get_mut(&nonce) else {
                continue;
            };
            if p.retries_left == 0 {
                self.pending_notifies.remove(&nonce);
                continue;
            }
            p.retries_left -= 1;
            p.next = now + NOTIFY_RETRY;
            self.notify_timers.schedule(nonce, p.next);
            cx.counters.map_notifies_sent += 1;
            cx.out.control(None, p.dst, p.payload.clone());
        }
    }

    /// A Map-Notify-Ack: the pending Notify it acknowledges (by nonce, authenticated with
    /// a site key) is done.
    pub(crate) fn notify_acked(&mut self, bytes: &[u8], n: &MapNotify, cx: &mut Ctx<'_>) {
        if self.pending_notifies.contains_key(&n.nonce) && cx.cfg.site.keys.verify(bytes).is_ok() {
            cx.counters.map_notify_acks_received += 1;
            self.pending_notifies.remove(&n.nonce);
        }
    }
}

/// The key a message authenticated with, or why it did not.
fn authenticate(
    cx: &mut Ctx<'_>,
    bytes: &[u8],
    alg_id: u8,
    membership_only: bool,
) -> Result<Option<AuthKey>, ()> {
    if alg_id == auth::alg::NONE {
        if membership_only && cx.cfg.site.accept_unauthenticated_membership {
            return Ok(None);
        }
        cx.counters.register_rejected_unauthenticated += 1;
        return Err(());
    }
    match cx.cfg.site.keys.verify(bytes) {
        Ok(i) => Ok(cx.cfg.site.keys.keys.get(i).cloned()),
        Err(_) => {
            cx.counters.register_rejected_auth += 1;
            Err(())
        }
    }
}

/// Whether the site policy lets this EID be registered.
fn allowed_key(cx: &Ctx<'_>, key: &EidKey) -> bool {
    match key {
        EidKey::Prefix(p) => match cx.allowed.lookup_prefix(p) {
            Some((a, more_specifics)) => a.prefix == p.prefix || *more_specifics,
            None => false,
        },
        EidKey::Name { iid, name } => cx
            .cfg
            .site
            .allowed_names
            .iter()
            .any(|a| a.matches(*iid, name)),
        EidKey::Group(g) => match &cx.cfg.mapping_system {
            MappingSystem::Push(pg) => g.group.addr() == pg.group && g.source.prefix_len() == 0,
            MappingSystem::Pull(_) => false,
        },
    }
}

/// The Map-Notify that acknowledges a Map-Register (RFC 9301 §5.7): nonce, records and
/// trailer copied, authenticated with the key that verified the register.
fn send_register_notify(
    cx: &mut Ctx<'_>,
    dst: SocketAddr,
    reg: &MapRegister,
    key: Option<&AuthKey>,
) {
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
        cx.counters.map_notifies_sent += 1;
        cx.out
            .control(super::probe::source_rloc(cx.cfg, dst.ip()), dst, bytes);
    }
}

macro_rules! map_server_ctx {
    ($e:expr) => {
        (
            &mut $e.map_server,
            super::map_server::Ctx {
                cfg: &$e.cfg,
                site: &mut $e.site,
                allowed: &$e.allowed,
                counters: &mut $e.counters,
                rng: &mut $e.rng,
                out: &mut $e.out,
            },
        )
    };
}

impl Engine {
    /// The Map-Server and what it uses of the rest of the engine.
    pub(crate) fn map_server_ctx(&mut self) -> (&mut MapServer, Ctx<'_>) {
        map_server_ctx!(self)
    }

    /// A Map-Register ([`MapServer::register`]), then what it changed told to the other
    /// roles: SMRs and our map-cache for each changed EID, a member back from the lost, our
    /// registrations to a newcomer or a restarted member.
    /// Returns whether the register was accepted (verified, not a replay).
    pub(crate) fn process_register(
        &mut self,
        now: Duration,
        src: SocketAddr,
        bytes: &[u8],
        reg: &MapRegister,
        arrival: Arrival,
    ) -> bool {
        let (ms, mut cx) = self.map_server_ctx();
        let Some(done) = ms.register(now, src, bytes, reg, arrival, &mut cx) else {
            return false;
        };
        for k in &done.changed {
            self.mapping_changed(now, k);
        }
        if let Some(peer) = done.peer {
            // A lost member is back.
            self.registrar.lost.remove(&peer);
            if done.restarted {
                self.registrar.greeted.remove(&peer);
            }
        }
        for p in done.greet {
            self.greet(now, p);
        }
        true
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

    /// A round of membership Notifies to every member ([`MapServer::notify_members`]).
    pub(crate) fn notify_rle_members(&mut self, now: Duration) {
        let Some(rec) = self.group_record() else {
            return;
        };
        let members = self.members();
        let (ms, mut cx) = self.map_server_ctx();
        ms.notify_members(now, &rec, &members, &mut cx);
    }

    /// The answer for `key` changed: ITRs that asked for it get an SMR, and our own
    /// map-cache entries for it are refreshed.
    pub(crate) fn mapping_changed(&mut self, now: Duration, key: &EidKey) {
        self.generation += 1;
        let EidKey::Prefix(p) = key else { return };
        self.refresh_cache(now, p);
        self.send_smrs(now, p);
        // Its owner registered these RLOCs just now: one we hold for down (a node that
        // moved away and back) is probed at once rather than at the next down probe.
        let rlocs = self
            .site
            .prefixes()
            .get(p)
            .map(crate::mapping::SiteEntry::rloc_addresses)
            .unwrap_or_default();
        for r in rlocs {
            self.prober.recheck_down(now, &self.cfg, r);
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::Delivery;

    /// A membership round to more members than the pending table holds: every member gets
    /// its Notify, the table stops at its bound and the rest are counted.
    #[test]
    fn pending_notifies_stop_at_their_bound() {
        let mut e = Engine::new(crate::sim::node_config(1, Delivery::Replicate));
        assert!(
            e.cfg.site.own_key.is_some(),
            "the test node signs its Notifies"
        );
        let rec = EidRecord::new(
            crate::wire::Address::Ipv4([10, 9, 0, 0].into()),
            16,
            10,
            vec![],
        );
        let members: Vec<IpAddr> = (0..MAX_PENDING_NOTIFIES as u32 + 100)
            .map(|i| IpAddr::from(std::net::Ipv4Addr::from(0x6440_0000 + i)))
            .collect();
        let (ms, mut cx) = e.map_server_ctx();
        ms.notify_members(Duration::ZERO, &rec, &members, &mut cx);
        assert_eq!(e.map_server.pending_notifies.len(), MAX_PENDING_NOTIFIES);
        assert_eq!(e.counters.notifies_not_tracked, 100);
        assert_eq!(e.counters.map_notifies_sent, members.len() as u64);
        assert_eq!(e.out.transmits.len(), members.len());
    }
}
