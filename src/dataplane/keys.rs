//! The ETR's lisp-crypto keys (RFC 8061 §8, §9), sans-IO: per ITR address and key-id, the
//! key in use and the candidates the control plane agreed but no packet has proven yet.
//!
//! Return routability: a key offered in an RLOC-probe is only a candidate. It replaces the
//! key in use for its key-id when a packet from the ITR's address opens under it, which only
//! the holder of the ITR's private key who also received our reply at that address can make.
//! A forged or replayed offer therefore never shadows or displaces a working key; at worst
//! it occupies a candidate slot until it expires. Everything is bounded: ITR addresses,
//! candidates per key-id, and both expire.

use std::net::IpAddr;
use std::ops::Range;
use std::time::Duration;

use crate::crypto::lisp_crypto::{CipherSuite, CryptoError, RecvKey};

/// ITR addresses with keys, at most (the control plane's own bound is the same).
pub const MAX_ITRS: usize = 1024;
/// Unproven candidates per ITR and key-id.
pub const CANDIDATES: usize = 3;
/// A candidate no packet proved and no probe re-offered within this is dropped.
pub const CANDIDATE_TTL: Duration = Duration::from_secs(60);
/// A key in use that no packet used and no probe re-offered within this is dropped.
pub const IDLE_TTL: Duration = Duration::from_secs(600);

struct Installed {
    key: RecvKey,
    /// The key material, to recognize the same key offered again.
    material: [u8; 32],
    installed: Duration,
    /// Last packet or re-offer.
    seen: Duration,
}

#[derive(Default)]
struct Slot {
    current: Option<Installed>,
    candidates: Vec<Installed>,
}

#[derive(Default)]
struct ItrKeys {
    slots: [Slot; 3],
    /// Keys that became the one in use for this ITR (the API's key count).
    promoted: u64,
}

/// What [`RecvKeys::install`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Install {
    /// The same key was already there: kept alive.
    Refreshed,
    /// A new candidate, in use once a packet opens under it.
    Candidate,
    /// The table holds [`MAX_ITRS`] addresses: refused.
    Full,
}

/// A key in use, for the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CurrentKey {
    pub itr: IpAddr,
    pub suite: CipherSuite,
    pub key_id: u8,
    pub installed: Duration,
    /// Keys this ITR has put in use so far, this one included.
    pub keys: u64,
}

/// The ETR's keys, per ITR address (`K`: an RTR keys the nodes behind NATs by their
/// binding's address and port, as several may share one address).
pub struct RecvKeys<K = IpAddr> {
    itrs: std::collections::HashMap<
        K,
        ItrKeys,
        std::hash::BuildHasherDefault<super::flow::RlocHasher>,
    >,
    /// A copy of the packet while candidates are tried (a failed AEAD open leaves the
    /// buffer unspecified); reused.
    scratch: Vec<u8>,
}

impl<K> Default for RecvKeys<K> {
    fn default() -> Self {
        RecvKeys {
            itrs: Default::default(),
            scratch: Vec::new(),
        }
    }
}

impl<K: std::hash::Hash + Eq + Copy> RecvKeys<K> {
    pub fn new() -> Self {
        Self::default()
    }

    /// ITR addresses with keys or candidates.
    pub fn len(&self) -> usize {
        self.itrs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.itrs.is_empty()
    }

    /// A key the control plane agreed with `itr` under `key_id` (1-3): kept as a candidate
    /// unless it is already known.
    pub fn install(
        &mut self,
        now: Duration,
        itr: K,
        suite: CipherSuite,
        key_id: u8,
        material: [u8; 32],
    ) -> Install {
        if !(1..=3).contains(&key_id) {
            return Install::Full;
        }
        self.install_key(now, itr, RecvKey::new(suite, key_id, &material), material)
    }

    /// [`install`](Self::install) with the key already built from `material` (the workers
    /// of a node each get a handle on one key, which shares its anti-replay window).
    pub fn install_key(
        &mut self,
        now: Duration,
        itr: K,
        key: RecvKey,
        material: [u8; 32],
    ) -> Install {
        let suite = key.suite;
        let Some(i) = usize::from(key.key_id).checked_sub(1).filter(|i| *i < 3) else {
            return Install::Full;
        };
        if !self.itrs.contains_key(&itr) && self.itrs.len() >= MAX_ITRS {
            return Install::Full;
        }
        let slot = &mut self.itrs.entry(itr).or_default().slots[i];
        let same = |k: &Installed| k.material == material && k.key.suite == suite;
        if let Some(k) = slot
            .current
            .iter_mut()
            .chain(slot.candidates.iter_mut())
            .find(|k| same(k))
        {
            k.seen = now;
            return Install::Refreshed;
        }
        if slot.candidates.len() >= CANDIDATES {
            slot.candidates.remove(0);
        }
        slot.candidates.push(Installed {
            key,
            material,
            installed: now,
            seen: now,
        });
        Install::Candidate
    }

    /// Checks and decrypts a packet from `itr` (LISP header included) in place with the key
    /// of its K bits: the key in use first, then the candidates, newest first; a candidate
    /// that opens it becomes the key in use. Returns where the inner packet lies.
    pub fn open(
        &mut self,
        now: Duration,
        itr: K,
        packet: &mut [u8],
    ) -> Result<Range<usize>, CryptoError> {
        let key_id = packet.first().map_or(0, |b| b & 3);
        let Some(keys) = self.itrs.get_mut(&itr) else {
            return Err(CryptoError::NoKey(key_id));
        };
        let Some(slot) = usize::from(key_id)
            .checked_sub(1)
            .and_then(|i| keys.slots.get_mut(i))
        else {
            return Err(CryptoError::NoKey(key_id));
        };
        if slot.candidates.is_empty() {
            let Some(k) = slot.current.as_mut() else {
                return Err(CryptoError::NoKey(key_id));
            };
            let r = k.key.open_range(packet)?;
            k.seen = now;
            return Ok(r);
        }
        self.scratch.clear();
        self.scratch.extend_from_slice(packet);
        let mut err = CryptoError::NoKey(key_id);
        if let Some(k) = slot.current.as_mut() {
            match k.key.open_range(packet) {
                Ok(r) => {
                    k.seen = now;
                    return Ok(r);
                }
                Err(e) => err = e,
            }
        }
        for i in (0..slot.candidates.len()).rev() {
            packet.copy_from_slice(&self.scratch);
            match slot.candidates[i].key.open_range(packet) {
                Ok(r) => {
                    // Proven: it is the key in use now; the older candidates go.
                    let mut k = slot.candidates.remove(i);
                    slot.candidates.drain(..i);
                    k.seen = now;
                    slot.current = Some(k);
                    keys.promoted += 1;
                    return Ok(r);
                }
                // A replay under a key that authenticates the packet says more than an ICV
                // failure under the others.
                Err(e) if e == CryptoError::Replay || matches!(err, CryptoError::NoKey(_)) => {
                    err = e
                }
                Err(_) => {}
            }
        }
        Err(err)
    }

    /// Drops the candidates and keys that outlived their time.
    pub fn expire(&mut self, now: Duration) {
        self.itrs.retain(|_, keys| {
            for s in keys.slots.iter_mut() {
                s.candidates
                    .retain(|k| now.saturating_sub(k.seen) < CANDIDATE_TTL);
                if s.current
                    .as_ref()
                    .is_some_and(|k| now.saturating_sub(k.seen) >= IDLE_TTL)
                {
                    s.current = None;
                }
            }
            keys.slots
                .iter()
                .any(|s| s.current.is_some() || !s.candidates.is_empty())
        });
    }

    /// Whether `itr` holds a key made from `material`.
    pub fn has_material(&self, itr: &K, material: &[u8; 32]) -> bool {
        self.itrs.get(itr).is_some_and(|keys| {
            keys.slots.iter().any(|s| {
                s.current
                    .iter()
                    .chain(s.candidates.iter())
                    .any(|k| k.material == *material)
            })
        })
    }

    /// Another handle on the key of `itr` made from `material` (its anti-replay window
    /// shared), for the same exchange offered from another address.
    pub fn share_of(&mut self, itr: &K, material: &[u8; 32]) -> Option<RecvKey> {
        let keys = self.itrs.get_mut(itr)?;
        keys.slots
            .iter_mut()
            .flat_map(|s| s.current.iter_mut().chain(s.candidates.iter_mut()))
            .find(|k| k.material == *material)
            .map(|k| k.key.share())
    }

    /// Whether `itr` has keys or candidates.
    pub fn has(&self, itr: &K) -> bool {
        self.itrs.contains_key(itr)
    }

    /// Forgets the keys of `itr`.
    pub fn remove(&mut self, itr: &K) {
        self.itrs.remove(itr);
    }
}

impl RecvKeys<IpAddr> {
    /// Per ITR, the key in use that was put in use last.
    pub fn current(&self) -> impl Iterator<Item = CurrentKey> + '_ {
        self.itrs.iter().filter_map(|(itr, keys)| {
            let k = keys
                .slots
                .iter()
                .filter_map(|s| s.current.as_ref())
                .max_by_key(|k| k.installed)?;
            Some(CurrentKey {
                itr: *itr,
                suite: k.key.suite,
                key_id: k.key.key_id,
                installed: k.installed,
                keys: keys.promoted,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::lisp_crypto::SendKey;
    use crate::wire::DataHeader;

    const S: CipherSuite = CipherSuite::Aes128Gcm;
    const T: Duration = Duration::from_secs(1);

    fn itr() -> IpAddr {
        IpAddr::from([192, 0, 2, 1])
    }

    fn sealed(tx: &mut SendKey) -> Vec<u8> {
        let mut out = Vec::new();
        tx.seal(DataHeader::with_instance(0, 1, 0), b"inner", &mut out)
            .unwrap();
        out
    }

    fn opens(keys: &mut RecvKeys, p: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut b = p.to_vec();
        let r = keys.open(T, itr(), &mut b)?;
        Ok(b[r].to_vec())
    }

    #[test]
    fn a_candidate_is_used_only_once_a_packet_proves_it() {
        let mut keys = RecvKeys::new();
        let (good, forged) = ([1u8; 32], [2u8; 32]);
        let mut tx = SendKey::new(S, 1, &good);
        assert_eq!(keys.install(T, itr(), S, 1, good), Install::Candidate);
        assert_eq!(keys.current().count(), 0, "not in use before a packet");
        assert_eq!(opens(&mut keys, &sealed(&mut tx)).unwrap(), b"inner");
        assert_eq!(keys.current().next().unwrap().keys, 1);
        // A forged offer for the same key-id: a candidate beside the key, never in its place.
        assert_eq!(keys.install(T, itr(), S, 1, forged), Install::Candidate);
        for _ in 0..5 {
            assert_eq!(opens(&mut keys, &sealed(&mut tx)).unwrap(), b"inner");
        }
        // Packets under the forged key (which the attacker cannot make without the ITR's
        // private key, but try) would promote it; packets under another key do not.
        let mut attacker = SendKey::new(S, 1, &[3u8; 32]);
        assert_eq!(
            opens(&mut keys, &sealed(&mut attacker)),
            Err(CryptoError::Icv)
        );
        assert_eq!(opens(&mut keys, &sealed(&mut tx)).unwrap(), b"inner");
        // The same key offered again only refreshes it.
        assert_eq!(keys.install(T, itr(), S, 1, good), Install::Refreshed);
        // A genuine rekey under the same key-id (lispers.net does so): the new key takes
        // over with its first packet, the old key is gone.
        let renewed = [4u8; 32];
        let mut tx2 = SendKey::new(S, 1, &renewed);
        keys.install(T, itr(), S, 1, renewed);
        assert_eq!(opens(&mut keys, &sealed(&mut tx2)).unwrap(), b"inner");
        assert_eq!(opens(&mut keys, &sealed(&mut tx)), Err(CryptoError::Icv));
        assert_eq!(keys.current().next().unwrap().keys, 2);
    }

    #[test]
    fn bounded_and_expiring() {
        let mut keys = RecvKeys::new();
        for i in 0..MAX_ITRS as u32 + 10 {
            let ip = IpAddr::from((0x0a00_0000 + i).to_be_bytes());
            let r = keys.install(T, ip, S, 1, [i as u8; 32]);
            assert_eq!(r == Install::Full, i as usize >= MAX_ITRS);
        }
        assert_eq!(keys.len(), MAX_ITRS);
        // Candidates per key-id are bounded too: the oldest goes.
        for i in 0..10u8 {
            keys.install(T, itr(), S, 2, [100 + i; 32]);
        }
        keys.expire(T + CANDIDATE_TTL);
        assert!(keys.is_empty(), "unproven candidates expire");
        // A key in use stays while used, and goes when idle.
        let mut tx = SendKey::new(S, 1, &[9u8; 32]);
        keys.install(T, itr(), S, 1, [9u8; 32]);
        opens(&mut keys, &sealed(&mut tx)).unwrap();
        keys.expire(T + CANDIDATE_TTL);
        assert_eq!(keys.len(), 1);
        keys.expire(T + IDLE_TTL);
        assert!(keys.is_empty());
        assert_eq!(
            keys.install(T, itr(), S, 0, [1; 32]),
            Install::Full,
            "key-id 0"
        );
    }
}
