//! lisp-decent: a LISP-Decent node (RFC 9962) — every node an xTR and its own Map-Server and
//! Map-Resolver, in a peer group that holds one mapping database.
//!
//! Layers, lowest first (see shared/design/ARCHITECTURE.md): [`wire`] turns bytes into typed
//! LISP messages and back; [`crypto`] holds Map-Register authentication; [`cli`] is the
//! `decent` command.

pub mod api;
pub mod cli;
pub mod control;
pub mod crypto;
pub mod dataplane;
pub mod mapping;
pub mod node;
pub mod present;
pub mod sim;
pub mod wire;
