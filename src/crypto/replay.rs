//! Anti-replay for encrypted LISP data. RFC 8061 names no window; its per-packet counter IV
//! (§9) makes one possible, and we keep the sliding bitmap of RFC 6479, here 4,096 packets
//! wide: a counter is accepted once, and not when it is older than the window.

/// Sliding window over 64-bit packet counters.
#[derive(Debug, Clone)]
pub struct ReplayWindow {
    /// Highest counter accepted so far (+1; 0 means none yet).
    top: u64,
    bits: [u64; WORDS],
}

/// 4,096 packets: a node's receive workers each drain their own socket, so the packets of
/// one sender reach the shared window out of order by up to a socket queue's worth.
const WORDS: usize = 64;
/// Packets the window spans.
pub const WINDOW: u64 = (WORDS as u64) * 64;

impl Default for ReplayWindow {
    fn default() -> Self {
        ReplayWindow {
            top: 0,
            bits: [0; WORDS],
        }
    }
}

impl ReplayWindow {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether `seq` may still be accepted, without recording it (check before the ICV is
    /// verified, record after: a forged packet must not move the window).
    pub fn check(&self, seq: u64) -> bool {
        let top = self.top.saturating_sub(1);
        if self.top == 0 || seq > top {
            return true;
        }
        if top - seq >= WINDOW {
            return false;
        }
        let (w, b) = Self::slot(seq);
        self.bits[w] & (1 << b) == 0
    }

    /// Records `seq` as received; false if it was a replay or too old.
    pub fn accept(&mut self, seq: u64) -> bool {
        if !self.check(seq) {
            return false;
        }
        let top = self.top.saturating_sub(1);
        if self.top == 0 || seq > top {
            // Clear the words the window slides over.
            let from = if self.top == 0 { seq } else { top + 1 };
            if seq - from >= WINDOW {
                self.bits = [0; WORDS];
            } else {
                let mut s = from;
                while s <= seq {
                    let (w, b) = Self::slot(s);
                    self.bits[w] &= !(1 << b);
                    s += 1;
                }
            }
            self.top = seq + 1;
        }
        let (w, b) = Self::slot(seq);
        self.bits[w] |= 1 << b;
        true
    }

    fn slot(seq: u64) -> (usize, u32) {
        (((seq / 64) % WORDS as u64) as usize, (seq % 64) as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_counter_once_within_the_window() {
        let mut w = ReplayWindow::new();
        assert!(w.accept(0));
        assert!(!w.accept(0), "replay");
        assert!(w.accept(5));
        assert!(w.accept(3), "late but inside the window");
        assert!(!w.accept(3));
        assert!(w.accept(5000));
        assert!(!w.accept(5000 - WINDOW), "older than the window");
        assert!(w.accept(5000 - WINDOW + 1));
        assert!(!w.check(5000));
        assert!(w.check(4999));
        // A jump larger than the window clears it.
        assert!(w.accept(100_000));
        assert!(w.accept(100_000 - 5));
        // Out of order within the window, each once.
        let mut w = ReplayWindow::new();
        let order = [10u64, 2, 7, 3, 9, 1, 8, 4, 6, 5];
        for s in order {
            assert!(w.accept(s));
        }
        for s in order {
            assert!(!w.accept(s));
        }
    }
}
