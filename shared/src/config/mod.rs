//! Chronik's configuration: the one place that owns the config file format (design §7).
//!
//! This folder owns:
//! - `mod.rs`: the serde types ([`ChronikConfig`] and its sections), their defaults, and small
//!   helpers on them (advertised addresses, `id@host:port` seed entries, WAL profiles).
//! - `load.rs`: the layered loading pipeline, defaults → TOML file → `CHRONIK_*` environment
//!   variables → command-line overrides ([`ConfigSources`], [`ChronikConfig::load`]). Every layer is
//!   merged into one `toml::Table` before it is deserialised, and unknown keys are rejected with
//!   their full dotted path and where they came from.
//! - `validate.rs`: [`ChronikConfig::validate`], the cross-field rules (heartbeat below election
//!   timeout, `max_message_size` above `max_snapshot_chunk_size`, ...), returning warnings.
//! - `error.rs`: [`ConfigError`], whose message always names the key (or file) and how to fix it.
//! - `tests.rs`: the tests, including one that loads every `deploy/config/*.toml` example.
//!
//! Key names follow the operations guide (`seed/raft-troubleshooting-guide.md`): what it tells an
//! operator to put in `/etc/chronik/chronik.toml` is accepted here with the same meaning.

mod error;
mod load;
mod validate;

#[cfg(test)]
mod tests;

pub use error::{ConfigError, ConfigOrigin};
pub use load::{ConfigSources, DEFAULT_CONFIG_PATH};

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The whole configuration of one `chronik-server` process, whatever its role.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChronikConfig {
    pub node: NodeConfig,
    pub listeners: ListenersConfig,
    pub cluster: ClusterConfig,
    pub wal: WalConfig,
    pub kafka: KafkaConfig,
    pub auth: AuthConfig,
    pub log: LogConfig,
}

/// `[node]`: who this process is and where it keeps its data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// Unique across the whole cluster, all roles; must be > 0.
    pub id: u64,
    /// Root of everything this node stores (`wal/`, state machine, `admin.token`, ...).
    pub data_dir: PathBuf,
    /// Optional failure domain, used to spread replicas.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rack: Option<String>,
    /// Data nodes only: on SIGTERM, move every replica to the other data nodes before
    /// exiting (a second signal stops waiting). For nodes added to scale out and stopped to
    /// scale in; a node that restarts keeps its replicas, so leave it off for those.
    pub decommission_on_shutdown: bool,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self { id: 1, data_dir: PathBuf::from("./chronik-data"), rack: None, decommission_on_shutdown: false }
    }
}

/// `[listeners]`: bind addresses (a role opens only the ones it uses) and what is advertised.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ListenersConfig {
    /// Kafka protocol (gateway).
    pub kafka: SocketAddr,
    /// Health, metrics and admin REST (every role).
    pub http: SocketAddr,
    /// Raft and the control/data gRPC services (control and data roles).
    pub grpc: SocketAddr,
    /// `host:port` clients are told to connect to; defaults to the Kafka bind address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advertised_kafka: Option<String>,
    /// `host:port` peers are told to connect to; defaults to the gRPC bind address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advertised_grpc: Option<String>,
    /// `host:port` of this node's HTTP API as other nodes and `chronik-server doctor` reach
    /// it; defaults to the HTTP bind address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advertised_http: Option<String>,
}

impl Default for ListenersConfig {
    fn default() -> Self {
        let any = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        Self {
            kafka: SocketAddr::new(any, 9092),
            http: SocketAddr::new(any, 8080),
            grpc: SocketAddr::new(any, 9093),
            advertised_kafka: None,
            advertised_grpc: None,
            advertised_http: None,
        }
    }
}

impl ListenersConfig {
    /// The `host:port` Kafka clients should use: `advertised_kafka`, else the Kafka bind address
    /// with a wildcard IP (`0.0.0.0`, `::`) replaced by this machine's hostname (or `127.0.0.1`).
    pub fn advertised_kafka_addr(&self) -> String {
        advertised_or_bind(self.advertised_kafka.as_deref(), self.kafka)
    }

    /// The `host:port` Raft/gRPC peers should use: `advertised_grpc`, else the gRPC bind address
    /// with a wildcard IP replaced by this machine's hostname (or `127.0.0.1`).
    pub fn advertised_grpc_addr(&self) -> String {
        advertised_or_bind(self.advertised_grpc.as_deref(), self.grpc)
    }

    /// The `host:port` of this node's HTTP API for other nodes: `advertised_http`, else the
    /// HTTP bind address with a wildcard IP replaced by this machine's hostname.
    pub fn advertised_http_addr(&self) -> String {
        advertised_or_bind(self.advertised_http.as_deref(), self.http)
    }
}

fn advertised_or_bind(advertised: Option<&str>, bind: SocketAddr) -> String {
    if let Some(addr) = advertised.map(str::trim).filter(|a| !a.is_empty()) {
        return addr.to_string();
    }
    if bind.ip().is_unspecified() { format!("{}:{}", local_hostname(), bind.port()) } else { bind.to_string() }
}

/// This machine's hostname, read from the kernel; `127.0.0.1` when it cannot be found.
fn local_hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_string())
        .chain(std::env::var("HOSTNAME").ok().map(|s| s.trim().to_string()))
        .find(|h| !h.is_empty() && !h.contains(char::is_whitespace))
        .unwrap_or_else(|| "127.0.0.1".to_string())
}

/// `[cluster]`: how this node finds and talks to the rest of the cluster.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// Control-plane nodes as `id@host:port`; empty bootstraps a new cluster.
    pub seed_nodes: Vec<SeedNode>,
    pub raft: RaftConfig,
    pub network: NetworkConfig,
    pub heartbeat: HeartbeatConfig,
}

/// `[cluster.raft]`: Raft tuning, shared by the `__meta` group and every partition group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RaftConfig {
    pub election_timeout_ms: u64,
    /// Must be below `election_timeout_ms` (a warning above a tenth of it).
    pub heartbeat_interval_ms: u64,
    /// Most entries sent in one AppendEntries.
    pub max_payload_entries: u64,
    /// Most AppendEntries in flight per follower when pipelining.
    pub max_in_flight: u64,
    /// Streams AppendEntries to each follower without waiting for each answer. Off by default
    /// until measured (docs/performance.md); one append at a time batches what arrives meanwhile.
    pub enable_pipeline: bool,
    /// A partition group with no writes for this long, fully replicated, goes quiet: no
    /// heartbeats, no election timers; one ping per pair of data nodes watches for failures
    /// instead. 0 keeps every group heartbeating.
    pub quiesce_after_ms: u64,
    /// Log entries since the last snapshot that trigger a new one.
    pub snapshot_log_size_threshold: u64,
    /// Bytes per InstallSnapshot chunk; must be below `cluster.network.max_message_size`.
    pub max_snapshot_chunk_size: u64,
    /// A follower whose state has been stale this long leaves the ISR and is logged as lagging
    /// (Kafka's `replica.lag.time.max.ms`).
    pub replica_lag_time_max_ms: u64,
}

impl Default for RaftConfig {
    fn default() -> Self {
        Self {
            election_timeout_ms: 1000,
            heartbeat_interval_ms: 100,
            max_payload_entries: 1000,
            max_in_flight: 1000,
            enable_pipeline: false,
            quiesce_after_ms: 5000,
            snapshot_log_size_threshold: 100_000,
            max_snapshot_chunk_size: 1_048_576,
            replica_lag_time_max_ms: 10_000,
        }
    }
}

/// `[cluster.network]`: the gRPC transport between nodes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkConfig {
    pub request_timeout_ms: u64,
    pub install_snapshot_timeout_secs: u64,
    /// Largest gRPC message, bytes; must exceed `cluster.raft.max_snapshot_chunk_size`.
    pub max_message_size: u64,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        Self { request_timeout_ms: 10_000, install_snapshot_timeout_secs: 600, max_message_size: 4_194_304 }
    }
}

/// `[cluster.heartbeat]`: liveness of data nodes and gateways as seen by the control plane.
/// Each node reports every `interval_ms`; one silent for `node_timeout_ms` is considered down
/// (the reconciler then moves nothing onto it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HeartbeatConfig {
    pub interval_ms: u64,
    pub node_timeout_ms: u64,
}

impl Default for HeartbeatConfig {
    fn default() -> Self {
        Self { interval_ms: 1000, node_timeout_ms: 10_000 }
    }
}

/// One `cluster.seed_nodes` entry, written `id@host:port` (e.g. `1@node1:9093`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SeedNode {
    pub id: u64,
    pub host: String,
    pub port: u16,
}

impl SeedNode {
    /// `host:port`, ready to dial.
    pub fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for SeedNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.id, self.addr())
    }
}

/// Why a seed entry failed to parse; displays as
/// `"node1:9093" is not of the form id@host:port (e.g. "1@node1:9093")`, plus a detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedNodeParseError {
    pub entry: String,
    pub detail: &'static str,
}

impl fmt::Display for SeedNodeParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} is not of the form id@host:port (e.g. \"1@node1:9093\"): {}", self.entry, self.detail)
    }
}

impl std::error::Error for SeedNodeParseError {}

impl FromStr for SeedNode {
    type Err = SeedNodeParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |detail| SeedNodeParseError { entry: s.to_string(), detail };
        let entry = s.trim();
        let (id, addr) = entry.split_once('@').ok_or_else(|| err("the node id and '@' are missing"))?;
        let id: u64 = id.trim().parse().map_err(|_| err("the node id before '@' must be a positive integer"))?;
        let (host, port) = addr.rsplit_once(':').ok_or_else(|| err("the ':port' is missing"))?;
        let port: u16 =
            port.parse().ok().filter(|p| *p > 0).ok_or_else(|| err("the port must be a number in 1..=65535"))?;
        let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        if host.is_empty() || host.contains(|c: char| c.is_whitespace() || c == '@' || c == '/') {
            return Err(err("the host is empty or contains a space, '@' or '/'"));
        }
        if host.contains(':') && !addr.starts_with('[') {
            return Err(err("an IPv6 host must be written in brackets, as 1@[::1]:9093"));
        }
        Ok(SeedNode { id, host: host.to_string(), port })
    }
}

impl Serialize for SeedNode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SeedNode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// WAL durability profile (design §5), `CHRONIK_WAL_PROFILE` or `wal.profile`.
pub use crate::wal::WalProfile;

/// `[wal]`: the segmented write-ahead log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WalConfig {
    pub profile: WalProfile,
    /// A segment is rolled once it reaches this size.
    pub segment_bytes: u64,
    /// How long the `high` profile waits to gather more appends into one sync, microseconds.
    pub linger_us: u64,
    /// How often every record's checksum is read back in the background, seconds; 0 turns
    /// the scrub off (`POST /admin/wal/verify` still runs one).
    pub scrub_interval_secs: u64,
    /// Produce is refused with KAFKA_STORAGE_ERROR while the data directory's file system has
    /// less than this many bytes free (0 turns the guard off).
    pub min_free_bytes: u64,
    /// Read every sealed segment and check each record's CRC32C before serving. Off, a sealed
    /// segment whose index (written when it was sealed) agrees with the file is not read at
    /// start, so restarts do not grow with the WAL; the scrub and every read check its records.
    pub verify_sealed_on_start: bool,
}

impl Default for WalConfig {
    fn default() -> Self {
        Self {
            profile: WalProfile::Medium,
            segment_bytes: 64 * 1024 * 1024,
            linger_us: 1000,
            scrub_interval_secs: 3600,
            min_free_bytes: 64 * 1024 * 1024,
            verify_sealed_on_start: false,
        }
    }
}

/// `[kafka]`: Kafka-protocol behaviour of the gateways and topic defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    pub auto_create_topics: bool,
    pub default_partitions: u32,
    pub default_replication_factor: u16,
    /// Largest Kafka request frame accepted, bytes (at least 1 MiB).
    pub max_request_size: u64,
    /// Request bytes a gateway holds at once over all its connections (Kafka's
    /// `queued.max.request.bytes`); past it, connections stop reading until requests finish,
    /// so a burst of producers waits in TCP instead of in the gateway's memory. At least 1 MiB.
    pub queued_max_request_bytes: u64,
    /// Default `retention.ms`; -1 keeps data forever.
    pub retention_ms: i64,
    /// Default `retention.bytes` per partition; -1 means no size limit.
    pub retention_bytes: i64,
    /// How often each partition replica checks retention (whole segments are deleted).
    pub retention_check_interval_ms: u64,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            auto_create_topics: true,
            default_partitions: 1,
            default_replication_factor: 1,
            max_request_size: 100 * 1024 * 1024,
            queued_max_request_bytes: 16 * 1024 * 1024,
            retention_ms: 604_800_000,
            retention_bytes: -1,
            retention_check_interval_ms: 30_000,
        }
    }
}

/// `[auth]`: JWT verification for the admin REST API (see [`crate::auth`]). With neither key
/// file, admin routes answer 401; standalone then makes its own key in `data_dir/auth/`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// File holding the HS256 shared secret (at least 32 bytes; one trailing newline is ignored).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt_hs256_secret_file: Option<PathBuf>,
    /// PEM file with an EdDSA or RS256 public key (alternative to the HS256 secret).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt_public_key_file: Option<PathBuf>,
    /// Required `iss` claim.
    pub issuer: String,
    /// Required `aud` claim.
    pub audience: String,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            jwt_hs256_secret_file: None,
            jwt_public_key_file: None,
            issuer: "chronik".to_string(),
            audience: "chronik-admin".to_string(),
        }
    }
}

/// `[log]`: log output (filtering stays with `RUST_LOG`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `"text"` or `"json"`.
    pub format: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { format: "text".to_string() }
    }
}

impl LogConfig {
    pub const FORMATS: [&'static str; 2] = ["text", "json"];

    pub fn is_json(&self) -> bool {
        self.format == "json"
    }
}

impl ChronikConfig {
    /// What `chronik-server standalone` runs with when given no config: every role in one
    /// process, listening on loopback only (Kafka 127.0.0.1:9092, HTTP 127.0.0.1:8080,
    /// gRPC 127.0.0.1:9093), data in `./chronik-data`, no seeds (bootstraps its own cluster).
    pub fn standalone_defaults() -> ChronikConfig {
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        ChronikConfig {
            listeners: ListenersConfig {
                kafka: SocketAddr::new(lo, 9092),
                http: SocketAddr::new(lo, 8080),
                grpc: SocketAddr::new(lo, 9093),
                advertised_kafka: None,
                advertised_grpc: None,
                advertised_http: None,
            },
            // The gateway shares its process with the data node: requests queued in it are
            // what keeps that node's disk busy (6-partition produce ran 14 % slower at 16 MiB),
            // and there is no separate gateway process whose memory to hold down.
            kafka: KafkaConfig { queued_max_request_bytes: 64 * 1024 * 1024, ..KafkaConfig::default() },
            ..ChronikConfig::default()
        }
    }

    /// The effective configuration as TOML (e.g. for `/admin/node/info` or a startup log line).
    pub fn to_toml_string(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
    }
}
