//! The docker compose mesh (scripts/compose-test.sh): the image built from docker/Dockerfile
//! on base images made locally, three nodes in replicate mode and three in the multicast
//! profile, each converging, pinging across the encrypted mesh, and serving its web UI and
//! metrics on the published ports. Needs root and a docker engine; without them the test
//! says why and passes, unless LISP_DECENT_REQUIRE_DOCKER is set (as in CI).

use std::process::Command;

fn docker_ready() -> Result<(), String> {
    if !Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
    {
        return Err("not root".into());
    }
    match Command::new("docker").args(["info"]).output() {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(format!(
            "docker info failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Err(format!("no docker: {e}")),
    }
}

#[test]
fn compose_mesh_converges_pings_and_serves_its_web_ui() {
    if let Err(why) = docker_ready() {
        assert!(
            std::env::var_os("LISP_DECENT_REQUIRE_DOCKER").is_none(),
            "LISP_DECENT_REQUIRE_DOCKER is set but docker cannot be used: {why}"
        );
        eprintln!("skipping the compose mesh test: {why}");
        return;
    }
    let root = env!("CARGO_MANIFEST_DIR");
    let status = Command::new("bash")
        .arg("scripts/compose-test.sh")
        .current_dir(root)
        .status()
        .expect("bash");
    assert!(status.success(), "scripts/compose-test.sh failed");
}
