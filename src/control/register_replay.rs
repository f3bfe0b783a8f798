//! Map-Register replay protection at the Map-Server (RFC 9301 §5.6: "the nonce ... is
//! used to detect replays"; the RFC leaves its form to the xTR).
//!
//! An authenticated Map-Register captured on the wire stays valid forever: replayed, an old
//! register reinstates a stopped member's mapping, and an old withdrawal (TTL 0) cuts a live
//! member off. Per registering xTR (xTR-ID and site-ID; the source address for an xTR that
//! sends no xTR-ID, as OOR does) the Map-Server keeps its last nonce and the HMACs of its
//! recent registers, and tells two kinds of xTR apart by what their nonces do:
//!
//! - **Counting** xTRs: nonces that grow, read big-endian, by less than [`COUNTER_STEP`],
//!   [`MONOTONIC_AFTER`] registers in a row (random nonces practically never do). Ours do (a wall-clock base in microseconds plus a counter, so across restarts
//!   too; [`NonceCounter`]). Such an xTR is held to it: a register whose nonce is not above
//!   the last is a replay (`register_rejected_replay`), a withdrawal included.
//! - **Other** xTRs cannot be told from a replay by their nonce: lispers.net starts every
//!   register round at the same nonce (0xaabbccdddfdfdf00, +1 per message, sent
//!   little-endian), so its periodic registers repeat byte for byte; OOR's are
//!   clock-derived, form unknown. Their registers are accepted as before, but once an xTR
//!   has withdrawn (every record TTL 0), a register byte-identical to one it sent before
//!   the withdrawal (the same HMAC) is a replay: a withdrawn registration is never
//!   reinstated by a replay. A replayed withdrawal of such an xTR cannot be told from a
//!   real one; it lasts until the xTR's next register.
//!
//! Everything is bounded: at most [`MAX_XTRS`] xTRs (the least recently heard is forgotten
//! first), [`RECENT`] HMACs each, forgotten [`MEMORY`] after the last register.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use crate::wire::Nonce;

/// Register HMACs remembered per xTR.
pub const RECENT: usize = 64;
/// Registers in a row whose nonce grew before the xTR is held to counting.
pub const MONOTONIC_AFTER: u32 = 8;
/// The largest step between two counted nonces: 2^40 (our clock base moves by that much in
/// 12.7 days of downtime; a random nonce lands this close above the last once in 2^24).
pub const COUNTER_STEP: u64 = 1 << 40;
/// A nonce this far above the last one (one second of our clock base, a million registers
/// of a counter) is a new run of a counting xTR: it restarted.
pub const RESTART_JUMP: u64 = 1_000_000;
/// xTRs remembered at most.
pub const MAX_XTRS: usize = 4096;
/// How long an xTR is remembered after its last register.
pub const MEMORY: Duration = Duration::from_secs(24 * 3600);

/// Who registers: xTR-ID and site-ID.
pub type Registrant = ([u8; 16], [u8; 8]);

/// The leftmost bytes of a register's HMAC: the same message gives the same ones.
pub type Fingerprint = [u8; 8];

/// What an admitted register says of its xTR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admitted {
    /// Heard before, in the same run.
    Known,
    /// Never heard (or forgotten).
    New,
    /// Its counter jumped as a restart makes ours jump: it came back and has lost what it
    /// held.
    Restarted,
}

/// Why a register was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replay {
    /// A counting xTR's nonce that is not above its last one.
    NotNewer,
    /// The same message as one sent before the xTR withdrew.
    WithdrawnBefore,
}

#[derive(Debug, Clone)]
struct History {
    last: u64,
    /// Registers in a row whose nonce grew.
    grew: u32,
    /// HMACs of its recent registers.
    recent: VecDeque<Fingerprint>,
    /// Its last register withdrew everything it named.
    withdrawn: bool,
    heard: Duration,
}

/// The register history of every registering xTR.
#[derive(Debug, Default)]
pub struct RegisterNonces {
    xtrs: HashMap<Registrant, History>,
}

impl RegisterNonces {
    pub fn new() -> Self {
        Self::default()
    }

    /// xTRs remembered.
    pub fn len(&self) -> usize {
        self.xtrs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.xtrs.is_empty()
    }

    /// Whether an authenticated register of `who` is new (`withdrawal`: every record has
    /// TTL 0); records it when it is.
    pub fn admit(
        &mut self,
        now: Duration,
        who: Registrant,
        nonce: Nonce,
        fingerprint: Fingerprint,
        withdrawal: bool,
    ) -> Result<Admitted, Replay> {
        let n = u64::from_be_bytes(nonce);
        let Some(h) = self.xtrs.get_mut(&who) else {
            if self.xtrs.len() >= MAX_XTRS
                && let Some(oldest) = self
                    .xtrs
                    .iter()
                    .min_by_key(|(_, h)| h.heard)
                    .map(|(k, _)| *k)
            {
                self.xtrs.remove(&oldest);
            }
            self.xtrs.insert(
                who,
                History {
                    last: n,
                    grew: 0,
                    recent: VecDeque::from([fingerprint]),
                    withdrawn: withdrawal,
                    heard: now,
                },
            );
            return Ok(Admitted::New);
        };
        if h.grew >= MONOTONIC_AFTER {
            if n <= h.last {
                return Err(Replay::NotNewer);
            }
        } else if h.withdrawn && !withdrawal && h.recent.contains(&fingerprint) {
            return Err(Replay::WithdrawnBefore);
        }
        // Grown by a step a counter makes (not the jump of a random nonce, which lands this
        // close above the last one once in 2^24: eight in a row never happen by chance).
        let counted = n > h.last && n - h.last < COUNTER_STEP;
        let restarted = counted && n - h.last >= RESTART_JUMP;
        h.grew = if counted { h.grew.saturating_add(1) } else { 0 };
        h.last = n;
        if !h.recent.contains(&fingerprint) {
            if h.recent.len() >= RECENT {
                h.recent.pop_front();
            }
            h.recent.push_back(fingerprint);
        }
        h.withdrawn = withdrawal;
        h.heard = now;
        Ok(if restarted {
            Admitted::Restarted
        } else {
            Admitted::Known
        })
    }

    /// Forgets the xTRs not heard from for [`MEMORY`].
    pub fn expire(&mut self, now: Duration) {
        self.xtrs
            .retain(|_, h| now.saturating_sub(h.heard) < MEMORY);
    }
}

/// Our own register nonces: a base taken from the wall clock at start (microseconds since
/// the Unix epoch) plus a counter, big-endian, so they only grow, across restarts too (as
/// long as the clock does not step back by more than the run's registers).
#[derive(Debug, Clone)]
pub struct NonceCounter {
    next: u64,
}

impl NonceCounter {
    pub fn new(base: u64) -> Self {
        NonceCounter { next: base.max(1) }
    }

    pub fn next_nonce(&mut self) -> Nonce {
        let n = self.next;
        self.next = self.next.wrapping_add(1).max(1);
        n.to_be_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(1);
    const WHO: Registrant = ([1; 16], [0; 8]);

    fn fp(i: u64) -> Fingerprint {
        i.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes()
    }

    /// Ours: counted nonces; after a few, an old register or an old withdrawal is refused.
    #[test]
    fn a_counting_xtr_is_held_to_its_count() {
        let mut g = RegisterNonces::new();
        let mut c = NonceCounter::new(1_700_000_000_000_000);
        let mut sent = Vec::new();
        for i in 0..20 {
            let n = c.next_nonce();
            assert!(g.admit(T, WHO, n, fp(i), i == 5).is_ok());
            sent.push((n, fp(i)));
        }
        let (old, f) = sent[5];
        assert_eq!(
            g.admit(T, WHO, old, f, true),
            Err(Replay::NotNewer),
            "old withdrawal"
        );
        let (old, f) = sent[3];
        assert_eq!(g.admit(T, WHO, old, f, false), Err(Replay::NotNewer));
        assert_eq!(
            g.admit(T, WHO, c.next_nonce(), fp(99), false),
            Ok(Admitted::Known)
        );
        // The same xTR started again a minute later: its counter jumped.
        let mut again = NonceCounter::new(1_700_000_060_000_000);
        assert_eq!(
            g.admit(T, WHO, again.next_nonce(), fp(100), false),
            Ok(Admitted::Restarted)
        );
    }

    /// lispers.net: every round repeats the same nonces and bytes; accepted, until it
    /// withdraws: then a byte-identical register from before is a replay, and a new one is
    /// fine.
    #[test]
    fn a_repeating_xtr_is_accepted_but_a_withdrawal_is_not_undone_by_a_replay() {
        let mut g = RegisterNonces::new();
        let lispers = 0xaabb_ccdd_dfdf_df01u64.to_le_bytes();
        for _ in 0..20 {
            assert!(g.admit(T, WHO, lispers, fp(1), false).is_ok());
        }
        assert!(g.admit(T, WHO, lispers, fp(2), true).is_ok(), "withdrawal");
        assert_eq!(
            g.admit(T, WHO, lispers, fp(1), false),
            Err(Replay::WithdrawnBefore)
        );
        assert!(
            g.admit(T, WHO, lispers, fp(3), false).is_ok(),
            "a new register"
        );
        assert!(
            g.admit(T, WHO, lispers, fp(1), false).is_ok(),
            "no longer withdrawn"
        );
    }

    /// Random nonces are never taken for a count, so none of them is ever refused.
    #[test]
    fn random_nonces_are_not_held_to_a_count() {
        let mut g = RegisterNonces::new();
        let mut x: u64 = 0x1234_5678_9abc_def1;
        for i in 0..100_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let r = g.admit(T, WHO, x.to_be_bytes(), fp(i), false);
            assert!(
                matches!(r, Ok(Admitted::Known | Admitted::New)),
                "{i}: {r:?}"
            );
        }
    }

    #[test]
    fn bounded_and_forgotten() {
        let mut g = RegisterNonces::new();
        for i in 0..MAX_XTRS as u32 + 10 {
            let mut id = [0u8; 16];
            id[..4].copy_from_slice(&i.to_be_bytes());
            let at = T + Duration::from_millis(u64::from(i));
            g.admit(at, (id, [0; 8]), [1; 8], fp(1), false).unwrap();
        }
        assert_eq!(g.len(), MAX_XTRS);
        g.expire(T + MEMORY + Duration::from_secs(100));
        assert!(g.is_empty());
    }

    #[test]
    fn our_nonces_only_grow() {
        let mut c = NonceCounter::new(1_700_000_000_000_000);
        let a = u64::from_be_bytes(c.next_nonce());
        let b = u64::from_be_bytes(c.next_nonce());
        assert!(b > a);
        let mut later = NonceCounter::new(1_700_000_000_000_001 + 5);
        assert!(
            u64::from_be_bytes(later.next_nonce()) > b,
            "a restart continues above"
        );
    }
}
