//! The Map-Server's registrations (RFC 9301 §8.2): one registration per xTR-ID under each
//! EID, merged when the registrants ask for it, expiring on their TTL.

use std::cell::OnceCell;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::net::IpAddr;
use std::time::Duration;

use super::eid::{EidKey, EidPrefix, GroupEid};
use super::table::PrefixTable;
use crate::wire::{Address, Lcaf, LcafBody, RleEntry, RlocRecord};

/// What one xTR registered for one EID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XtrRegistration {
    pub xtr_id: [u8; 16],
    pub site_id: [u8; 8],
    /// Source address of the Map-Register (the last registerer).
    pub registerer: IpAddr,
    pub first_registered: Duration,
    pub last_registered: Duration,
    pub expires: Duration,
    /// Record TTL as registered (minutes).
    pub ttl: u32,
    /// P bit: the Map-Server answers Map-Requests for this EID (proxy Map-Reply).
    pub proxy_reply: bool,
    /// a bit: merge with the other xTR-IDs' registrations.
    pub merge: bool,
    pub want_notify: bool,
    pub key_id: u8,
    pub rlocs: Vec<RlocRecord>,
}

impl XtrRegistration {
    /// The addresses of the RLE entries it registered (a group membership).
    pub fn rle_addresses(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.rlocs
            .iter()
            .filter_map(|l| rle_entries(&l.locator))
            .flatten()
            .filter_map(|e| e.address.ip())
    }
}

/// Every registration of one EID, and the merged RLOC-set answered for it: computed when
/// first read after a change, so a burst of registrations (a thousand members joining a
/// group at once) does not recompute it once per registration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SiteEntry {
    regs: Vec<XtrRegistration>,
    merged: OnceCell<Vec<RlocRecord>>,
}

impl SiteEntry {
    fn new(reg: XtrRegistration) -> Self {
        SiteEntry {
            regs: vec![reg],
            merged: OnceCell::new(),
        }
    }

    /// The registrations, one per xTR-ID.
    pub fn regs(&self) -> &[XtrRegistration] {
        &self.regs
    }

    /// The RLOC-set answered for this EID: the union of every xTR-ID's RLOCs when the latest
    /// registration asks for merging, else the latest registration's RLOCs. RLE entries of a
    /// group registration are merged into one RLE (RFC 8378; RFC 9962 §4).
    pub fn merged_rlocs(&self) -> &[RlocRecord] {
        self.merged.get_or_init(|| self.compute_merged())
    }

    fn compute_merged(&self) -> Vec<RlocRecord> {
        let Some(latest) = self.latest() else {
            return Vec::new();
        };
        if !latest.merge {
            return latest.rlocs.clone();
        }
        let mut plain: Vec<RlocRecord> = Vec::new();
        let mut seen_plain: HashSet<&Address> = HashSet::new();
        let mut rle: Vec<RleEntry> = Vec::new();
        let mut seen_rle: HashSet<&Address> = HashSet::new();
        let mut rle_template: Option<RlocRecord> = None;
        let mut lispers_form = false;
        for r in &self.regs {
            for l in &r.rlocs {
                if let Some(entries) = rle_entries(&l.locator) {
                    lispers_form |= !matches!(&l.locator, Address::Lcaf(x) if matches!(x.body, LcafBody::ReplicationList(_)));
                    for e in entries {
                        if seen_rle.insert(&e.address) {
                            rle.push(e.clone());
                        }
                    }
                    rle_template.get_or_insert_with(|| l.clone());
                } else if seen_plain.insert(&l.locator) {
                    plain.push(l.clone());
                }
            }
        }
        if let Some(mut t) = rle_template {
            rle.sort_by_key(|e| e.address.ip());
            t.locator = rle_locator(rle, lispers_form);
            plain.push(t);
        }
        plain
    }

    /// The most recently refreshed registration.
    pub fn latest(&self) -> Option<&XtrRegistration> {
        self.regs.iter().max_by_key(|r| r.last_registered)
    }

    /// The addresses in the merged RLE (a peer group's members).
    /// The addresses of the RLOC-set answered for this EID ([`merged_rlocs`](Self::merged_rlocs)).
    pub fn rloc_addresses(&self) -> Vec<IpAddr> {
        self.merged_rlocs()
            .iter()
            .filter_map(|l| l.locator.ip())
            .collect()
    }

    pub fn rle_members(&self) -> Vec<IpAddr> {
        self.merged_rlocs()
            .iter()
            .filter_map(|l| rle_entries(&l.locator))
            .flat_map(|e| e.iter().filter_map(|e| e.address.ip()))
            .collect()
    }
}

/// The RLE entries of a locator: an RLE LCAF, or one inside an AFI List (lispers.net).
pub fn rle_entries(locator: &Address) -> Option<&Vec<RleEntry>> {
    let Address::Lcaf(l) = locator else {
        return None;
    };
    match &l.body {
        LcafBody::ReplicationList(e) => Some(e),
        LcafBody::AfiList(items) => items.iter().find_map(rle_entries),
        _ => None,
    }
}

/// A locator holding an RLE: the RLE LCAF itself (RFC 8378), or, as lispers.net encodes
/// it, an AFI List {AFI 0, RLE}.
pub fn rle_locator(entries: Vec<RleEntry>, lispers: bool) -> Address {
    let rle = Address::Lcaf(Box::new(Lcaf::new(LcafBody::ReplicationList(entries))));
    if lispers {
        Address::Lcaf(Box::new(Lcaf::new(LcafBody::AfiList(vec![
            Address::None,
            rle,
        ]))))
    } else {
        rle
    }
}

/// What a registration did to the merged answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegisterOutcome {
    /// A new xTR-ID under this EID (or a new EID).
    New,
    /// The merged RLOC-set changed.
    Changed,
    /// Only timers were refreshed.
    Refreshed,
}

/// Every registration the Map-Server holds.
#[derive(Debug, Default)]
pub struct SiteDb {
    prefixes: PrefixTable<SiteEntry>,
    names: HashMap<(u32, Vec<u8>), SiteEntry>,
    groups: HashMap<GroupEid, SiteEntry>,
    /// (time, key, xTR-ID): when to look at a registration again. Each registration has
    /// one live entry, the one `scheduled` names; a refresh that only pushes the expiry later
    /// adds nothing (the entry, when due, is moved to the new time), so the heap grows with
    /// the registrations, not with the Map-Registers received.
    expiry: BinaryHeap<Reverse<(Duration, EidKey, [u8; 16])>>,
    /// The time of each registration's live entry in `expiry`.
    scheduled: HashMap<(EidKey, [u8; 16]), Duration>,
    /// How many registrations each address holds (kept as registrations come and go, so
    /// the peers are known without a walk over the whole database).
    registerers: HashMap<IpAddr, usize>,
}

/// Counts one registration more or less for `a`; an address with none left is forgotten.
fn count(registerers: &mut HashMap<IpAddr, usize>, a: IpAddr, more: bool) {
    if more {
        *registerers.entry(a).or_default() += 1;
    } else if let Some(n) = registerers.get_mut(&a) {
        *n -= 1;
        if *n == 0 {
            registerers.remove(&a);
        }
    }
}

impl SiteDb {
    pub fn new() -> Self {
        Self::default()
    }

    fn entry_mut(&mut self, key: &EidKey) -> Option<&mut SiteEntry> {
        match key {
            EidKey::Prefix(p) => self.prefixes.get_mut(p),
            EidKey::Name { iid, name } => self.names.get_mut(&(*iid, name.clone())),
            EidKey::Group(g) => self.groups.get_mut(g),
        }
    }

    pub fn get(&self, key: &EidKey) -> Option<&SiteEntry> {
        match key {
            EidKey::Prefix(p) => self.prefixes.get(p),
            EidKey::Name { iid, name } => self.names.get(&(*iid, name.clone())),
            EidKey::Group(g) => self.groups.get(g),
        }
    }

    /// Stores or refreshes one xTR-ID's registration of `key`.
    pub fn register(&mut self, key: &EidKey, reg: XtrRegistration) -> RegisterOutcome {
        self.schedule(key, reg.xtr_id, reg.expires);
        if self.entry_mut(key).is_none() {
            count(&mut self.registerers, reg.registerer, true);
            let e = SiteEntry::new(reg);
            match key {
                EidKey::Prefix(p) => {
                    self.prefixes.insert(*p, e);
                }
                EidKey::Name { iid, name } => {
                    self.names.insert((*iid, name.clone()), e);
                }
                EidKey::Group(g) => {
                    self.groups.insert(*g, e);
                }
            }
            return RegisterOutcome::New;
        }
        // The index is updated beside the entry it counts (both borrowed from `self`).
        let mut registerers = std::mem::take(&mut self.registerers);
        let outcome = self.update(key, reg, &mut registerers);
        self.registerers = registerers;
        outcome
    }

    /// Refreshes or adds `reg` in the existing entry of `key`.
    fn update(
        &mut self,
        key: &EidKey,
        reg: XtrRegistration,
        registerers: &mut HashMap<IpAddr, usize>,
    ) -> RegisterOutcome {
        let Some(entry) = self.entry_mut(key) else {
            return RegisterOutcome::New;
        };
        // Without merging, the latest registration alone answers: a refresh from another
        // xTR-ID may change the answer.
        let shared_unmerged = !reg.merge && entry.regs.len() > 1;
        let outcome = match entry.regs.iter_mut().find(|r| r.xtr_id == reg.xtr_id) {
            Some(old) => {
                let same = old.rlocs == reg.rlocs && old.merge == reg.merge && !shared_unmerged;
                let first = old.first_registered;
                if old.registerer != reg.registerer {
                    count(registerers, old.registerer, false);
                    count(registerers, reg.registerer, true);
                }
                *old = reg;
                old.first_registered = first;
                if same {
                    RegisterOutcome::Refreshed
                } else {
                    RegisterOutcome::Changed
                }
            }
            None => {
                count(registerers, reg.registerer, true);
                entry.regs.push(reg);
                RegisterOutcome::New
            }
        };
        if outcome != RegisterOutcome::Refreshed {
            entry.merged = OnceCell::new();
        }
        outcome
    }

    /// Makes sure the registration of `key` by `xtr_id` is looked at by `expires`.
    fn schedule(&mut self, key: &EidKey, xtr_id: [u8; 16], expires: Duration) {
        let k = (key.clone(), xtr_id);
        if self.scheduled.get(&k).is_some_and(|t| *t <= expires) {
            return;
        }
        self.expiry.push(Reverse((expires, key.clone(), xtr_id)));
        self.scheduled.insert(k, expires);
        // Entries of removed registrations or of shortened TTLs wait in the heap until their
        // time; when they outnumber the live ones, the heap is rebuilt from the live ones.
        if self.expiry.len() > 2 * self.scheduled.len() + 1024 {
            self.expiry = self
                .scheduled
                .iter()
                .map(|((key, xtr), t)| Reverse((*t, key.clone(), *xtr)))
                .collect();
        }
    }

    /// Entries in the expiry heap (for the tests of its bound).
    pub fn expiry_entries(&self) -> usize {
        self.expiry.len()
    }

    /// Removes one xTR-ID's registration (Record TTL 0); true if something was removed.
    pub fn deregister(&mut self, key: &EidKey, xtr_id: &[u8; 16]) -> bool {
        self.scheduled.remove(&(key.clone(), *xtr_id));
        let Some(entry) = self.entry_mut(key) else {
            return false;
        };
        let n = entry.regs.len();
        let mut gone = Vec::new();
        entry.regs.retain(|r| {
            let keep = &r.xtr_id != xtr_id;
            if !keep {
                gone.push(r.registerer);
            }
            keep
        });
        let removed = entry.regs.len() != n;
        if removed {
            entry.merged = OnceCell::new();
        }
        if entry.regs.is_empty() {
            self.remove_key(key);
        }
        for a in gone {
            count(&mut self.registerers, a, false);
        }
        removed
    }

    fn remove_key(&mut self, key: &EidKey) {
        match key {
            EidKey::Prefix(p) => {
                self.prefixes.remove(p);
            }
            EidKey::Name { iid, name } => {
                self.names.remove(&(*iid, name.clone()));
            }
            EidKey::Group(g) => {
                self.groups.remove(g);
            }
        }
    }

    /// Removes every registration whose time is up; returns what expired: the key, the
    /// xTR-ID and the address that registered it.
    pub fn expire(&mut self, now: Duration) -> Vec<(EidKey, [u8; 16], IpAddr)> {
        let mut gone = Vec::new();
        while let Some(Reverse((t, _, _))) = self.expiry.peek() {
            if *t > now {
                break;
            }
            let Some(Reverse((t, key, xtr))) = self.expiry.pop() else {
                break;
            };
            let k = (key, xtr);
            if self.scheduled.get(&k) != Some(&t) {
                continue; // an entry replaced by an earlier one, or of a removed registration
            }
            let (key, xtr) = k;
            let current = self
                .get(&key)
                .and_then(|e| e.regs.iter().find(|r| r.xtr_id == xtr))
                .map(|r| (r.expires, r.registerer));
            match current {
                // Refreshed since: looked at again when the refreshed registration is due.
                Some((expires, _)) if expires > t => {
                    self.expiry.push(Reverse((expires, key.clone(), xtr)));
                    self.scheduled.insert((key, xtr), expires);
                }
                Some((_, registerer)) => {
                    self.deregister(&key, &xtr);
                    gone.push((key, xtr, registerer));
                }
                None => {
                    self.scheduled.remove(&(key, xtr));
                }
            }
        }
        gone
    }

    /// Every address that holds a registration here, in no particular order (kept up to
    /// date as registrations come and go: no walk over the database).
    pub fn registerers(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.registerers.keys().copied()
    }

    /// When the next registration may expire.
    pub fn next_expiry(&self) -> Option<Duration> {
        self.expiry.peek().map(|Reverse((t, _, _))| *t)
    }

    /// Longest-prefix match among registered prefixes.
    pub fn lookup(&self, iid: u32, addr: IpAddr) -> Option<(EidPrefix, &SiteEntry)> {
        self.prefixes.lookup(iid, addr)
    }

    pub fn prefixes(&self) -> &PrefixTable<SiteEntry> {
        &self.prefixes
    }

    pub fn group(&self, g: &GroupEid) -> Option<&SiteEntry> {
        self.groups.get(g)
    }

    /// Every registered EID with its entry.
    pub fn iter(&self) -> impl Iterator<Item = (EidKey, &SiteEntry)> {
        self.prefixes
            .iter()
            .map(|(p, e)| (EidKey::Prefix(p), e))
            .chain(self.names.iter().map(|((iid, n), e)| {
                (
                    EidKey::Name {
                        iid: *iid,
                        name: n.clone(),
                    },
                    e,
                )
            }))
            .chain(self.groups.iter().map(|(g, e)| (EidKey::Group(*g), e)))
    }

    /// Number of registered EIDs.
    pub fn len(&self) -> usize {
        self.prefixes.len() + self.names.len() + self.groups.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The registerer index always equals a walk over every registration, through
    /// registrations, refreshes from another address, withdrawals and expiry.
    #[test]
    fn registerers_follow_the_registrations() {
        let mut db = SiteDb::new();
        let mut x: u32 = 0x9e37_79b9;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        };
        for step in 0..5000u64 {
            let r = next();
            let key = EidKey::Prefix(EidPrefix::new(
                0,
                format!("10.{}.0.0/16", r % 16).parse().unwrap(),
            ));
            let xtr = (r >> 8) as u8 % 6;
            let rloc = format!("192.0.2.{}", (r >> 16) % 5);
            match (r >> 24) % 4 {
                0 => {
                    db.deregister(&key, &[xtr; 16]);
                }
                1 => {
                    db.expire(Duration::from_secs(step / 10));
                }
                _ => {
                    let mut g = reg(xtr, &rloc, r & 1 == 0, step / 10);
                    g.expires = Duration::from_secs(step / 10 + u64::from(r % 7));
                    db.register(&key, g);
                }
            }
            let mut walked: Vec<IpAddr> = db
                .iter()
                .flat_map(|(_, e)| e.regs().iter().map(|r| r.registerer).collect::<Vec<_>>())
                .collect();
            walked.sort();
            walked.dedup();
            let mut kept: Vec<IpAddr> = db.registerers().collect();
            kept.sort();
            assert_eq!(kept, walked, "after step {step}");
        }
    }

    fn reg(xtr: u8, rloc: &str, merge: bool, at: u64) -> XtrRegistration {
        XtrRegistration {
            xtr_id: [xtr; 16],
            site_id: [0; 8],
            registerer: rloc.parse().unwrap(),
            first_registered: Duration::from_secs(at),
            last_registered: Duration::from_secs(at),
            expires: Duration::from_secs(at + 180),
            ttl: 3,
            proxy_reply: true,
            merge,
            want_notify: false,
            key_id: 0,
            rlocs: vec![RlocRecord {
                priority: 1,
                weight: 100,
                m_priority: 255,
                m_weight: 0,
                flags: 5,
                locator: Address::Ipv4(rloc.parse().unwrap()),
            }],
        }
    }

    fn member(xtr: u8, rloc: &str, at: u64) -> XtrRegistration {
        let mut r = reg(xtr, rloc, true, at);
        r.rlocs[0].locator = rle_locator(
            vec![RleEntry {
                reserved: 0,
                rsvd3: 0,
                level: 128,
                address: Address::Ipv4(rloc.parse().unwrap()),
                name: None,
            }],
            xtr.is_multiple_of(2),
        );
        r
    }

    #[test]
    fn the_expiry_heap_grows_with_registrations_not_with_refreshes() {
        let mut db = SiteDb::new();
        let k = EidKey::Prefix(EidPrefix::new(0, "10.1.0.0/16".parse().unwrap()));
        // A refresh every second for three hours (TTL 3 min, 180 s).
        for t in 0..10_800 {
            db.register(&k, reg(1, "192.0.2.1", true, t));
        }
        assert_eq!(db.expiry_entries(), 1);
        // The one entry, due at the first expiry, moves to the refreshed time...
        assert!(db.expire(Duration::from_secs(10_978)).is_empty());
        assert_eq!(db.expiry_entries(), 1);
        // ...and the registration goes when its last refresh runs out.
        assert_eq!(db.expire(Duration::from_secs(10_979)).len(), 1);
        assert_eq!(db.expiry_entries(), 0);
        // A shorter TTL is looked at by its own time; registrations removed and made again
        // leave stale entries only until the heap is rebuilt.
        db.register(&k, reg(1, "192.0.2.1", true, 0));
        let mut short = reg(1, "192.0.2.1", true, 0);
        short.expires = Duration::from_secs(5);
        db.register(&k, short);
        assert_eq!(db.expire(Duration::from_secs(5)).len(), 1);
        for _ in 0..5000 {
            db.register(&k, reg(1, "192.0.2.1", true, 0));
            db.deregister(&k, &[1; 16]);
        }
        assert!(db.expiry_entries() <= 1024 + 2, "{}", db.expiry_entries());
    }

    #[test]
    fn merge_per_xtr_id_and_expiry() {
        let mut db = SiteDb::new();
        let k = EidKey::Prefix(EidPrefix::new(0, "10.1.0.0/16".parse().unwrap()));
        assert_eq!(
            db.register(&k, reg(1, "192.0.2.1", true, 0)),
            RegisterOutcome::New
        );
        assert_eq!(
            db.register(&k, reg(2, "192.0.2.2", true, 10)),
            RegisterOutcome::New
        );
        assert_eq!(db.get(&k).unwrap().merged_rlocs().len(), 2);
        assert_eq!(
            db.register(&k, reg(1, "192.0.2.1", true, 60)),
            RegisterOutcome::Refreshed
        );
        assert_eq!(
            db.register(&k, reg(1, "192.0.2.9", true, 70)),
            RegisterOutcome::Changed
        );
        assert_eq!(
            db.get(&k).unwrap().regs()[0].first_registered,
            Duration::ZERO
        );
        // Without merge, the latest registration alone answers.
        db.register(&k, reg(2, "192.0.2.2", false, 80));
        assert_eq!(db.get(&k).unwrap().merged_rlocs().len(), 1);
        // xTR 2 expires at 260; xTR 1 at 250.
        assert!(db.expire(Duration::from_secs(249)).is_empty());
        assert_eq!(
            db.expire(Duration::from_secs(250)),
            vec![(k.clone(), [1; 16], "192.0.2.9".parse().unwrap())]
        );
        assert_eq!(
            db.expire(Duration::from_secs(260)),
            vec![(k.clone(), [2; 16], "192.0.2.2".parse().unwrap())]
        );
        assert!(db.get(&k).is_none() && db.is_empty());
    }

    #[test]
    fn group_membership_rle_merge() {
        let mut db = SiteDb::new();
        let g = GroupEid::any_source(0, "224.1.1.1".parse().unwrap());
        let k = EidKey::Group(g);
        db.register(&k, member(1, "127.0.0.1", 0));
        db.register(&k, member(2, "127.0.0.2", 0));
        db.register(&k, member(3, "127.0.0.3", 0));
        let m = db.group(&g).unwrap().rle_members();
        assert_eq!(m.len(), 3);
        assert_eq!(
            db.get(&k).unwrap().merged_rlocs().len(),
            1,
            "one merged RLE record"
        );
        assert!(db.deregister(&k, &[2; 16]));
        assert_eq!(db.group(&g).unwrap().rle_members().len(), 2);
    }
}
