//! Errors of starting and running a gateway. Errors of single Kafka requests never come here:
//! they become Kafka error codes in the response (through `ErrorCode::kafka()`), or close the
//! connection with a logged reason.

use std::net::SocketAddr;

/// Why a gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error(
        "cannot listen for Kafka clients on {addr}: {source}; is another process using the port? Change listeners.kafka"
    )]
    Bind { addr: SocketAddr, source: std::io::Error },

    #[error("cannot read the address of the Kafka listener: {0}")]
    ListenerAddr(std::io::Error),

    #[error("a gateway needs the control plane: set cluster.seed_nodes (e.g. [\"1@control1:9093\"])")]
    NoControlPlane,

    #[error("node.id {0} is above 2147483647, the largest Kafka broker id; choose a smaller node.id")]
    NodeId(u64),

    #[error("the advertised Kafka address {0:?} is not host:port; fix listeners.advertised_kafka")]
    Advertised(String),
}
