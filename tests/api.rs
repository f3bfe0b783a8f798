//! The HTTP face of running nodes: three `decent run` processes on 127.0.0.11-13 (no root),
//! their JSON API, bearer-token writes, /metrics, `decent show`, and the web pages in
//! headless Chromium (with a screenshot kept in target/artifacts).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const TOKEN: &str = "api-test-token";

mod procs;
use procs::{Nodes, decent};

/// Node i's configuration; nodes 1-3 form the mesh (node 1 is its seed), any other stays
/// alone.
fn config(i: u8) -> String {
    let seeds = if i <= 3 {
        "seeds = [\"127.0.0.11\"]"
    } else {
        ""
    };
    format!(
        r#"name = "a{i}"
state_dir = "state{i}"
[[rloc]]
address = "127.0.0.1{i}"
[[database]]
prefix = "10.{i}.0.0/16"
[peer_group]
group = "224.1.1.1"
delivery = "replicate"
{seeds}
[site]
[[site.key]]
key_id = 1
secret = "api-test-key"
[[site.allowed]]
prefix = "10.0.0.0/8"
accept_more_specifics = true
[[site.allowed]]
name = "a*"
[[site.allowed]]
prefix = "172.16.0.0/12"
[api]
listen = "127.0.0.1{i}:8080"
token_file = "token"
"#
    )
}

fn api(i: u8) -> String {
    format!("http://127.0.0.1{i}:8080")
}

/// (HTTP status, body) of a request; `token` adds the bearer header.
fn http(method: &str, url: &str, token: Option<&str>) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let resp = match (method, token) {
        ("GET", Some(t)) => agent
            .get(url)
            .header("Authorization", &format!("Bearer {t}"))
            .call(),
        ("GET", None) => agent.get(url).call(),
        (_, Some(t)) => agent
            .post(url)
            .header("Authorization", &format!("Bearer {t}"))
            .send_empty(),
        (_, None) => agent.post(url).send_empty(),
    };
    match resp {
        Ok(mut r) => (
            r.status().as_u16(),
            r.body_mut().read_to_string().unwrap_or_default(),
        ),
        Err(e) => (0, e.to_string()),
    }
}

fn json(url: &str) -> Value {
    let (code, body) = http("GET", url, None);
    assert_eq!(code, 200, "{url}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{url}: {e}: {body}"))
}

fn start(dir: &Path) -> Nodes {
    std::fs::write(dir.join("token"), format!("{TOKEN}\n")).unwrap();
    let mut nodes = Nodes(Vec::new());
    for i in 1..=3u8 {
        let f = dir.join(format!("a{i}.toml"));
        std::fs::write(&f, config(i)).unwrap();
        let log = std::fs::File::create(dir.join(format!("a{i}.log"))).unwrap();
        nodes.0.push(
            decent()
                .args(["run", "--config"])
                .arg(&f)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
    }
    nodes
}

/// Waits until every node's site cache holds all three EID-prefixes and it has two peers.
fn converge() {
    let start = Instant::now();
    'wait: while start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(200));
        for i in 1..=3u8 {
            let (c, body) = http("GET", &format!("{}/api/v1/status", api(i)), None);
            let Ok(v) = serde_json::from_str::<Value>(&body) else {
                continue 'wait;
            };
            if c != 200 || v["members"] != 2 || v["site_cache_entries"].as_u64() < Some(7) {
                continue 'wait;
            }
        }
        return;
    }
    panic!("the API mesh did not converge in 20 s");
}

#[test]
fn api_views_writes_metrics_show_and_web_pages() {
    let dir = tempfile::tempdir().unwrap();
    let _nodes = start(dir.path());
    converge();
    let a1 = api(1);

    // status
    let s = json(&format!("{a1}/api/v1/status"));
    assert_eq!(s["name"], "a1");
    assert_eq!(s["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(s["peer_group"]["mode"], "push");
    assert_eq!(s["peer_group"]["delivery"], "replicate");
    assert_eq!(s["encryption"], "aes128-gcm");
    assert_eq!(
        s["roles"],
        serde_json::json!(["itr", "etr", "map-server", "map-resolver"])
    );
    assert!(s["counters"]["control"]["map_registers_accepted"].as_u64() > Some(0));

    // database: our own mapping only
    let d = json(&format!("{a1}/api/v1/database"));
    assert_eq!(d.as_array().map(Vec::len), Some(1), "{d}");
    assert_eq!(d[0]["eid"], "[0]10.1.0.0/16");
    assert_eq!(d[0]["rlocs"][0]["address"], "127.0.0.11");

    // site cache: every registration, and the allowed prefix nobody registered
    let sc = json(&format!("{a1}/api/v1/site-cache"));
    let rows = sc.as_array().unwrap();
    let n2 = rows
        .iter()
        .find(|r| r["eid"] == "[0]10.2.0.0/16")
        .expect("n2's prefix");
    assert_eq!(n2["registered"], true);
    assert_eq!(n2["last_registerer"], "127.0.0.12");
    assert_eq!(n2["rlocs"][0]["address"], "127.0.0.12");
    assert_eq!(n2["xtr_id"].as_str().map(str::len), Some(32));
    assert!(n2["ttl"].as_u64().is_some() && n2["first_registered_ago"].as_u64().is_some());
    let free = rows
        .iter()
        .find(|r| r["eid"] == "[0]172.16.0.0/12")
        .expect("the unregistered allowed prefix");
    assert_eq!(free["registered"], false);

    // longest-match lookup, a miss, a bad EID
    let l = json(&format!("{a1}/api/v1/site-cache/10.3.200.1"));
    assert_eq!(l[0]["eid"], "[0]10.3.0.0/16");
    let (c, b) = http("GET", &format!("{a1}/api/v1/site-cache/11.0.0.1"), None);
    assert_eq!(c, 404, "{b}");
    assert!(
        b.contains("no registered EID-prefix holds [0]11.0.0.1"),
        "{b}"
    );
    let (c, b) = http("GET", &format!("{a1}/api/v1/site-cache/not-an-eid"), None);
    assert_eq!(c, 400, "{b}");
    assert!(serde_json::from_str::<Value>(&b).unwrap()["error"].is_string());

    // peers: the two others, with xTR-ID, name and when last heard
    let p = json(&format!("{a1}/api/v1/peers"));
    let rlocs: Vec<&str> = p
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|x| x["rloc"].as_str())
        .collect();
    assert_eq!(rlocs, ["127.0.0.12", "127.0.0.13"]);
    assert_eq!(p[0]["name"], "a2");
    assert_eq!(p[0]["xtr_id"], n2["xtr_id"]);
    assert!(p[0]["last_heard_ago"].as_u64() < Some(20), "{p}");

    // keys: agreed with both peers through RLOC-probes, without key material
    let start = Instant::now();
    let keys = loop {
        let k = json(&format!("{a1}/api/v1/keys"));
        let encap = k
            .as_array()
            .unwrap()
            .iter()
            .filter(|x| x["direction"] == "encap")
            .count();
        if encap == 2 || start.elapsed() > Duration::from_secs(15) {
            break k;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    for k in keys.as_array().unwrap() {
        assert!(k["age_secs"].as_u64() < Some(30), "{k}");
        assert_eq!(k["rekeys"], 0, "the first key is no rekey: {k}");
    }
    let text = keys.to_string();
    assert!(text.contains("\"cipher_suite\":\"aes128-gcm\""), "{text}");
    assert!(text.contains("\"key_id\":1"), "{text}");
    for secretish in ["\"key\":", "secret", "public", "private"] {
        assert!(!text.contains(secretish), "{secretish} in {text}");
    }

    // stats
    let st = json(&format!("{a1}/api/v1/stats"));
    assert!(st["control"]["probes_sent"].as_u64() > Some(0), "{st}");
    assert!(st["data"]["drops"].is_object(), "{st}");

    // writes: no token, a wrong token, the right one
    let clear = format!("{a1}/api/v1/map-cache/clear");
    let (c, b) = http("POST", &clear, None);
    assert_eq!(c, 401, "{b}");
    let (c, b) = http("POST", &clear, Some("wrong"));
    assert_eq!(c, 403, "{b}");
    let (c, b) = http("POST", &clear, Some(TOKEN));
    assert_eq!(c, 200, "{b}");
    assert!(b.contains("\"cleared\""), "{b}");
    let sent_before = json(&format!("{a1}/api/v1/stats"))["control"]["map_registers_sent"]
        .as_u64()
        .unwrap();
    let (c, b) = http("POST", &format!("{a1}/api/v1/register"), Some(TOKEN));
    assert_eq!((c, b.as_str()), (200, "{\"registering\":true}"));
    std::thread::sleep(Duration::from_millis(300));
    let sent_after = json(&format!("{a1}/api/v1/stats"))["control"]["map_registers_sent"]
        .as_u64()
        .unwrap();
    assert!(sent_after > sent_before, "{sent_before} -> {sent_after}");
    let (c, b) = http("GET", &format!("{a1}/api/v1/nothing-here"), None);
    assert_eq!(c, 404, "{b}");
    let (c, _) = http("GET", &format!("{a1}/api/v1/register"), None);
    assert_eq!(c, 405);

    // lig through the API, against the node itself
    let lig = json(&format!("{a1}/api/v1/lig?eid=10.2.0.1"));
    assert_eq!(lig["reply"], true, "{lig}");
    assert_eq!(lig["eid"], "[0]10.2.0.0/16");
    assert_eq!(lig["rlocs"][0]["address"], "127.0.0.12");
    let (c, b) = http("GET", &format!("{a1}/api/v1/lig?eid=%5Bx%5D1.2.3.4"), None);
    assert_eq!(c, 400, "{b}");
    // lig to another Map-Resolver sends Map-Requests where the caller says: token only.
    let other = format!("{a1}/api/v1/lig?eid=10.3.0.1&to=127.0.0.12");
    let (c, b) = http("GET", &other, None);
    assert_eq!(c, 401, "{b}");
    assert!(b.contains("another Map-Resolver"), "{b}");
    let (c, _) = http("GET", &other, Some("wrong"));
    assert_eq!(c, 403);
    let (c, b) = http("GET", &other, Some(TOKEN));
    assert_eq!(c, 200, "{b}");
    assert!(b.contains("\"resolver\":\"127.0.0.12\""), "{b}");
    let (c, _) = http(
        "GET",
        &format!("{a1}/api/v1/lig?eid=10.3.0.1&to=127.0.0.11"),
        None,
    );
    assert_eq!(c, 200, "our own Map-Resolver needs no token");

    idle_and_slow_connections_are_bounded(&a1);
    metrics(&a1);
    show(&a1);
    web_pages(&a1);
}

/// 200 idle connections and 20 slowloris ones (a header never finished): the API holds at
/// most 128, closes the rest at once, closes the held ones within its header timeout, and
/// answers again afterwards.
fn idle_and_slow_connections_are_bounded(base: &str) {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    let addr = base.trim_start_matches("http://").to_string();
    let mut conns: Vec<TcpStream> = (0..220)
        .filter_map(|i| {
            let mut s = TcpStream::connect(&addr).ok()?;
            if i >= 200 {
                let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ");
            }
            Some(s)
        })
        .collect();
    assert_eq!(conns.len(), 220, "the kernel accepts them");
    let closed = |conns: &mut Vec<TcpStream>, wait: Duration| -> usize {
        let mut n = 0;
        for s in conns.iter_mut() {
            s.set_read_timeout(Some(wait)).unwrap();
            let mut b = [0u8; 64];
            // EOF (or a reset): the server closed it. A timeout: still held.
            let held = matches!(s.read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
                || e.kind() == std::io::ErrorKind::TimedOut);
            n += usize::from(!held);
        }
        n
    };
    std::thread::sleep(Duration::from_millis(500));
    let at_once = closed(&mut conns, Duration::from_millis(20));
    assert!(at_once >= 220 - 128, "closed at once: {at_once}");
    std::thread::sleep(Duration::from_secs(6));
    let later = closed(&mut conns, Duration::from_millis(20));
    assert_eq!(
        later, 220,
        "every idle or slow connection closed after the header timeout"
    );
    drop(conns);
    let (c, _) = http("GET", &format!("{base}/api/v1/status"), None);
    assert_eq!(c, 200, "the API answers again");
}

/// /metrics: the text format, and values that match the API's.
fn metrics(base: &str) {
    let (c, m) = http("GET", &format!("{base}/metrics"), None);
    assert_eq!(c, 200);
    for line in m.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let (name, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line}"));
        assert!(name.starts_with("lisp_decent_"), "{line}");
        assert!(value.parse::<f64>().is_ok(), "{line}");
    }
    assert!(m.ends_with("# EOF\n"));
    for want in [
        "lisp_decent_peers 2",
        "lisp_decent_site_cache_entries 7",
        "# TYPE lisp_decent_map_registers counter",
        "lisp_decent_map_registers_rejected_total{reason=\"authentication\"} 0",
        "lisp_decent_crypto_packets_total{operation=\"encrypt\"} 0",
    ] {
        assert!(m.contains(want), "{want} missing:\n{m}");
    }
    let accepted = m
        .lines()
        .find(|l| l.starts_with("lisp_decent_map_registers_total{event=\"accepted\"}"))
        .and_then(|l| l.rsplit_once(' '))
        .and_then(|(_, v)| v.parse::<u64>().ok())
        .unwrap();
    assert!(accepted > 0);
    assert!(
        m.contains("lisp_decent_probe_rtt_seconds{rloc=\"127.0.0.12\"}"),
        "{m}"
    );
    assert!(
        m.contains("lisp_decent_rekeys_total{rloc=\"127.0.0.12\"} 0"),
        "{m}"
    );
    assert!(
        m.contains("lisp_decent_api_requests_total{outcome=\"refused\"} 4"),
        "{m}"
    );
    // The connections over the bound were counted.
    let refused: u64 = m
        .lines()
        .find_map(|l| l.strip_prefix("lisp_decent_api_connections_refused_total{} "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert!(refused >= 220 - 128, "{m}");
}

/// `decent show`: aligned tables and the JSON of the API.
fn show(base: &str) {
    let run = |args: &[&str]| {
        let o = decent()
            .arg("show")
            .args(args)
            .args(["--api", base])
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (code, out, err) = run(&["site-cache"]);
    assert_eq!(code, Some(0), "{err}");
    let header = out.lines().next().unwrap();
    assert!(header.starts_with("EID-prefix"), "{out}");
    let rloc_col = header.find("RLOC").unwrap();
    let row = out
        .lines()
        .find(|l| l.starts_with("[0]10.2.0.0/16"))
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(
        row.get(rloc_col..rloc_col + 10),
        Some("127.0.0.12"),
        "{out}"
    );
    let (_, out, _) = run(&["peers"]);
    assert!(
        out.lines().nth(1).unwrap().starts_with("127.0.0.12  a2"),
        "{out}"
    );
    let (_, out, _) = run(&["status"]);
    assert!(
        out.lines()
            .any(|l| l.starts_with("name") && l.ends_with("a1")),
        "{out}"
    );
    let (_, out, _) = run(&["site-cache", "--eid", "10.3.0.9"]);
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(
        out.lines().nth(1).unwrap().starts_with("[0]10.3.0.0/16"),
        "{out}"
    );
    let (_, out, _) = run(&["database", "--json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["eid"], "[0]10.1.0.0/16");
    let (code, _, err) = run(&["site-cache", "--eid", "11.0.0.1"]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("HTTP 404") && err.contains("11.0.0.1"),
        "{err}"
    );
    let o = decent()
        .args(["show", "status", "--api", "http://127.0.0.1:9"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot reach the node's API"));
}

fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| {
            Command::new(b)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
}

/// Runs headless Chromium on `url` with `args`; its stdout.
fn browse(bin: &str, profile: &Path, args: &[&str], url: &str) -> String {
    let o = Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .stderr(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "{bin} {url} failed");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The pages as a browser renders them: each shows the node's data; the lookup and lig forms
/// work; a screenshot of the site cache is kept.
fn web_pages(base: &str) {
    let Some(bin) = chromium() else {
        assert!(
            std::env::var_os("LISP_DECENT_REQUIRE_CHROMIUM").is_none(),
            "LISP_DECENT_REQUIRE_CHROMIUM is set but there is no chromium"
        );
        eprintln!("skipping the web page checks: no chromium (apt-get install chromium)");
        return;
    };
    let profile = tempfile::tempdir().unwrap();
    let dom = |path: &str| {
        browse(
            bin,
            profile.path(),
            &["--dump-dom"],
            &format!("{base}{path}"),
        )
    };
    let status = dom("/");
    assert!(status.contains("<h1>lisp-decent a1</h1>"), "{status}");
    assert!(status.contains("127.0.0.11"), "{status}");
    assert!(status.contains("http-equiv=\"refresh\""));
    let site = dom("/site-cache");
    assert!(site.contains("Enter EID for Site-Cache lookup"), "{site}");
    for eid in ["[0]10.1.0.0/16", "[0]10.2.0.0/16", "[0]10.3.0.0/16"] {
        assert!(site.contains(eid), "{eid} not on the page:\n{site}");
    }
    let found = dom("/site-cache?eid=10.2.7.7");
    assert!(found.contains("Longest match for 10.2.7.7"), "{found}");
    let missed = dom("/site-cache?eid=%3Cb%3Ebad");
    assert!(missed.contains("id=\"lookup-error\""), "{missed}");
    assert!(
        !missed.contains("<b>bad"),
        "input must be escaped: {missed}"
    );
    let peers = dom("/peers");
    assert!(
        peers.contains("127.0.0.12") && peers.contains("a3"),
        "{peers}"
    );
    let keys = dom("/keys");
    assert!(keys.contains("aes128-gcm"), "{keys}");
    let db = dom("/database");
    assert!(db.contains("[0]10.1.0.0/16"), "{db}");
    let mc = dom("/map-cache");
    assert!(mc.contains("<th>EID-prefix</th>"), "{mc}");
    let lig = dom("/lig?eid=10.3.0.1");
    assert!(lig.contains("id=\"lig-result\""), "{lig}");
    assert!(lig.contains("Mapping entry for EID [0]10.3.0.1"), "{lig}");
    assert!(lig.contains("127.0.0.13"), "{lig}");
    assert!(
        !lig.contains("http-equiv=\"refresh\""),
        "the lig page does not refresh"
    );
    let stats = dom("/stats");
    assert!(stats.contains("control.map_registers_accepted"), "{stats}");

    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/artifacts");
    std::fs::create_dir_all(&shots).unwrap();
    for (name, path) in [
        ("webui-site-cache.png", "/site-cache?eid=10.2.0.1"),
        ("webui-status.png", "/"),
    ] {
        let file = shots.join(name);
        let _ = std::fs::remove_file(&file);
        browse(
            bin,
            profile.path(),
            &[
                &format!("--screenshot={}", file.display()),
                "--window-size=1400,900",
            ],
            &format!("{base}{path}"),
        );
        let png = std::fs::read(&file).unwrap();
        assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "{name}");
    }
}

#[test]
fn bad_api_settings_stop_the_node_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(4).replace("127.0.0.14", "127.0.0.24");
    // The token file is missing.
    let f = dir.path().join("n.toml");
    std::fs::write(&f, &cfg).unwrap();
    let o = decent().args(["run", "--config"]).arg(&f).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("cannot read the API token file"), "{err}");
    // The address is taken.
    std::fs::write(dir.path().join("token"), "t\n").unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.24:8080").unwrap();
    let o = decent().args(["run", "--config"]).arg(&f).output().unwrap();
    drop(taken);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("cannot listen for the API on 127.0.0.24:8080"),
        "{err}"
    );
    // check-config names the field.
    std::fs::write(&f, cfg.replace("127.0.0.24:8080", "everywhere")).unwrap();
    let o = decent().args(["check-config"]).arg(&f).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("api.listen"));
}

#[test]
fn json_logs_carry_one_line_per_control_message_at_debug_level() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), "t\n").unwrap();
    let f = dir.path().join("n.toml");
    std::fs::write(&f, config(5).replace("127.0.0.15", "127.0.0.25")).unwrap();
    let log = dir.path().join("n.log");
    let child = decent()
        .args([
            "--log-format",
            "json",
            "--log",
            "info,lisp_decent::control=debug",
        ])
        .args(["run", "--config"])
        .arg(&f)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let _nodes = Nodes(vec![child]);
    let start = Instant::now();
    let mut lines: Vec<Value> = Vec::new();
    while start.elapsed() < Duration::from_secs(10) {
        let _ = decent()
            .args([
                "lig",
                "10.5.0.1",
                "--to",
                "127.0.0.25",
                "--count",
                "1",
                "--timeout",
                "0.5",
            ])
            .output();
        let text = std::fs::read_to_string(&log).unwrap();
        lines = text
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        if lines.iter().any(|l| {
            l["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("sent Map-Reply"))
        }) {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let control: Vec<&str> = lines
        .iter()
        .filter(|l| l["target"] == "lisp_decent::control")
        .filter_map(|l| l["fields"]["message"].as_str())
        .collect();
    let ecm = control
        .iter()
        .find(|m| m.starts_with("received ECM"))
        .unwrap_or_else(|| panic!("{control:#?}"));
    assert!(ecm.contains("Map-Request") && !ecm.contains('\n'), "{ecm}");
    let reply = control
        .iter()
        .find(|m| m.starts_with("sent Map-Reply"))
        .unwrap_or_else(|| panic!("{control:#?}"));
    assert!(
        reply.contains("[0]10.5.0.0/16") && reply.contains("127.0.0.25"),
        "{reply}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l["level"] == "INFO" && l["fields"]["message"] == "node started"),
        "the other logs stay at info"
    );
}
