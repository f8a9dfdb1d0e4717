//! Clients of the control plane that follow "not leader" hints and retry with backoff, so no
//! caller has to.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Response, Status};

use crate::control::control_service_client::ControlServiceClient;
use crate::data::data_service_client::DataServiceClient;

/// gRPC metadata key of the leader hint (`id@host:port`), as set by `chronik_shared::error`.
const LEADER_HEADER: &str = "chronik-leader";

/// Lazily connected channel to `addr` (`host:port`).
pub fn channel(addr: &str) -> Result<Channel, Status> {
    Ok(Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| Status::invalid_argument(format!("bad address {addr}: {e}")))?
        .connect_timeout(Duration::from_secs(2))
        .tcp_nodelay(true)
        // A connection whose packets were dropped for a while (a node cut off) sits in TCP's
        // retransmission backoff for many seconds after the network heals, and every call on
        // it waits: a ping unanswered for 2 s while calls are open closes it, and the next
        // call connects afresh.
        .http2_keep_alive_interval(Duration::from_secs(1))
        .keep_alive_timeout(Duration::from_secs(2))
        .connect_lazy())
}

pub fn data_client(addr: &str, max_message_size: usize) -> Result<DataServiceClient<Channel>, Status> {
    Ok(DataServiceClient::new(channel(addr)?)
        .max_decoding_message_size(max_message_size)
        .max_encoding_message_size(max_message_size))
}

/// A control-plane client over a set of seed addresses.
#[derive(Clone)]
pub struct ControlClient {
    seeds: Arc<Vec<String>>,
    current: Arc<Mutex<Option<(String, Channel)>>>,
    timeout: Duration,
}

impl ControlClient {
    pub fn new(seeds: Vec<String>, timeout: Duration) -> Self {
        Self { seeds: Arc::new(seeds), current: Arc::default(), timeout }
    }

    fn pick(&self, attempt: usize) -> Result<(String, Channel), Status> {
        let mut cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = cur.as_ref() {
            return Ok(c.clone());
        }
        if self.seeds.is_empty() {
            return Err(Status::failed_precondition("no control-plane seed nodes configured (cluster.seed_nodes)"));
        }
        let addr = self.seeds[attempt % self.seeds.len()].clone();
        let ch = channel(&addr)?;
        *cur = Some((addr.clone(), ch.clone()));
        Ok((addr, ch))
    }

    fn switch(&self, to: Option<String>) {
        let mut cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
        *cur = to.and_then(|a| channel(&a).ok().map(|c| (a, c)));
    }

    /// Calls `f` on the current leader, following leader hints and retrying unavailable
    /// answers with exponential backoff until the client's timeout.
    pub async fn call<T, F, Fut>(&self, f: F) -> Result<T, Status>
    where
        F: Fn(ControlServiceClient<Channel>) -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        let deadline = Instant::now() + self.timeout;
        let mut backoff = Duration::from_millis(20);
        let mut attempt = 0usize;
        loop {
            let (addr, ch) = self.pick(attempt)?;
            let client = ControlServiceClient::new(ch).max_decoding_message_size(64 << 20);
            match f(client).await {
                Ok(r) => return Ok(r.into_inner()),
                Err(s) if retryable(&s) => {
                    let hint = s
                        .metadata()
                        .get(LEADER_HEADER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.split_once('@').map(|(_, a)| a.to_string()))
                        .filter(|a| *a != addr);
                    let followed = hint.is_some();
                    if !followed {
                        attempt += 1;
                    }
                    self.switch(hint);
                    if Instant::now() >= deadline {
                        return Err(s);
                    }
                    if !followed {
                        tracing::debug!(target: "chronik_cluster", "control plane at {addr} unavailable ({}); retrying in {backoff:?}", s.message());
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                    }
                }
                Err(s) => return Err(s),
            }
        }
    }
}

/// Worth trying again: no leader yet, a leader elsewhere, or a transient condition the server
/// labelled `Unavailable` (e.g. a membership change still in progress).
fn retryable(s: &Status) -> bool {
    match s.metadata().get("chronik-error-code").and_then(|v| v.to_str().ok()) {
        Some(code) => matches!(code, "NotLeader" | "NoLeader" | "Unavailable"),
        None => matches!(s.code(), Code::Unavailable | Code::Unknown | Code::Cancelled),
    }
}
