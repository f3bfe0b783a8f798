//! `scripts/demo.sh`, the main job, as a user runs it (root): it converges, pings across the
//! encrypted mesh, prints its summary, and leaves nothing behind, also when interrupted.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod lab;

fn root() -> &'static str {
    env!("CARGO_MANIFEST_DIR")
}

/// The namespaces and host links the demo makes, as they are now.
fn leftovers() -> Vec<String> {
    let ns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let links = Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&ns.stdout)
        .lines()
        .chain(String::from_utf8_lossy(&links.stdout).lines())
        .filter_map(|l| {
            l.split([' ', ':', '@'])
                .find(|w| w.starts_with("dl-n") || w.starts_with("dl-br") || w.starts_with("dl-ui"))
                .map(str::to_string)
        })
        .collect()
}

#[test]
fn the_demo_runs_summarizes_and_cleans_up() {
    if !lab::have_root() {
        return;
    }
    let _serial = lab::serial();
    let o = Command::new("bash")
        .arg("scripts/demo.sh")
        .current_dir(root())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.contains("n1 site cache: [0]10.1.0.0/16"), "{out}");
    assert!(out.contains("== converged"), "{out}");
    assert!(out.contains("ping 10.3.0.1:        5/5 replies"), "{out}");
    assert!(
        out.contains("web UI:               http://198.51.100.2:8080/"),
        "{out}"
    );
    let encrypted = out
        .lines()
        .find_map(|l| l.strip_prefix("   encrypted by node 1:  "))
        .and_then(|l| l.split(' ').next())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("{out}"));
    assert!(encrypted >= 5, "{out}");
    assert!(out.contains("removed the namespaces"), "{out}");
    assert_eq!(leftovers(), Vec::<String>::new());
}

#[test]
fn an_interrupted_demo_removes_what_it_made() {
    if !lab::have_root() {
        return;
    }
    let _serial = lab::serial();
    let mut child = Command::new("bash")
        .args(["scripts/demo.sh", "--keep"])
        .current_dir(root())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let start = Instant::now();
    let mut seen = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(l) if l.contains("keeps running") => break,
            Ok(l) => seen.push(l),
            Err(_) if start.elapsed() > Duration::from_secs(300) => {
                let _ = child.kill();
                panic!("no 'keeps running' line: {seen:#?}");
            }
            Err(_) => {}
        }
    }
    assert!(
        !leftovers().is_empty(),
        "the mesh is up while the demo runs"
    );
    // Ctrl-C reaches the script (and bash's children) as SIGINT.
    let _ = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{seen:#?}");
    // The reader thread may still be passing on the last lines when the script has exited:
    // wait for it to reach the end of the output (or give up after 10 s).
    let mut rest: Vec<String> = Vec::new();
    let until = Instant::now() + Duration::from_secs(10);
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(l) => rest.push(l),
            Err(_) => break,
        }
    }
    assert!(
        rest.iter().any(|l| l.contains("removed the namespaces")),
        "{rest:#?}"
    );
    assert_eq!(leftovers(), Vec::<String>::new());
}
