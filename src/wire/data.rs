//! The LISP data-plane header (RFC 9300 §5.3; K bits: RFC 8061 §8).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |N|L|E|V|I|R|K|K|            Nonce/Map-Version                  |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                 Instance ID/Locator-Status-Bits               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! N: nonce present; L: Locator-Status-Bits present; E: echo-nonce request; V: map-versions
//! present; I: Instance-ID present (then only 8 LSBs fit); R: reserved; KK: the lisp-crypto
//! key-id, 0 for a clear packet. Fixed size: parsing and emitting touch eight bytes and
//! nothing else.

use super::error::{Result, WireError};

/// Instance-ID reserved for control messages carried in data encapsulation (LISP-Decent
/// head-end replication, RFC 9962 §4).
pub const CONTROL_INSTANCE_ID: u32 = 0x00ff_ffff;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct DataHeader {
    /// N, L, E, V, I and R (bits 0xfc of byte 0).
    pub flags: u8,
    /// K bits: 0 clear, 1-3 the key-id.
    pub key_id: u8,
    /// 24-bit nonce (N) or source / destination map-version (V).
    pub nonce: u32,
    /// Instance-ID (24 bits) and 8 LSBs when I is set, else 32 LSBs.
    pub id_lsbs: u32,
}

impl DataHeader {
    pub const LEN: usize = 8;
    pub const N: u8 = 0x80;
    pub const L: u8 = 0x40;
    pub const E: u8 = 0x20;
    pub const V: u8 = 0x10;
    pub const I: u8 = 0x08;
    pub const R: u8 = 0x04;

    /// A header with the I bit and `iid`, the N bit and `nonce`, and `key_id` in the K bits.
    pub fn with_instance(iid: u32, nonce: u32, key_id: u8) -> Self {
        DataHeader {
            flags: Self::N | Self::I,
            key_id: key_id & 3,
            nonce: nonce & 0x00ff_ffff,
            id_lsbs: (iid & 0x00ff_ffff) << 8,
        }
    }

    #[inline]
    pub fn parse(b: &[u8]) -> Result<DataHeader> {
        let Some(h) = b.first_chunk::<8>() else {
            return Err(WireError::Truncated {
                field: "LISP data header",
                offset: 0,
                need: 8,
                have: b.len(),
            });
        };
        Ok(DataHeader {
            flags: h[0] & 0xfc,
            key_id: h[0] & 0x03,
            nonce: u32::from_be_bytes([0, h[1], h[2], h[3]]),
            id_lsbs: u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
        })
    }

    /// Writes the eight header bytes at the start of `out`; fails if `out` is shorter.
    #[inline]
    pub fn emit(&self, out: &mut [u8]) -> Result<()> {
        let Some(h) = out.first_chunk_mut::<8>() else {
            return Err(WireError::emit(
                "LISP data header",
                "buffer shorter than 8 bytes",
            ));
        };
        let n = self.nonce.to_be_bytes();
        let id = self.id_lsbs.to_be_bytes();
        *h = [
            (self.flags & 0xfc) | (self.key_id & 3),
            n[1],
            n[2],
            n[3],
            id[0],
            id[1],
            id[2],
            id[3],
        ];
        Ok(())
    }

    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    /// The Instance-ID, when the I bit is set.
    pub fn instance_id(&self) -> Option<u32> {
        self.has(Self::I).then_some(self.id_lsbs >> 8)
    }

    /// The Locator-Status-Bits, when the L bit is set (8 bits with I, else 32).
    pub fn lsbs(&self) -> Option<u32> {
        self.has(Self::L).then_some(if self.has(Self::I) {
            self.id_lsbs & 0xff
        } else {
            self.id_lsbs
        })
    }

    /// Flags as letters, upper case when set: `NLEVIR`.
    pub fn flag_letters(&self) -> String {
        [
            (Self::N, 'N'),
            (Self::L, 'L'),
            (Self::E, 'E'),
            (Self::V, 'V'),
            (Self::I, 'I'),
            (Self::R, 'R'),
        ]
        .iter()
        .map(|&(f, c)| {
            if self.has(f) {
                c
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect()
    }
}
