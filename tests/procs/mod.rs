//! Node processes for the tests that run `decent` as a user would.

use std::process::{Child, Command};

pub fn decent() -> Command {
    Command::new(env!("CARGO_BIN_EXE_decent"))
}

/// Kills the nodes when the test ends, also when it fails.
pub struct Nodes(pub Vec<Child>);

impl Drop for Nodes {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
