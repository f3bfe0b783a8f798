//! Convergence of LISP-Decent peer groups in the simulator (a whole-system figure, not a
//! criterion benchmark): for 3, 10, 100 and 1000 members in each push form on a 1 ms
//! network, the virtual time from a new member's start until every member holds every
//! registration, and the datagrams that took. Run: `cargo bench --bench convergence`.

use std::time::{Duration, Instant};

use lisp_decent::control::Delivery;
use lisp_decent::sim::{self, Sim};

fn main() {
    // `cargo bench -- --test` (as scripts/test.sh runs it) only checks the smallest case.
    let quick = std::env::args().any(|a| a == "--test");
    // CONVERGENCE_SIZES=100,1000 picks the sizes.
    let chosen: Vec<usize> = std::env::var("CONVERGENCE_SIZES")
        .ok()
        .map(|v| v.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![3, 10, 100, 1000]);
    let sizes: &[usize] = if quick { &[3] } else { &chosen };
    println!(
        "| members | delivery | join converged after | datagrams for the join | initial mesh converged after | wall time |"
    );
    println!("|---|---|---|---|---|---|");
    for &n in sizes {
        for (name, d) in [
            ("replicate", Delivery::Replicate),
            ("multicast", Delivery::Multicast { ttl: 32 }),
        ] {
            let wall = Instant::now();
            let mut s = Sim::new(Duration::from_millis(1), 42);
            for i in 1..=n {
                s.add(sim::node_config(i, d.clone()));
            }
            let every = Duration::from_millis(1);
            assert!(
                s.run_until_every(Duration::from_secs(120), every, Sim::converged),
                "{n} {name}: no convergence"
            );
            let initial = s.now;
            // Let the start-up traffic settle, then a new member starts.
            s.run_to(s.now + Duration::from_secs(2));
            let t0 = s.now;
            let sent0 = s.sent;
            s.add(sim::node_config(n + 1, d.clone()));
            assert!(
                s.run_until_every(t0 + Duration::from_secs(60), every, Sim::converged),
                "{n} {name}: join"
            );
            println!(
                "| {n} | {name} | {:.1} ms | {} | {:.1} ms | {:.1} s |",
                (s.now - t0).as_secs_f64() * 1000.0,
                s.sent - sent0,
                initial.as_secs_f64() * 1000.0,
                wall.elapsed().as_secs_f64()
            );
        }
    }
}
