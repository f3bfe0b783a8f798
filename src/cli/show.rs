//! `decent show {status,database,site-cache,map-cache,peers,keys,stats}`: a running node's
//! state from its HTTP API, as aligned tables (or the API's JSON with `--json`).

use anyhow::{Context, bail};
use serde_json::Value;

use crate::api::tables;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum View {
    Status,
    Database,
    SiteCache,
    MapCache,
    Peers,
    Keys,
    Stats,
}

impl View {
    fn path(self) -> &'static str {
        match self {
            View::Status => "status",
            View::Database => "database",
            View::SiteCache => "site-cache",
            View::MapCache => "map-cache",
            View::Peers => "peers",
            View::Keys => "keys",
            View::Stats => "stats",
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// What to show.
    #[arg(value_enum)]
    pub view: View,
    /// site-cache only: the longest match of this EID (`10.1.2.3` or `[iid]address`).
    #[arg(long)]
    pub eid: Option<String>,
    /// The node's API.
    #[arg(long, default_value = "http://127.0.0.1:8080", env = "DECENT_API")]
    pub api: String,
    /// The API's JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// GETs `path` from the API; an error answer becomes an error with the API's message.
pub fn fetch(api: &str, path: &str) -> anyhow::Result<Value> {
    let url = format!("{}{path}", api.trim_end_matches('/'));
    let mut resp = ureq::get(&url)
        .config()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(10)))
        .build()
        .call()
        .with_context(|| format!("cannot reach the node's API at {url}"))?;
    let status = resp.status();
    let body = resp
        .body_mut()
        .read_to_string()
        .with_context(|| format!("cannot read the answer of {url}"))?;
    let v: Value = serde_json::from_str(&body)
        .with_context(|| format!("{url} did not answer JSON (HTTP {status})"))?;
    if !status.is_success() {
        bail!(
            "{url}: HTTP {status}: {}",
            v["error"].as_str().unwrap_or("error")
        );
    }
    Ok(v)
}

/// Percent-encodes what a path segment cannot hold as is.
fn segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'_' | b':' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub fn run(args: &ShowArgs) -> anyhow::Result<bool> {
    let path = match (&args.eid, args.view) {
        (Some(e), View::SiteCache) => format!("/api/v1/site-cache/{}", segment(e)),
        (Some(_), _) => bail!("--eid goes with site-cache only"),
        (None, v) => format!("/api/v1/{}", v.path()),
    };
    let v = fetch(&args.api, &path)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(true);
    }
    match tables::table(args.view.path(), &v) {
        Some(t) => print!("{}", tables::aligned(&t)),
        None => {
            let pairs = tables::pairs(&v);
            let t = tables::Table {
                headers: vec!["Field", "Value"],
                rows: pairs.into_iter().map(|(k, v)| vec![k, v]).collect(),
            };
            print!("{}", tables::aligned(&t));
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eids_are_encoded_for_the_path() {
        assert_eq!(segment("[1]10.1.2.3"), "%5B1%5D10.1.2.3");
        assert_eq!(segment("fd00::1"), "fd00::1");
    }
}
