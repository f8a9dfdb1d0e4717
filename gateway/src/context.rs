//! What every handler needs: the config, who this gateway is, the control-plane client, the
//! metadata cache and the data-node clients.

use std::sync::Arc;

use crate::data_conn::DataClients;
use crate::metadata_cache::MetadataCache;
use chronik_proto::client::ControlClient;
use chronik_shared::config::ChronikConfig;

/// Room left in a gRPC message for everything around a record batch.
const GRPC_OVERHEAD: u64 = 64 * 1024;

pub(crate) struct Ctx {
    pub config: ChronikConfig,
    /// This gateway's node id, as a Kafka broker id.
    pub broker_id: i32,
    /// Where Kafka clients reach this gateway.
    pub advertised: HostPort,
    pub control: ControlClient,
    pub cache: Arc<MetadataCache>,
    pub data: DataClients,
    /// Request bytes held over all connections (`kafka.queued_max_request_bytes`).
    pub queued_bytes: Arc<tokio::sync::Semaphore>,
    pub queued_capacity: usize,
}

impl Ctx {
    /// The largest record batch the gateway forwards.
    pub fn max_batch_bytes(&self) -> usize {
        usize::try_from(max_batch_bytes(&self.config)).unwrap_or(usize::MAX)
    }

    /// Timeout of one control-plane or data-node call.
    pub fn request_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.config.cluster.network.request_timeout_ms.max(100))
    }
}

/// The largest record batch a gateway forwards: what a gRPC message can carry.
pub(crate) fn max_batch_bytes(config: &ChronikConfig) -> u64 {
    config.cluster.network.max_message_size.saturating_sub(GRPC_OVERHEAD).max(1 << 20)
}

/// A Kafka listener address split for Metadata responses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct HostPort {
    pub host: String,
    pub port: i32,
}

impl HostPort {
    /// Parses `host:port` or `[v6]:port`.
    pub fn parse(addr: &str) -> Option<HostPort> {
        let (host, port) = addr.trim().rsplit_once(':')?;
        let port: u16 = port.parse().ok()?;
        let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        if host.is_empty() {
            return None;
        }
        Some(HostPort { host: host.to_string(), port: i32::from(port) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_parses() {
        assert_eq!(HostPort::parse("gw1:9092"), Some(HostPort { host: "gw1".into(), port: 9092 }));
        assert_eq!(HostPort::parse("[::1]:19092"), Some(HostPort { host: "::1".into(), port: 19092 }));
        assert_eq!(HostPort::parse("gw1"), None);
        assert_eq!(HostPort::parse(":9092"), None);
        assert_eq!(HostPort::parse("gw1:99999"), None);
    }
}
