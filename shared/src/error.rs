//! The one table of Chronik error codes, and its conversions to gRPC `Status`, Kafka error
//! codes and HTTP statuses. Every crate's typed error maps onto an [`ErrorCode`]; these are
//! the only places the three wire forms are produced.

use std::fmt;

/// gRPC metadata key carrying the [`ErrorCode`] name.
pub const CODE_HEADER: &str = "chronik-error-code";
/// gRPC metadata key carrying the leader hint `id@host:port` of a "not leader" answer.
pub const LEADER_HEADER: &str = "chronik-leader";

macro_rules! error_codes {
    ($($name:ident = $id:literal, $kafka:literal, $grpc:ident, $http:literal;)*) => {
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum ErrorCode { $($name,)* }

        impl ErrorCode {
            pub const ALL: &[ErrorCode] = &[$(ErrorCode::$name,)*];
            pub fn id(self) -> i32 { match self { $(ErrorCode::$name => $id,)* } }
            pub fn kafka(self) -> i16 { match self { $(ErrorCode::$name => $kafka,)* } }
            pub fn grpc(self) -> tonic::Code { match self { $(ErrorCode::$name => tonic::Code::$grpc,)* } }
            pub fn http(self) -> u16 { match self { $(ErrorCode::$name => $http,)* } }
            pub fn name(self) -> &'static str { match self { $(ErrorCode::$name => stringify!($name),)* } }
            pub fn from_id(id: i32) -> Option<ErrorCode> { match id { $($id => Some(ErrorCode::$name),)* _ => None } }
            pub fn from_name(name: &str) -> Option<ErrorCode> { match name { $(stringify!($name) => Some(ErrorCode::$name),)* _ => None } }
        }
    };
}

// name = id, Kafka error code, gRPC code, HTTP status
error_codes! {
    None = 0, 0, Ok, 200;
    Internal = 1, -1, Internal, 500;
    NotLeader = 2, 6, Unavailable, 421;
    NoLeader = 3, 5, Unavailable, 503;
    UnknownTopicOrPartition = 4, 3, NotFound, 404;
    TopicAlreadyExists = 5, 36, AlreadyExists, 409;
    InvalidPartitions = 6, 37, InvalidArgument, 400;
    InvalidReplicationFactor = 7, 38, InvalidArgument, 400;
    InvalidTopic = 8, 17, InvalidArgument, 400;
    CorruptMessage = 9, 2, InvalidArgument, 400;
    MessageTooLarge = 10, 10, InvalidArgument, 413;
    StorageError = 11, 56, Internal, 507;
    Timeout = 12, 7, DeadlineExceeded, 504;
    OffsetOutOfRange = 13, 1, OutOfRange, 416;
    InvalidRequest = 14, 42, InvalidArgument, 400;
    InvalidConfig = 15, 40, InvalidArgument, 400;
    NotEnoughReplicas = 16, 19, Unavailable, 503;
    InvalidRequiredAcks = 17, 21, InvalidArgument, 400;
    Unavailable = 18, 8, Unavailable, 503;
    PolicyViolation = 19, 44, FailedPrecondition, 422;
    // Consumer groups (Kafka's group coordinator codes).
    NotCoordinator = 20, 16, Unavailable, 503;
    CoordinatorNotAvailable = 21, 15, Unavailable, 503;
    IllegalGeneration = 22, 22, FailedPrecondition, 409;
    InconsistentGroupProtocol = 23, 23, FailedPrecondition, 409;
    InvalidGroupId = 24, 24, InvalidArgument, 400;
    UnknownMemberId = 25, 25, NotFound, 404;
    InvalidSessionTimeout = 26, 26, InvalidArgument, 400;
    RebalanceInProgress = 27, 27, FailedPrecondition, 409;
    OffsetMetadataTooLarge = 28, 12, InvalidArgument, 400;
    NonEmptyGroup = 29, 68, FailedPrecondition, 409;
    GroupIdNotFound = 30, 69, NotFound, 404;
    MemberIdRequired = 31, 79, FailedPrecondition, 409;
    FencedInstanceId = 32, 82, FailedPrecondition, 409;
    GroupSubscribedToTopic = 33, 86, FailedPrecondition, 409;
    OutOfOrderSequence = 34, 45, FailedPrecondition, 409;
    InvalidProducerEpoch = 35, 47, FailedPrecondition, 409;
    TransactionsUnsupported = 36, 53, Unimplemented, 501;
    // An admin operation this process cannot do (a gateway has no Raft group to snapshot).
    NotAvailableHere = 37, -1, FailedPrecondition, 409;
    // A write proposed and then lost sight of (its leader stopped or lost its quorum, or did not
    // answer): it may yet commit. Kafka's REQUEST_TIMED_OUT, which producers treat as "possibly
    // persisted": librdkafka's idempotent producer then never re-sends the batch under a new
    // sequence. NOT_LEADER_OR_FOLLOWER says "not persisted", and a batch told so was stored
    // twice after an epoch bump (fault campaign, seed 1795810459813313709).
    OutcomeUnknown = 38, 7, Unavailable, 504;
    // An idempotent producer's batch refused, unwritten, because the batch before it has not
    // arrived: the client must send it again after its predecessor. Kafka's NOT_ENOUGH_REPLICAS,
    // which librdkafka and the Java client retry as "not persisted", in sequence and without a
    // new epoch. The gateway never retries it itself: librdkafka re-sends a failed predecessor
    // only once every later request to the partition has been answered, so holding this batch
    // back held the predecessor back too, until messages timed out (fault campaign, seed
    // 1795817705036654036).
    SequenceAhead = 39, 19, Unavailable, 503;
}

/// An error as it crosses a process boundary: a code, a message that says what failed and
/// what to do, and for "not leader" where the leader is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChronikError {
    pub code: ErrorCode,
    pub message: String,
    pub leader: Option<LeaderHint>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderHint {
    pub node_id: u64,
    pub addr: String,
}

impl fmt::Display for LeaderHint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.node_id, self.addr)
    }
}

impl LeaderHint {
    pub fn parse(s: &str) -> Option<LeaderHint> {
        let (id, addr) = s.split_once('@')?;
        Some(LeaderHint { node_id: id.parse().ok()?, addr: addr.to_string() })
    }
}

impl ChronikError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), leader: None }
    }

    pub fn not_leader(leader: Option<LeaderHint>, what: &str) -> Self {
        let message = match &leader {
            Some(l) => format!("this node is not the leader of {what}; the leader is node {l}"),
            None => format!("{what} has no leader right now; retry shortly"),
        };
        Self { code: if leader.is_some() { ErrorCode::NotLeader } else { ErrorCode::NoLeader }, message, leader }
    }
}

impl fmt::Display for ChronikError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.name(), self.message)
    }
}

impl std::error::Error for ChronikError {}

impl From<ChronikError> for tonic::Status {
    fn from(e: ChronikError) -> Self {
        let mut status = tonic::Status::new(e.code.grpc(), e.message);
        if let Ok(v) = e.code.name().parse() {
            status.metadata_mut().insert(CODE_HEADER, v);
        }
        if let Some(l) = e.leader
            && let Ok(v) = l.to_string().parse()
        {
            status.metadata_mut().insert(LEADER_HEADER, v);
        }
        status
    }
}

impl From<tonic::Status> for ChronikError {
    fn from(s: tonic::Status) -> Self {
        let code =
            s.metadata().get(CODE_HEADER).and_then(|v| v.to_str().ok()).and_then(ErrorCode::from_name).unwrap_or(
                // No code header: the answer did not come from our handler but from the
                // transport (a connection reset when a partitioned node comes back answers
                // "h2 protocol error" as Internal or Unknown, and a GOAWAY with
                // ENHANCE_YOUR_CALM as ResourceExhausted). The call's outcome is unknown and
                // the peer may be fine: retry, as for Unavailable.
                match s.code() {
                    tonic::Code::Unavailable
                    | tonic::Code::Unknown
                    | tonic::Code::Internal
                    | tonic::Code::ResourceExhausted
                    | tonic::Code::Cancelled
                    | tonic::Code::Aborted => ErrorCode::Unavailable,
                    tonic::Code::DeadlineExceeded => ErrorCode::Timeout,
                    tonic::Code::NotFound => ErrorCode::UnknownTopicOrPartition,
                    _ => ErrorCode::Internal,
                },
            );
        let leader = s.metadata().get(LEADER_HEADER).and_then(|v| v.to_str().ok()).and_then(LeaderHint::parse);
        Self { code, message: s.message().to_string(), leader }
    }
}

/// The admin API's error answer: the code's HTTP status and an
/// [`ErrorBody`](crate::admin::types::ErrorBody).
impl axum::response::IntoResponse for ChronikError {
    fn into_response(self) -> axum::response::Response {
        let status =
            axum::http::StatusCode::from_u16(self.code.http()).unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
        let body = crate::admin::types::ErrorBody {
            error: self.message,
            code: Some(self.code.name().to_string()),
            leader: self.leader.map(|l| l.to_string()),
        };
        (status, axum::Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_round_trip_keeps_code_and_leader() {
        let e = ChronikError::not_leader(Some(LeaderHint { node_id: 2, addr: "node2:9093".into() }), "__meta");
        let back = ChronikError::from(tonic::Status::from(e.clone()));
        assert_eq!(back, e);
        assert_eq!(back.code.kafka(), 6);
    }

    #[test]
    fn transport_failures_without_our_header_are_retried() {
        // What tonic makes of a broken connection and of a GOAWAY "too_many_resets".
        for code in [tonic::Code::Internal, tonic::Code::Unknown, tonic::Code::ResourceExhausted] {
            let e = ChronikError::from(tonic::Status::new(code, "h2 protocol error: http2 error"));
            assert_eq!(e.code, ErrorCode::Unavailable, "{code:?}");
        }
        // Our own Internal keeps its code.
        let ours = ChronikError::new(ErrorCode::Internal, "bug");
        assert_eq!(ChronikError::from(tonic::Status::from(ours)).code, ErrorCode::Internal);
    }

    /// A write that may have committed reaches Kafka clients as REQUEST_TIMED_OUT (librdkafka:
    /// "possibly persisted", so the batch keeps its sequence) and survives the hop from the
    /// data node to the gateway, which retries it.
    #[test]
    fn an_unknown_outcome_is_possibly_persisted() {
        let e = ChronikError::new(ErrorCode::OutcomeUnknown, "partition t-0 stopped before the write committed");
        assert_eq!(e.code.kafka(), 7);
        let back = ChronikError::from(tonic::Status::from(e));
        assert_eq!(back.code, ErrorCode::OutcomeUnknown);
        assert_eq!(back.code.grpc(), tonic::Code::Unavailable);
    }

    #[test]
    fn ids_and_names_are_unique() {
        for (i, a) in ErrorCode::ALL.iter().enumerate() {
            assert_eq!(ErrorCode::from_id(a.id()), Some(*a));
            assert_eq!(ErrorCode::from_name(a.name()), Some(*a));
            for b in &ErrorCode::ALL[i + 1..] {
                assert_ne!(a.id(), b.id());
            }
        }
    }
}
