//! Cryptography: Map-Register / Map-Notify authentication (RFC 9301 §5.6) and lisp-crypto
//! (RFC 8061): key exchange, key derivation, AEAD and anti-replay.

pub mod auth;
pub mod kx_auth;
pub mod lisp_crypto;
pub mod lispers;
pub mod replay;
