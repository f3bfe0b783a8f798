//! The sans-IO control plane (RFC 9301, RFC 9962): Map-Server, Map-Resolver, ETR registrar,
//! peer-group delivery, SMR and the ITR's map-cache, driven by datagrams and time.

pub mod config;
pub mod counters;
pub mod direct;
pub mod engine;
pub mod external;
mod itr;
mod map_resolver;
mod map_server;
pub mod nat;
mod outbox;
pub mod probe;
pub mod pull;
pub mod register_replay;
mod registrar;
pub mod rtr;
mod timers;

pub use crate::dataplane::KeyEvent;
pub use config::*;
pub use counters::Counters;
pub use engine::{Engine, Transmit};
pub use external::MapServerState;
