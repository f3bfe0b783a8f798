//! The node's HTTP face (axum): a JSON API under `/api/v1`, server-rendered web pages at `/`
//! and Prometheus metrics at `/metrics`. Everything is read from the running node through a
//! [`NodeHandle`]; nothing here touches the protocol state directly.

pub mod metrics;
pub mod pages;
pub mod tables;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query as QueryParams, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::{info, warn};

use crate::node::handle::{Answer, NodeHandle, Query};
use crate::node::lig::{self, LigResult};

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    pub node: NodeHandle,
    /// The bearer token write operations need; `None`: writes are refused.
    pub token: Option<Arc<str>>,
    /// Where the lig form sends its Map-Requests (the node's own Map-Resolver).
    pub resolver: SocketAddr,
    /// The node's name (fixed by its configuration), for the page titles.
    pub name: Arc<str>,
    pub counters: Arc<metrics::HttpCounters>,
}

/// An error answered as JSON `{"error": message}` with its status code.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(json!({ "error": self.message }))).into_response()
    }
}

/// Reads the bearer token (the first line of the file, trimmed); an empty file is an error,
/// so a mistake never leaves writes open to an empty token.
pub fn read_token(path: &std::path::Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read the API token file {}: {e}", path.display()))?;
    let token = text.lines().next().unwrap_or("").trim().to_string();
    if token.is_empty() {
        anyhow::bail!("the API token file {} is empty", path.display());
    }
    Ok(token)
}

/// Compares in time independent of where the first difference is.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl ApiState {
    pub(crate) async fn ask(&self, q: Query) -> Result<Answer, ApiError> {
        self.node
            .ask(q)
            .await
            .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))
    }

    fn authorize(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let Some(token) = &self.token else {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "write operations are disabled: set api.token_file in the configuration",
            ));
        };
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        match given {
            Some(g) if same(g.trim().as_bytes(), token.as_bytes()) => Ok(()),
            Some(_) => Err(ApiError::new(StatusCode::FORBIDDEN, "wrong bearer token")),
            None => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "this operation needs an Authorization: Bearer <token> header",
            )),
        }
    }
}

/// The JSON of a list or object answer.
fn answer_json(a: Answer) -> Value {
    let v = match a {
        Answer::Status(s) => serde_json::to_value(s),
        Answer::Database(v) => serde_json::to_value(v),
        Answer::SiteCache(v) => serde_json::to_value(v),
        Answer::SiteLookup(v) => serde_json::to_value(v),
        Answer::MapCache(v) => serde_json::to_value(v),
        Answer::Peers(v) => serde_json::to_value(v),
        Answer::Keys(v) => serde_json::to_value(v),
        Answer::Stats(v) => serde_json::to_value(v),
        Answer::Metrics(v) => serde_json::to_value(v),
        Answer::Cleared(n) => Ok(json!({ "cleared": n })),
        Answer::Registering => Ok(json!({ "registering": true })),
    };
    v.unwrap_or_default()
}

/// The query behind each read-only view, by its path name.
fn view_query(name: &str) -> Option<Query> {
    Some(match name {
        "status" => Query::Status,
        "database" => Query::Database,
        "site-cache" => Query::SiteCache,
        "map-cache" => Query::MapCache,
        "peers" => Query::Peers,
        "keys" => Query::Keys,
        "stats" => Query::Stats,
        _ => return None,
    })
}

/// A view's JSON, as the API and the pages read it.
pub(crate) async fn view_json(st: &ApiState, name: &str) -> Result<Value, ApiError> {
    let q = view_query(name)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no view named \"{name}\"")))?;
    Ok(answer_json(st.ask(q).await?))
}

async fn get_view(State(st): State<ApiState>, Path(name): Path<String>) -> Response {
    match view_json(&st, &name).await {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

/// Parses `address`, `[iid]address` or a prefix `address/len` (its address is looked up).
pub fn parse_lookup(text: &str) -> Result<(u32, IpAddr), String> {
    let text = text.trim();
    let (iid, rest) = match text.strip_prefix('[').and_then(|r| r.split_once(']')) {
        Some((i, r)) => (
            i.parse::<u32>()
                .map_err(|_| format!("bad Instance-ID in \"{text}\""))?,
            r,
        ),
        None => (0, text),
    };
    let addr = rest.split('/').next().unwrap_or("");
    let addr = addr
        .parse::<IpAddr>()
        .map_err(|_| format!("\"{text}\" is not an EID: expected an address or [iid]address"))?;
    Ok((iid, addr))
}

pub(crate) async fn site_lookup(
    st: &ApiState,
    text: &str,
) -> Result<Vec<crate::node::view::SiteView>, ApiError> {
    let (iid, addr) = parse_lookup(text).map_err(|m| ApiError::new(StatusCode::BAD_REQUEST, m))?;
    match st.ask(Query::SiteLookup { iid, addr }).await? {
        Answer::SiteLookup(Some(v)) => Ok(v),
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no registered EID-prefix holds [{iid}]{addr}"),
        )),
    }
}

async fn get_site_lookup(State(st): State<ApiState>, Path(eid): Path<String>) -> Response {
    match site_lookup(&st, &eid).await {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn write(st: ApiState, headers: HeaderMap, q: Query) -> Response {
    if let Err(e) = st.authorize(&headers) {
        return e.into_response();
    }
    match st.ask(q).await {
        Ok(a) => axum::Json(answer_json(a)).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn clear_map_cache(State(st): State<ApiState>, headers: HeaderMap) -> Response {
    write(st, headers, Query::ClearMapCache).await
}

async fn register_now(State(st): State<ApiState>, headers: HeaderMap) -> Response {
    write(st, headers, Query::RegisterNow).await
}

/// `?eid=...&to=...` of the lig form and `GET /api/v1/lig`.
#[derive(Debug, Deserialize)]
pub struct LigParams {
    pub eid: Option<String>,
    pub to: Option<String>,
}

/// Runs lig (blocking sockets, on the blocking pool) against `to` or the node itself. Asking
/// another Map-Resolver than our own sends Map-Requests wherever the caller says, so it
/// needs the bearer token (`headers`), like a write.
pub(crate) async fn run_lig(
    st: &ApiState,
    p: &LigParams,
    headers: &HeaderMap,
) -> Result<LigResult, ApiError> {
    let bad = |m: String| ApiError::new(StatusCode::BAD_REQUEST, m);
    let text = p.eid.clone().unwrap_or_default();
    let (iid, eid) = lig::parse_eid(&text, None).map_err(|e| bad(format!("{e:#}")))?;
    let target = match p.to.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        Some(t) => lig::resolve_target(t, st.resolver.port()).map_err(|e| bad(format!("{e:#}")))?,
        None => st.resolver,
    };
    if target != st.resolver {
        st.authorize(headers).map_err(|e| {
            ApiError::new(
                e.status,
                format!(
                    "lig to another Map-Resolver than this node's: {}",
                    e.message
                ),
            )
        })?;
    }
    tokio::task::spawn_blocking(move || lig::lig(iid, &eid, target, 2, Duration::from_secs(1)))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| ApiError::new(StatusCode::BAD_GATEWAY, format!("{e:#}")))
}

async fn get_lig(
    State(st): State<ApiState>,
    headers: HeaderMap,
    QueryParams(p): QueryParams<LigParams>,
) -> Response {
    match run_lig(&st, &p, &headers).await {
        Ok(r) => axum::Json(r).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn not_found(uri: axum::http::Uri) -> Response {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("no such path: {}", uri.path()),
    )
    .into_response()
}

/// Every route.
pub fn router(st: ApiState) -> Router {
    Router::new()
        .route("/api/v1/site-cache/{eid}", get(get_site_lookup))
        .route("/api/v1/map-cache/clear", post(clear_map_cache))
        .route("/api/v1/register", post(register_now))
        .route("/api/v1/lig", get(get_lig))
        .route("/api/v1/{view}", get(get_view))
        .route("/metrics", get(metrics::handler))
        .merge(pages::routes())
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            st.counters.clone(),
            metrics::count,
        ))
        .with_state(st)
}

/// Connections the API holds at once; more are closed as soon as they are accepted.
pub const MAX_CONNECTIONS: usize = 128;
/// A request's header must be in within this; the connection is closed otherwise
/// (slowloris), and a connection idle between requests is closed after it too.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// No connection is held longer than this, busy or not.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);

/// Serves the API on `listen` until the task is dropped: at most [`MAX_CONNECTIONS`] at a
/// time, each closed when its request header is slower than [`HEADER_TIMEOUT`] and after
/// [`CONNECTION_LIFETIME`] in any case, so idle and slow clients cost a bounded amount.
pub async fn serve(listen: SocketAddr, st: ApiState) -> anyhow::Result<()> {
    let l = tokio::net::TcpListener::bind(listen).await.map_err(|e| {
        anyhow::anyhow!("cannot listen for the API on {listen}: {e} (set [api] listen, or \"off\")")
    })?;
    info!(%listen, writes = st.token.is_some(), "API and web UI listening");
    let counters = st.counters.clone();
    let app = router(st);
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    tokio::spawn(async move {
        loop {
            let sock = match l.accept().await {
                Ok((sock, _)) => sock,
                Err(e) => {
                    warn!("API accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                counters.connection_refused();
                drop(sock);
                continue;
            };
            let svc = hyper_util::service::TowerToHyperService::new(app.clone());
            tokio::spawn(async move {
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .serve_connection(hyper_util::rt::TokioIo::new(sock), svc);
                let _ = tokio::time::timeout(CONNECTION_LIFETIME, conn).await;
                drop(permit);
            });
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_and_tokens() {
        assert_eq!(
            parse_lookup("10.1.2.3"),
            Ok((0, "10.1.2.3".parse().unwrap()))
        );
        assert_eq!(
            parse_lookup(" [7]fd00::1 "),
            Ok((7, "fd00::1".parse().unwrap()))
        );
        assert_eq!(
            parse_lookup("[0]10.1.0.0/16"),
            Ok((0, "10.1.0.0".parse().unwrap()))
        );
        assert!(parse_lookup("[x]10.1.2.3").is_err());
        assert!(parse_lookup("nonsense").is_err());
        assert!(parse_lookup("").is_err());
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"));
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("t");
        std::fs::write(&f, "  s3cret \nsecond line\n").unwrap();
        assert_eq!(read_token(&f).unwrap(), "s3cret");
        std::fs::write(&f, "\n").unwrap();
        assert!(read_token(&f).unwrap_err().to_string().contains("empty"));
        assert!(read_token(&dir.path().join("missing")).is_err());
    }
}
