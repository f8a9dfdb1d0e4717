//! The Chronik gateway: speaks the Kafka protocol to clients and forwards to the data plane
//! (design §6). It keeps no data: partition leadership, topics and data-node addresses come
//! from the control plane, records go to and come from the data nodes.
//!
//! - `server.rs`: the Kafka listener, one task per connection; pipelined requests are handled
//!   concurrently and answered in order; bad input closes the connection with a logged reason.
//! - `frame.rs`: the 4-byte size framing, read without trusting the declared size.
//! - `response_frame.rs`: responses encoded as pieces, fetched records passed through uncopied.
//! - `guard.rs`: the array-length check run before kafka-protocol decodes a request.
//! - `router.rs`: the one table of Kafka APIs (key → versions → handler), with request metrics.
//! - `handlers/`: one file per Kafka API.
//! - `leader.rs`: calling a partition's data-plane leader, following leader changes.
//! - `metadata_cache.rs`: the copy of the control plane's topics, leaders and nodes.
//! - `registration.rs`: RegisterNode and NodeHeartbeat with the control plane.
//! - `context.rs`: what handlers share (config, clients, cache).
//! - `error.rs`: [`GatewayError`], why a gateway could not start.
//!
//! ```no_run
//! # async fn run(config: chronik_shared::config::ChronikConfig) -> Result<(), chronik_gateway::GatewayError> {
//! let gateway = chronik_gateway::Gateway::builder(config).start().await?;
//! println!("Kafka clients connect to {}", gateway.kafka_addr());
//! gateway.shutdown().await;
//! # Ok(()) }
//! ```

mod context;
mod data_conn;
mod error;
mod frame;
/// Entry points of the fuzz targets in `fuzz/`; not an API.
#[doc(hidden)]
pub mod fuzzing;
mod guard;
mod handlers;
mod leader;
mod metadata_cache;
mod registration;
mod response_frame;
mod router;
mod server;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chronik_proto::client::ControlClient;
use chronik_proto::data::data_service_server::DataService;
use chronik_shared::config::ChronikConfig;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use error::GatewayError;

use context::{Ctx, HostPort};
use data_conn::DataClients;
use metadata_cache::MetadataCache;
use registration::Membership;

/// A running gateway.
pub struct Gateway {
    kafka_addr: SocketAddr,
    advertised: String,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<()>,
    background: Vec<JoinHandle<()>>,
    cache: Arc<MetadataCache>,
}

/// Configures a [`Gateway`] before it starts.
pub struct GatewayBuilder {
    config: ChronikConfig,
    kafka_listener: Option<TcpListener>,
    local_data_node: Option<(String, Arc<dyn DataService>)>,
}

impl Gateway {
    pub fn builder(config: ChronikConfig) -> GatewayBuilder {
        GatewayBuilder { config, kafka_listener: None, local_data_node: None }
    }

    /// The address the Kafka listener is bound to.
    pub fn kafka_addr(&self) -> SocketAddr {
        self.kafka_addr
    }

    /// The `host:port` this gateway tells clients (and the control plane) to use.
    pub fn advertised_kafka_addr(&self) -> &str {
        &self.advertised
    }

    /// How old this gateway's copy of the cluster metadata is (None before the first fetch).
    /// It refreshes every few seconds; a copy much older means the control plane is unreachable.
    pub fn metadata_age(&self) -> Option<Duration> {
        self.cache.view().age()
    }

    /// Stops accepting, closes every connection and stops talking to the control plane.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.server.await;
        for task in &self.background {
            task.abort();
        }
        for task in self.background {
            let _ = task.await;
        }
        tracing::info!(target: "chronik_gateway", "gateway on {} stopped", self.kafka_addr);
    }
}

impl GatewayBuilder {
    /// Serves Kafka clients on this listener instead of binding `listeners.kafka` (tests bind
    /// port 0; standalone binds early to report port clashes before starting anything).
    pub fn kafka_listener(mut self, listener: TcpListener) -> Self {
        self.kafka_listener = Some(listener);
        self
    }

    /// Calls the data node advertised as `addr` in-process, through `service`, instead of over
    /// gRPC: standalone, where it runs in the same process.
    pub fn local_data_node(mut self, addr: String, service: Arc<dyn DataService>) -> Self {
        self.local_data_node = Some((addr, service));
        self
    }

    /// Binds the listener, starts serving, and registers with the control plane in the
    /// background (start never waits for the control plane).
    pub async fn start(self) -> Result<Gateway, GatewayError> {
        let mut config = self.config;
        let broker_id = i32::try_from(config.node.id).map_err(|_| GatewayError::NodeId(config.node.id))?;
        let seeds: Vec<String> = config.cluster.seed_nodes.iter().map(|s| s.addr()).collect();
        if seeds.is_empty() {
            return Err(GatewayError::NoControlPlane);
        }
        let listener = match self.kafka_listener {
            Some(l) => l,
            None => {
                let addr = config.listeners.kafka;
                TcpListener::bind(addr).await.map_err(|source| GatewayError::Bind { addr, source })?
            }
        };
        let kafka_addr = listener.local_addr().map_err(GatewayError::ListenerAddr)?;
        // Advertise the port actually bound (it differs from the config when that says 0).
        config.listeners.kafka = kafka_addr;
        let advertised = config.listeners.advertised_kafka_addr();
        let advertised_hp = HostPort::parse(&advertised).ok_or_else(|| GatewayError::Advertised(advertised.clone()))?;

        let timeout = Duration::from_millis(config.cluster.network.request_timeout_ms.max(100));
        let control = ControlClient::new(seeds, timeout);
        let cache = MetadataCache::new(control.clone());
        let max_message = usize::try_from(config.cluster.network.max_message_size).unwrap_or(usize::MAX);
        let membership = Membership {
            control: control.clone(),
            node_id: config.node.id,
            kafka_addr: advertised.clone(),
            rack: config.node.rack.clone().unwrap_or_default(),
            http_addr: config.listeners.advertised_http_addr(),
            interval: Duration::from_millis(config.cluster.heartbeat.interval_ms.max(10)),
        };
        let queued_capacity = usize::try_from(config.kafka.queued_max_request_bytes)
            .unwrap_or(usize::MAX)
            .min(tokio::sync::Semaphore::MAX_PERMITS)
            .min(u32::MAX as usize);
        let ctx = Arc::new(Ctx {
            config,
            broker_id,
            advertised: advertised_hp,
            control,
            cache: cache.clone(),
            data: DataClients::new(max_message, self.local_data_node),
            queued_bytes: Arc::new(tokio::sync::Semaphore::new(queued_capacity)),
            queued_capacity,
        });

        chronik_shared::metrics::init();
        let (shutdown, shutdown_rx) = watch::channel(false);
        let server = tokio::spawn(server::serve(listener, ctx, shutdown_rx));
        let background = vec![tokio::spawn(membership.run()), tokio::spawn(cache.clone().run_refresher())];
        tracing::info!(target: "chronik_gateway", "gateway {broker_id} serving Kafka on {kafka_addr} (advertised as {advertised})");
        Ok(Gateway { kafka_addr, advertised, shutdown, server, background, cache })
    }
}
