//! LISP-Decent pull mode: which Map-Server set an EID belongs to (RFC 9962 §5;
//! draft-farinacci-lisp-decent-09 §5.1). The index is a hash of the EID's text form modulo
//! the modulus; set *n* is the A / AAAA records of `<n>.<suffix>`.

use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// The hash a deployment uses (every member must use the same one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullHash {
    /// draft-09 §5.1: SHA-256 of the text cut to its first `mask_len` bytes (the Hash Mask;
    /// 0 = no mask), the whole digest read as a big-endian integer.
    Draft { mask_len: usize },
    /// lispers.net: HMAC-SHA-256 keyed with "lisp-decent", the first `width` bytes of the
    /// digest as a big-endian integer (6 by default), no mask.
    Lispers { width: usize },
}

/// `digest mod m`, reading `digest` as one big-endian integer.
fn mod_be(digest: &[u8], m: u32) -> u32 {
    let m = u64::from(m.max(1));
    digest
        .iter()
        .fold(0u64, |acc, &b| ((acc << 8) | u64::from(b)) % m) as u32
}

impl PullHash {
    /// The Map-Server set index of an EID text (`[iid]prefix/len`, `[iid]'name'`, ...).
    pub fn index(&self, text: &str, modulus: u32) -> u32 {
        match *self {
            PullHash::Draft { mask_len } => {
                let b = text.as_bytes();
                let masked = if mask_len == 0 {
                    b
                } else {
                    &b[..mask_len.min(b.len())]
                };
                mod_be(&Sha256::digest(masked), modulus)
            }
            PullHash::Lispers { width } => {
                let w = if (1..=32).contains(&width) { width } else { 6 };
                let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(b"lisp-decent")
                    .expect("HMAC takes keys of any length");
                mac.update(text.as_bytes());
                mod_be(&mac.finalize().into_bytes()[..w], modulus)
            }
        }
    }

    /// The DNS name of the set an EID text hashes to.
    pub fn dns_name(&self, text: &str, modulus: u32, suffix: &str) -> String {
        format!(
            "{}.{}",
            self.index(text, modulus),
            suffix.trim_end_matches('.')
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PROTOCOL.md §2.2, "Reference index values, lispers HMAC variant".
    #[test]
    fn lispers_reference_values() {
        let h = PullHash::Lispers { width: 6 };
        let rows: [(&str, [u32; 5]); 7] = [
            ("[1000]10.1.1.0/32", [2, 0, 1, 0, 56]),
            ("[1000]fd00::2222/128", [1, 1, 2, 1, 172]),
            ("[0]10.1.0.0/16", [2, 1, 2, 5, 137]),
            ("[0]240.0.1.0/24", [2, 3, 4, 7, 164]),
            ("[0]240.0.1.1/32", [1, 2, 3, 6, 43]),
            ("[0]224.1.1.1/32", [1, 2, 4, 6, 139]),
            ("[0]'xtr1'", [2, 2, 0, 6, 35]),
        ];
        for (text, want) in rows {
            for (m, w) in [3, 4, 5, 8, 255].iter().zip(want) {
                assert_eq!(h.index(text, *m), w, "{text} mod {m}");
            }
        }
        assert_eq!(
            h.dns_name("[0]10.1.0.0/16", 8, "map.example."),
            "5.map.example"
        );
    }

    /// PROTOCOL.md §2.2, "Reference values, draft-09 reading".
    #[test]
    fn draft_reference_values() {
        let rows: [(&str, usize, [u32; 3]); 5] = [
            ("[1000]fd::2222", 0, [0, 0, 4]),
            ("[1000]fd::2222/128", 0, [0, 4, 0]),
            ("[1000]fd00::2222/128", 0, [3, 0, 3]),
            ("[0]240.0.1.0/24", 8, [0, 1, 0]),
            ("[0]224.1.1.1/32", 12, [1, 2, 5]),
        ];
        for (text, mask, want) in rows {
            let h = PullHash::Draft { mask_len: mask };
            for (m, w) in [4, 5, 8].iter().zip(want) {
                assert_eq!(h.index(text, *m), w, "{text} mask {mask} mod {m}");
            }
        }
        // The Hash Mask makes a host EID and its covering prefix hash alike.
        let h = PullHash::Draft { mask_len: 8 };
        assert_eq!(h.index("[0]240.0.1.1/32", 5), h.index("[0]240.0.1.0/24", 5));
    }
}
