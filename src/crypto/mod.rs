//! Cryptography: Map-Register / Map-Notify authentication (RFC 9301 §5.6).

pub mod auth;
