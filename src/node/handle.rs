//! How the API talks to a running node: a query goes over a channel to the node's task,
//! which answers from its own state between packets (no lock on the data path).

use std::net::IpAddr;

use tokio::sync::{mpsc, oneshot};

use super::view::{
    DatabaseView, KeyView, MapCacheView, MetricsView, PeerView, SiteView, Stats, Status,
};

/// What can be asked of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Query {
    Status,
    Database,
    SiteCache,
    /// Longest match of an address among the registered EID-prefixes of an Instance-ID.
    SiteLookup {
        iid: u32,
        addr: IpAddr,
    },
    MapCache,
    Peers,
    Keys,
    Stats,
    Metrics,
    /// Forget every cached mapping.
    ClearMapCache,
    /// Send a round of Map-Registers now.
    RegisterNow,
}

/// The node's answer to a [`Query`].
#[derive(Debug, Clone)]
pub enum Answer {
    Status(Box<Status>),
    Database(Vec<DatabaseView>),
    SiteCache(Vec<SiteView>),
    /// `None`: no registered prefix holds the address.
    SiteLookup(Option<Vec<SiteView>>),
    MapCache(Vec<MapCacheView>),
    Peers(Vec<PeerView>),
    Keys(Vec<KeyView>),
    Stats(Box<Stats>),
    Metrics(Box<MetricsView>),
    /// How many map-cache entries were removed.
    Cleared(usize),
    Registering,
}

/// A query and where its answer goes.
pub struct Request {
    pub query: Query,
    pub reply: oneshot::Sender<Answer>,
}

/// The node stopped (or is stopping) and answers nothing more.
#[derive(Debug, thiserror::Error)]
#[error("the node is not running")]
pub struct NodeGone;

/// A cheap, cloneable way to ask a running node.
#[derive(Debug, Clone)]
pub struct NodeHandle {
    tx: mpsc::Sender<Request>,
}

/// The requests a node reads in its loop.
pub type Requests = mpsc::Receiver<Request>;

/// A handle and the receiving end to give to [`super::run`].
pub fn channel() -> (NodeHandle, Requests) {
    let (tx, rx) = mpsc::channel(64);
    (NodeHandle { tx }, rx)
}

impl NodeHandle {
    pub async fn ask(&self, query: Query) -> Result<Answer, NodeGone> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request { query, reply })
            .await
            .map_err(|_| NodeGone)?;
        rx.await.map_err(|_| NodeGone)
    }
}
