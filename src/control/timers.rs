//! A timer table (quinn's `TimerTable` idea): deadlines of many keyed timers in a binary
//! heap, so finding the next deadline is O(1) and taking the due ones O(log n) each,
//! however many are armed. An entry is valid while its owner's state still says that time
//! (the caller's `current` check); re-arming leaves the older entry behind, dropped when it
//! comes up or when the table is compacted.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

#[derive(Debug)]
pub(crate) struct TimerTable<K: Ord + Copy> {
    heap: BinaryHeap<Reverse<(Duration, K)>>,
}

impl<K: Ord + Copy> Default for TimerTable<K> {
    fn default() -> Self {
        TimerTable {
            heap: BinaryHeap::new(),
        }
    }
}

impl<K: Ord + Copy> TimerTable<K> {
    /// Arms `key` for `at`.
    pub fn schedule(&mut self, key: K, at: Duration) {
        self.heap.push(Reverse((at, key)));
    }

    /// The earliest entry (perhaps one made stale since: the owner then wakes early once).
    pub fn peek(&self) -> Option<(Duration, K)> {
        self.heap.peek().map(|Reverse(e)| *e)
    }

    /// The earliest deadline.
    pub fn next(&self) -> Option<Duration> {
        self.peek().map(|(t, _)| t)
    }

    /// Takes the earliest entry.
    pub fn pop(&mut self) -> Option<(Duration, K)> {
        self.heap.pop().map(|Reverse(e)| e)
    }

    /// Takes every entry due at `now` and returns the keys whose entry is `current`, each
    /// once.
    pub fn due(&mut self, now: Duration, current: impl Fn(K, Duration) -> bool) -> Vec<K> {
        let mut out = Vec::new();
        while let Some((t, k)) = self.peek() {
            if t > now {
                break;
            }
            self.heap.pop();
            if current(k, t) && !out.contains(&k) {
                out.push(k);
            }
        }
        out
    }

    /// Entries held, stale ones included.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Rebuilds the table from the `live` timers when stale entries outnumber them (plus
    /// a margin): the table stays bounded by the number of armed timers.
    pub fn compact(&mut self, live: usize, all: impl FnOnce() -> Vec<(K, Duration)>) {
        if self.heap.len() > 2 * live + 1024 {
            self.heap = all().into_iter().map(|(k, t)| Reverse((t, k))).collect();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    /// Due entries come out in time order, stale ones (re-armed or gone) are skipped, a key
    /// comes out once, and compaction keeps only the live timers.
    #[test]
    fn due_skips_stale_entries_and_compaction_bounds_the_table() {
        let mut t = TimerTable::default();
        let mut live = std::collections::HashMap::new();
        for k in 0..10u32 {
            t.schedule(k, s(u64::from(k)));
            live.insert(k, s(u64::from(k)));
        }
        // Re-arm 3 later, forget 4.
        t.schedule(3, s(20));
        live.insert(3, s(20));
        live.remove(&4);
        assert_eq!(t.next(), Some(s(0)));
        let due = t.due(s(5), |k, at| live.get(&k) == Some(&at));
        assert_eq!(due, vec![0, 1, 2, 5]);
        assert_eq!(t.next(), Some(s(6)));
        for i in 0..5000u32 {
            t.schedule(100, s(30 + u64::from(i)));
        }
        live.insert(100, s(5029));
        let all: Vec<(u32, Duration)> = live.iter().map(|(k, v)| (*k, *v)).collect();
        t.compact(live.len(), || all);
        assert_eq!(t.len(), live.len());
        let due = t.due(s(10_000), |k, at| live.get(&k) == Some(&at));
        assert_eq!(due.len(), live.len());
    }
}
