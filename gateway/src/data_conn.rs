//! The ways to a data node: a gRPC channel per address, or, for the data node running in this
//! process (standalone), its service itself. The in-process way skips protobuf encoding,
//! HTTP/2 and the loopback socket, so a produced batch and a fetched run of batches cross as
//! the same `Bytes`; on a 2-core machine that socket cost about as much CPU as the Kafka
//! connection itself.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chronik_proto::client::data_client;
use chronik_proto::data::data_service_client::DataServiceClient;
use chronik_proto::data::data_service_server::DataService;
use chronik_proto::data::{
    FetchRequest, FetchResponse, ListOffsetsRequest, ListOffsetsResponse, ProduceRequest, ProduceResponse,
};
use chronik_shared::error::{ChronikError, ErrorCode};
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

/// One data node, as the gateway calls it.
#[derive(Clone)]
pub(crate) enum DataConn {
    Remote(DataServiceClient<Channel>),
    Local(Arc<dyn DataService>),
}

impl DataConn {
    pub async fn produce(&mut self, req: ProduceRequest) -> Result<Response<ProduceResponse>, Status> {
        match self {
            DataConn::Remote(c) => c.produce(req).await,
            DataConn::Local(s) => s.produce(Request::new(req)).await,
        }
    }

    pub async fn list_offsets(&mut self, req: ListOffsetsRequest) -> Result<Response<ListOffsetsResponse>, Status> {
        match self {
            DataConn::Remote(c) => c.list_offsets(req).await,
            DataConn::Local(s) => s.list_offsets(Request::new(req)).await,
        }
    }

    /// A fetch that gives up after `timeout` (the long poll plus the request timeout).
    pub async fn fetch(&mut self, req: FetchRequest, timeout: Duration) -> Result<Response<FetchResponse>, Status> {
        match self {
            DataConn::Remote(c) => {
                let mut request = Request::new(req);
                request.set_timeout(timeout);
                c.fetch(request).await
            }
            // No server transport enforces grpc-timeout here: the gateway does.
            DataConn::Local(s) => match tokio::time::timeout(timeout, s.fetch(Request::new(req))).await {
                Ok(r) => r,
                Err(_) => Err(Status::deadline_exceeded(format!("the local data node's fetch took over {timeout:?}"))),
            },
        }
    }
}

/// Data-node connections by address, one lazily connected gRPC channel each; the local data
/// node, if any, is reached in-process.
pub(crate) struct DataClients {
    max_message_size: usize,
    local: Option<(String, Arc<dyn DataService>)>,
    clients: Mutex<HashMap<String, DataServiceClient<Channel>>>,
}

impl DataClients {
    pub fn new(max_message_size: usize, local: Option<(String, Arc<dyn DataService>)>) -> DataClients {
        DataClients { max_message_size, local, clients: Mutex::default() }
    }

    pub fn get(&self, addr: &str) -> Result<DataConn, ChronikError> {
        if let Some((local, service)) = &self.local
            && local == addr
        {
            return Ok(DataConn::Local(service.clone()));
        }
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = clients.get(addr) {
            return Ok(DataConn::Remote(c.clone()));
        }
        let c = data_client(addr, self.max_message_size).map_err(|s| {
            ChronikError::new(
                ErrorCode::Unavailable,
                format!("data node address {addr:?} is unusable: {}", s.message()),
            )
        })?;
        clients.insert(addr.to_string(), c.clone());
        Ok(DataConn::Remote(c))
    }
}
