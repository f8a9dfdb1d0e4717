//! ApiVersions: the router's table, nothing more. No feature flags and no other tagged field
//! is sent (kcat 1.7 / librdkafka 2.0 cannot parse v3 responses that carry them).

use std::sync::Arc;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};

use crate::context::Ctx;
use crate::router::{Outcome, ROUTES};

pub(crate) async fn handle(_ctx: &Arc<Ctx>, _version: i16, _req: ApiVersionsRequest) -> ApiVersionsResponse {
    response(0)
}

/// The answer to an ApiVersions request of a version this gateway does not know; the
/// connection sends it as v0, which every client can read.
pub(crate) fn unsupported_version() -> ApiVersionsResponse {
    response(ResponseError::UnsupportedVersion.code())
}

fn response(error_code: i16) -> ApiVersionsResponse {
    let api_keys = ROUTES
        .iter()
        .map(|r| {
            ApiVersion::default()
                .with_api_key(r.key as i16)
                .with_min_version(r.versions.min)
                .with_max_version(r.versions.max)
        })
        .collect();
    ApiVersionsResponse::default().with_error_code(error_code).with_api_keys(api_keys)
}

impl Outcome for ApiVersionsResponse {
    fn failed(&self) -> bool {
        self.error_code != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::protocol::{Decodable, Encodable};

    #[test]
    fn v3_carries_no_tagged_fields() {
        let r = response(0);
        for v in 0..=4 {
            let mut buf = BytesMut::new();
            r.encode(&mut buf, v).expect("encodes");
            let back = ApiVersionsResponse::decode(&mut buf.clone().freeze(), v).expect("decodes");
            assert_eq!(back.api_keys.len(), ROUTES.len());
            if v >= 3 {
                // error_code, compact array, each entry ends in an empty tag section,
                // throttle_time_ms, and the response's own tag section is empty: one 0 byte.
                assert_eq!(buf.last(), Some(&0));
                let entries = 1 + ROUTES.len() * (6 + 1);
                assert_eq!(buf.len(), 2 + entries + 4 + 1, "v{v} has extra bytes");
            }
        }
    }
}
