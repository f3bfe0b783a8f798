//! Bounds-checked reading and length-checked writing.
//!
//! [`Reader`] is the only way the parsers touch bytes: every read checks what is left in the
//! current region and reports the field name and absolute offset when it is not enough. A
//! sub-region ([`Reader::sub`]) is how a length field (LCAF Length, IP Total Length) bounds
//! what the structure inside it may consume.

use super::error::{Result, WireError};

/// A cursor over a bounded region of a packet.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Absolute offset of `buf[0]` in the packet, for error messages.
    base: usize,
}

impl<'a> Reader<'a> {
    /// A reader over the whole of `buf`, offsets counted from its start.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader {
            buf,
            pos: 0,
            base: 0,
        }
    }

    /// Absolute offset of the next byte.
    pub fn offset(&self) -> usize {
        self.base + self.pos
    }

    /// Bytes left in this region.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    fn need(&self, n: usize, field: &'static str) -> Result<()> {
        if self.remaining() < n {
            Err(WireError::Truncated {
                field,
                offset: self.offset(),
                need: n,
                have: self.remaining(),
            })
        } else {
            Ok(())
        }
    }

    /// Takes the next `n` bytes.
    pub fn bytes(&mut self, n: usize, field: &'static str) -> Result<&'a [u8]> {
        self.need(n, field)?;
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// Takes the next `N` bytes as an array.
    pub fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.bytes(N, field)?);
        Ok(a)
    }

    pub fn u8(&mut self, field: &'static str) -> Result<u8> {
        Ok(self.array::<1>(field)?[0])
    }

    pub fn u16(&mut self, field: &'static str) -> Result<u16> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }

    pub fn u32(&mut self, field: &'static str) -> Result<u32> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    /// The next two bytes as a big-endian integer, without consuming them.
    pub fn peek_u16(&self) -> Option<u16> {
        let s = self.buf.get(self.pos..self.pos + 2)?;
        Some(u16::from_be_bytes([s[0], s[1]]))
    }

    /// The next `n` bytes without consuming them.
    pub fn peek(&self, n: usize) -> Option<&'a [u8]> {
        self.buf.get(self.pos..self.pos + n)
    }

    /// Everything left in this region.
    pub fn rest(&mut self) -> &'a [u8] {
        let s = &self.buf[self.pos..];
        self.pos = self.buf.len();
        s
    }

    /// Splits off the next `len` bytes as a region of their own.
    pub fn sub(&mut self, len: usize, field: &'static str) -> Result<Reader<'a>> {
        let base = self.offset();
        let buf = self.bytes(len, field)?;
        Ok(Reader { buf, pos: 0, base })
    }

    /// Fails unless the region has been consumed entirely.
    pub fn finish(&self, field: &'static str) -> Result<()> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(WireError::Trailing {
                field,
                offset: self.offset(),
                count: self.remaining(),
            })
        }
    }

    /// An `Invalid` error at the current offset.
    pub fn invalid(&self, field: &'static str, reason: impl Into<String>) -> WireError {
        WireError::Invalid {
            field,
            offset: self.offset(),
            reason: reason.into(),
        }
    }

    /// An `Invalid` error at an offset `back` bytes before the current one (for a field
    /// that was read before it could be judged).
    pub fn invalid_at(
        &self,
        back: usize,
        field: &'static str,
        reason: impl Into<String>,
    ) -> WireError {
        WireError::Invalid {
            field,
            offset: self.offset().saturating_sub(back),
            reason: reason.into(),
        }
    }
}

/// Converts a count to the integer type of its wire field, or fails naming the field.
pub fn fit<T: TryFrom<usize>>(value: usize, field: &'static str) -> Result<T> {
    T::try_from(value)
        .map_err(|_| WireError::emit(field, format!("{value} does not fit the field")))
}
