//! Typed parse and emit errors of the wire layer.
//!
//! Every error names the field that failed and the byte offset of that field from the start of
//! the buffer handed to the parser, so an operator can find it in a hex dump.

use thiserror::Error;

/// A failure to parse bytes into a LISP message, or to emit a message into bytes.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WireError {
    /// The field needs more bytes than the enclosing structure has left.
    #[error("{field} at offset {offset}: truncated, needs {need} bytes but {have} remain")]
    Truncated {
        field: &'static str,
        offset: usize,
        need: usize,
        have: usize,
    },
    /// The field is present but holds a value the protocol does not allow.
    #[error("{field} at offset {offset}: {reason}")]
    Invalid {
        field: &'static str,
        offset: usize,
        reason: String,
    },
    /// LCAFs nest deeper than [`MAX_NESTING`](super::MAX_NESTING).
    #[error("{field} at offset {offset}: nesting deeper than {limit} levels")]
    TooDeep {
        field: &'static str,
        offset: usize,
        limit: usize,
    },
    /// Bytes are left after a structure whose length is fully determined.
    #[error("{field} at offset {offset}: {count} unexpected trailing bytes")]
    Trailing {
        field: &'static str,
        offset: usize,
        count: usize,
    },
    /// A value cannot be emitted (a count or length does not fit its field).
    #[error("cannot emit {field}: {reason}")]
    Emit { field: &'static str, reason: String },
}

impl WireError {
    /// The byte offset the error refers to, when it refers to one.
    pub fn offset(&self) -> Option<usize> {
        match self {
            WireError::Truncated { offset, .. }
            | WireError::Invalid { offset, .. }
            | WireError::TooDeep { offset, .. }
            | WireError::Trailing { offset, .. } => Some(*offset),
            WireError::Emit { .. } => None,
        }
    }

    /// The name of the field the error refers to.
    pub fn field(&self) -> &'static str {
        match self {
            WireError::Truncated { field, .. }
            | WireError::Invalid { field, .. }
            | WireError::TooDeep { field, .. }
            | WireError::Trailing { field, .. }
            | WireError::Emit { field, .. } => field,
        }
    }

    pub(crate) fn emit(field: &'static str, reason: impl Into<String>) -> Self {
        WireError::Emit {
            field,
            reason: reason.into(),
        }
    }
}

/// Result of a wire operation.
pub type Result<T> = std::result::Result<T, WireError>;
