//! A walk over a request body, before `kafka-protocol` decodes it, that rejects array lengths
//! the body cannot hold.
//!
//! kafka-protocol 0.18 decodes an array by calling `Vec::with_capacity(n)` with the length read
//! off the wire, before it reads any element (kafka-protocol-rs PRs #152, #161 and #200, still
//! open). An 8-byte Metadata request declaring 50 million topics thus asks for gigabytes up
//! front, and a failed allocation aborts the process instead of returning an error. Every array
//! element takes at least one byte on the wire, so a length above the bytes left is impossible;
//! this walk checks that for every array of every request the router decodes, following each
//! message's schema (field order and the versions each field exists in), without building
//! anything. Strings and byte fields need no check: the decoder slices them out of the frame.
//!
//! Each function mirrors the generated `Decodable` impl of its request in kafka-protocol; the
//! tests encode requests with kafka-protocol at every version and walk them.

use kafka_protocol::messages::ApiKey;

mod groups;
use groups::*;

/// The body is malformed or declares an impossible array length.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct GuardError(String);

type Result<T = ()> = std::result::Result<T, GuardError>;

/// Checks `body` (the request after its header) of API `key` at `version`.
pub(crate) fn check(key: ApiKey, body: &[u8], version: i16) -> Result {
    let mut c = Cursor { buf: body, pos: 0 };
    let v = version;
    match key {
        ApiKey::Produce => produce(&mut c, v),
        ApiKey::Fetch => fetch(&mut c, v),
        ApiKey::ListOffsets => list_offsets(&mut c, v),
        ApiKey::Metadata => metadata(&mut c, v),
        ApiKey::FindCoordinator => find_coordinator(&mut c, v),
        ApiKey::InitProducerId => init_producer_id(&mut c, v),
        ApiKey::ApiVersions => api_versions(&mut c, v),
        ApiKey::CreateTopics => create_topics(&mut c, v),
        ApiKey::DeleteTopics => delete_topics(&mut c, v),
        ApiKey::DescribeConfigs => describe_configs(&mut c, v),
        ApiKey::CreatePartitions => create_partitions(&mut c, v),
        ApiKey::JoinGroup => join_group(&mut c, v),
        ApiKey::SyncGroup => sync_group(&mut c, v),
        ApiKey::Heartbeat => heartbeat(&mut c, v),
        ApiKey::LeaveGroup => leave_group(&mut c, v),
        ApiKey::OffsetCommit => offset_commit(&mut c, v),
        ApiKey::OffsetFetch => offset_fetch(&mut c, v),
        ApiKey::ListGroups => list_groups(&mut c, v),
        ApiKey::DescribeGroups => describe_groups(&mut c, v),
        ApiKey::DeleteGroups => delete_groups(&mut c, v),
        ApiKey::OffsetDelete => offset_delete(&mut c, v),
        other => Err(GuardError(format!("no schema walk for {other:?}"))),
    }
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Result<&[u8]> {
        if self.remaining() < n {
            return Err(GuardError(format!(
                "the body ends at byte {} but a field needs {n} more bytes",
                self.buf.len()
            )));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn skip(&mut self, n: usize) -> Result {
        self.take(n).map(|_| ())
    }

    fn i16(&mut self) -> Result<i16> {
        let b = self.take(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self) -> Result<i32> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn uvarint(&mut self) -> Result<u32> {
        let mut value = 0u32;
        for i in 0..5 {
            let b = self.take(1)?[0] as u32;
            value |= (b & 0x7f) << (i * 7);
            if b < 0x80 {
                break;
            }
        }
        Ok(value)
    }

    /// `STRING`/`NULLABLE_STRING` (int16 length) or their compact forms (varint length + 1).
    fn string(&mut self, flexible: bool) -> Result {
        let len = if flexible { (self.uvarint()? as i64) - 1 } else { self.i16()? as i64 };
        if len > 0 {
            self.skip(len as usize)?;
        }
        Ok(())
    }

    /// `BYTES`/`RECORDS` (int32 length) or their compact forms.
    fn bytes(&mut self, flexible: bool) -> Result {
        let len = if flexible { (self.uvarint()? as i64) - 1 } else { self.i32()? as i64 };
        if len > 0 {
            self.skip(len as usize)?;
        }
        Ok(())
    }

    /// An array of elements walked by `element`; the length must fit in the bytes left.
    fn array(&mut self, flexible: bool, mut element: impl FnMut(&mut Self) -> Result) -> Result {
        let len = if flexible { (self.uvarint()? as i64) - 1 } else { self.i32()? as i64 };
        if len < 0 {
            return Ok(()); // null (or negative, which the decoder rejects)
        }
        if len as usize > self.remaining() {
            return Err(GuardError(format!(
                "an array declares {len} elements but only {} bytes follow",
                self.remaining()
            )));
        }
        for _ in 0..len {
            element(self)?;
        }
        Ok(())
    }

    /// The tagged-field section of a flexible struct with no tags kafka-protocol knows: every
    /// field is skipped by its size, as the decoder does.
    fn tags(&mut self, flexible: bool) -> Result {
        self.tags_known(flexible, |_, _| Ok(false))
    }

    /// A tagged-field section with tags kafka-protocol decodes by their type, ignoring the size
    /// in front of them: `known(c, tag)` walks such a field as the decoder reads it and returns
    /// true, or returns false for a tag skipped by its size. Skipping a known tag by its size
    /// instead would let a request whose size lies put the walk out of step with the decoder,
    /// which then reads array lengths the walk never saw.
    fn tags_known(&mut self, flexible: bool, mut known: impl FnMut(&mut Self, u32) -> Result<bool>) -> Result {
        if !flexible {
            return Ok(());
        }
        let n = self.uvarint()?;
        for _ in 0..n {
            let tag = self.uvarint()?;
            let size = self.uvarint()?;
            if !known(self, tag)? {
                self.skip(size as usize)?;
            }
        }
        Ok(())
    }
}

fn api_versions(c: &mut Cursor, v: i16) -> Result {
    let flex = v >= 3;
    if flex {
        c.string(flex)?;
        c.string(flex)?;
    }
    c.tags(flex)
}

fn metadata(c: &mut Cursor, v: i16) -> Result {
    let flex = v >= 9;
    c.array(flex, |c| {
        if v >= 10 {
            c.skip(16)?;
        }
        c.string(flex)?;
        c.tags(flex)
    })?;
    if v >= 4 {
        c.skip(1)?;
    }
    if (8..=10).contains(&v) {
        c.skip(1)?;
    }
    if v >= 8 {
        c.skip(1)?;
    }
    c.tags(flex)
}

fn produce(c: &mut Cursor, v: i16) -> Result {
    let flex = v >= 9;
    c.string(flex)?; // transactional_id
    c.skip(2 + 4)?; // acks, timeout_ms
    c.array(flex, |c| {
        if v <= 12 {
            c.string(flex)?;
        } else {
            c.skip(16)?;
        }
        c.array(flex, |c| {
            c.skip(4)?;
            c.bytes(flex)?;
            c.tags(flex)
        })?;
        c.tags(flex)
    })?;
    c.tags(flex)
}

fn fetch(c: &mut Cursor, v: i16) -> Result {
    let flex = v >= 12;
    if v <= 14 {
        c.skip(4)?; // replica_id
    }
    c.skip(4 + 4 + 4 + 1)?; // max_wait_ms, min_bytes, max_bytes, isolation_level
    if v >= 7 {
        c.skip(4 + 4)?; // session_id, session_epoch
    }
    c.array(flex, |c| {
        if v <= 12 {
            c.string(flex)?;
        } else {
            c.skip(16)?;
        }
        c.array(flex, |c| {
            c.skip(4)?; // partition
            if v >= 9 {
                c.skip(4)?; // current_leader_epoch
            }
            c.skip(8)?; // fetch_offset
            if v >= 12 {
                c.skip(4)?; // last_fetched_epoch
            }
            if v >= 5 {
                c.skip(8)?; // log_start_offset
            }
            c.skip(4)?; // partition_max_bytes
            c.tags_known(flex, |c, tag| match tag {
                0 if v >= 17 => c.skip(16).map(|_| true), // replica_directory_id
                1 if v >= 18 => c.skip(8).map(|_| true),  // high_watermark
                _ => Ok(false),
            })
        })?;
        c.tags(flex)
    })?;
    if v >= 7 {
        c.array(flex, |c| {
            if v <= 12 {
                c.string(flex)?;
            } else {
                c.skip(16)?;
            }
            c.array(flex, |c| c.skip(4))?;
            c.tags(flex)
        })?;
    }
    if v >= 11 {
        c.string(flex)?; // rack_id
    }
    c.tags_known(flex, |c, tag| match tag {
        0 => c.string(flex).map(|_| true), // cluster_id
        1 if v >= 15 => {
            // replica_state: replica_id, replica_epoch
            c.skip(4 + 8)?;
            c.tags(flex).map(|_| true)
        }
        _ => Ok(false),
    })
}

fn list_offsets(c: &mut Cursor, v: i16) -> Result {
    let flex = v >= 6;
    c.skip(4)?; // replica_id
    if v >= 2 {
        c.skip(1)?; // isolation_level
    }
    c.array(flex, |c| {
        c.string(flex)?;
        c.array(flex, |c| {
            c.skip(4)?;
            if v >= 4 {
                c.skip(4)?;
            }
            c.skip(8)?;
            c.tags(flex)
        })?;
        c.tags(flex)
    })?;
    if v >= 10 {
        c.skip(4)?; // timeout_ms
    }
    c.tags(flex)
}

fn find_coordinator(c: &mut Cursor, v: i16) -> Result {
    let flex = v >= 3;
    if v <= 3 {
        c.string(flex)?;
    }
    if v >= 1 {
        c.skip(1)?;
    }
    if v >= 4 {
        c.array(flex, |c| c.string(flex))?;
    }
    c.tags(flex)
}

fn init_producer_id(c: &mut Cursor, v: i16) -> Result {
    let flex = v >= 2;
    c.string(flex)?; // transactional_id
    c.skip(4)?; // transaction_timeout_ms
    if v >= 3 {
        c.skip(8 + 2)?; // producer_id, producer_epoch
    }
    if v >= 6 {
        c.skip(2)?; // enable_2pc, keep_prepared_txn
    }
    c.tags(flex)
}

fn create_topics(c: &mut Cursor, v: i16) -> Result {
    let flex = v >= 5;
    c.array(flex, |c| {
        c.string(flex)?;
        c.skip(4 + 2)?; // num_partitions, replication_factor
        c.array(flex, |c| {
            c.skip(4)?;
            c.array(flex, |c| c.skip(4))?;
            c.tags(flex)
        })?;
        c.array(flex, |c| {
            c.string(flex)?;
            c.string(flex)?;
            c.tags(flex)
        })?;
        c.tags(flex)
    })?;
    c.skip(4 + 1)?; // timeout_ms, validate_only
    c.tags(flex)
}

fn delete_topics(c: &mut Cursor, v: i16) -> Result {
    let flex = v >= 4;
    if v >= 6 {
        c.array(flex, |c| {
            c.string(flex)?;
            c.skip(16)?;
            c.tags(flex)
        })?;
    } else {
        c.array(flex, |c| c.string(flex))?;
    }
    c.skip(4)?; // timeout_ms
    c.tags(flex)
}

fn describe_configs(c: &mut Cursor, v: i16) -> Result {
    let flex = v >= 4;
    c.array(flex, |c| {
        c.skip(1)?; // resource_type
        c.string(flex)?;
        c.array(flex, |c| c.string(flex))?;
        c.tags(flex)
    })?;
    c.skip(1)?; // include_synonyms
    if v >= 3 {
        c.skip(1)?; // include_documentation
    }
    c.tags(flex)
}

fn create_partitions(c: &mut Cursor, v: i16) -> Result {
    let flex = v >= 2;
    c.array(flex, |c| {
        c.string(flex)?;
        c.skip(4)?; // count
        c.array(flex, |c| {
            c.array(flex, |c| c.skip(4))?;
            c.tags(flex)
        })?;
        c.tags(flex)
    })?;
    c.skip(4 + 1)?; // timeout_ms, validate_only
    c.tags(flex)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{Bytes, BytesMut};
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::{Encodable, Message, StrBytes};

    pub(super) fn s(x: &'static str) -> StrBytes {
        StrBytes::from_static_str(x)
    }

    /// Encodes `req` at every version it has and checks the walk accepts it and consumes it
    /// exactly: the walk and kafka-protocol agree on the schema.
    pub(super) fn agrees<T: Encodable + Message>(key: ApiKey, req: &T) {
        agrees_in(key, req, T::VERSIONS.min..=T::VERSIONS.max)
    }

    /// Same as `agrees`, from version `min` on (for requests that set newer fields).
    pub(super) fn agrees_from<T: Encodable + Message>(key: ApiKey, req: &T, min: i16) {
        agrees_in(key, req, min..=T::VERSIONS.max)
    }

    pub(super) fn agrees_in<T: Encodable + Message>(key: ApiKey, req: &T, versions: std::ops::RangeInclusive<i16>) {
        for v in versions {
            let mut buf = BytesMut::new();
            req.encode(&mut buf, v).unwrap_or_else(|e| panic!("{key:?} v{v} encodes: {e}"));
            let mut c = Cursor { buf: &buf, pos: 0 };
            let walked = match key {
                ApiKey::Produce => produce(&mut c, v),
                ApiKey::Fetch => fetch(&mut c, v),
                ApiKey::ListOffsets => list_offsets(&mut c, v),
                ApiKey::Metadata => metadata(&mut c, v),
                ApiKey::FindCoordinator => find_coordinator(&mut c, v),
                ApiKey::ApiVersions => api_versions(&mut c, v),
                ApiKey::CreateTopics => create_topics(&mut c, v),
                ApiKey::DeleteTopics => delete_topics(&mut c, v),
                ApiKey::DescribeConfigs => describe_configs(&mut c, v),
                ApiKey::CreatePartitions => create_partitions(&mut c, v),
                ApiKey::JoinGroup => join_group(&mut c, v),
                ApiKey::SyncGroup => sync_group(&mut c, v),
                ApiKey::Heartbeat => heartbeat(&mut c, v),
                ApiKey::LeaveGroup => leave_group(&mut c, v),
                ApiKey::OffsetCommit => offset_commit(&mut c, v),
                ApiKey::OffsetFetch => offset_fetch(&mut c, v),
                ApiKey::ListGroups => list_groups(&mut c, v),
                ApiKey::DescribeGroups => describe_groups(&mut c, v),
                ApiKey::DeleteGroups => delete_groups(&mut c, v),
                ApiKey::OffsetDelete => offset_delete(&mut c, v),
                _ => unreachable!(),
            };
            walked.unwrap_or_else(|e| panic!("{key:?} v{v}: {e}"));
            assert_eq!(c.pos, buf.len(), "{key:?} v{v}: the walk consumed {} of {} bytes", c.pos, buf.len());
        }
    }

    #[test]
    fn walks_agree_with_kafka_protocol_at_every_version() {
        agrees(ApiKey::ApiVersions, &ApiVersionsRequest::default().with_client_software_name(s("t")));
        let topic = |name| metadata_request::MetadataRequestTopic::default().with_name(Some(TopicName(s(name))));
        agrees(ApiKey::Metadata, &MetadataRequest::default().with_topics(Some(vec![topic("a"), topic("bb")])));
        agrees(ApiKey::Metadata, &MetadataRequest::default().with_topics(None));

        let part = |i| {
            produce_request::PartitionProduceData::default()
                .with_index(i)
                .with_records(Some(Bytes::from_static(b"0123456789")))
        };
        let produce_req = ProduceRequest::default().with_acks(-1).with_timeout_ms(1000).with_topic_data(vec![
            produce_request::TopicProduceData::default().with_partition_data(vec![part(0), part(1)]),
            produce_request::TopicProduceData::default().with_partition_data(vec![part(2)]),
        ]);
        agrees(ApiKey::Produce, &produce_req);

        let fp = |i| fetch_request::FetchPartition::default().with_partition(i).with_fetch_offset(7);
        let fetch_req = FetchRequest::default().with_max_bytes(1 << 20).with_topics(vec![
            fetch_request::FetchTopic::default().with_partitions(vec![fp(0), fp(1)]),
            fetch_request::FetchTopic::default().with_partitions(vec![fp(0)]),
        ]);
        agrees(ApiKey::Fetch, &fetch_req);
        let forgotten = vec![fetch_request::ForgottenTopic::default().with_partitions(vec![1, 2, 3])];
        let fetch_req = fetch_req.with_forgotten_topics_data(forgotten);
        agrees_from(ApiKey::Fetch, &fetch_req, 7);
        agrees_from(ApiKey::Fetch, &fetch_req.clone().with_rack_id(s("r")), 11);
        agrees_from(ApiKey::Fetch, &fetch_req.with_rack_id(s("r")).with_cluster_id(Some(s("c"))), 12);

        let lo = ListOffsetsRequest::default().with_topics(vec![
            list_offsets_request::ListOffsetsTopic::default()
                .with_name(TopicName(s("t")))
                .with_partitions(vec![list_offsets_request::ListOffsetsPartition::default().with_timestamp(-1)]),
        ]);
        agrees(ApiKey::ListOffsets, &lo);

        agrees_from(ApiKey::FindCoordinator, &FindCoordinatorRequest::default().with_coordinator_keys(vec![s("g")]), 4);
        for v in 0..=3 {
            let req = FindCoordinatorRequest::default().with_key(s("g"));
            let mut buf = BytesMut::new();
            req.encode(&mut buf, v).expect("encodes");
            let mut c = Cursor { buf: &buf, pos: 0 };
            find_coordinator(&mut c, v).expect("walks");
            assert_eq!(c.pos, buf.len());
        }

        let ct = CreateTopicsRequest::default().with_topics(vec![
            create_topics_request::CreatableTopic::default()
                .with_name(TopicName(s("t")))
                .with_num_partitions(3)
                .with_assignments(vec![
                    create_topics_request::CreatableReplicaAssignment::default()
                        .with_broker_ids(vec![BrokerId(1), BrokerId(2)]),
                ])
                .with_configs(vec![
                    create_topics_request::CreatableTopicConfig::default()
                        .with_name(s("retention.ms"))
                        .with_value(Some(s("1"))),
                ]),
        ]);
        agrees(ApiKey::CreateTopics, &ct);

        agrees_in(
            ApiKey::DeleteTopics,
            &DeleteTopicsRequest::default().with_topic_names(vec![TopicName(s("a")), TopicName(s("b"))]),
            1..=5,
        );
        agrees_from(
            ApiKey::DeleteTopics,
            &DeleteTopicsRequest::default().with_topics(vec![
                delete_topics_request::DeleteTopicState::default().with_name(Some(TopicName(s("a")))),
            ]),
            6,
        );

        let dc = DescribeConfigsRequest::default().with_resources(vec![
            describe_configs_request::DescribeConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(s("t"))
                .with_configuration_keys(Some(vec![s("retention.ms")])),
        ]);
        agrees(ApiKey::DescribeConfigs, &dc);

        let cp = CreatePartitionsRequest::default().with_topics(vec![
            create_partitions_request::CreatePartitionsTopic::default()
                .with_name(TopicName(s("t")))
                .with_count(4)
                .with_assignments(Some(vec![
                    create_partitions_request::CreatePartitionsAssignment::default().with_broker_ids(vec![BrokerId(1)]),
                ])),
        ]);
        agrees(ApiKey::CreatePartitions, &cp);
    }

    #[test]
    fn known_tagged_fields_are_walked_as_the_decoder_reads_them() {
        let part = fetch_request::FetchPartition::default()
            .with_partition(3)
            .with_replica_directory_id(uuid::Uuid::from_bytes([7; 16]))
            .with_high_watermark(42);
        let req = FetchRequest::default()
            .with_topics(vec![fetch_request::FetchTopic::default().with_partitions(vec![part.clone(), part])])
            .with_cluster_id(Some(s("c")))
            .with_replica_state(
                fetch_request::ReplicaState::default().with_replica_id(BrokerId(2)).with_replica_epoch(9),
            );
        agrees_from(ApiKey::Fetch, &req, 18);
    }

    /// Found by the `kafka_request` fuzz target (the input is the fuzzer's, minimized): a Fetch
    /// v18 whose partition carries tagged field 0 (replica_directory_id, a 16-byte UUID) with a
    /// declared size of 0. The walk skipped 0 bytes, kafka-protocol read 16, and the decoder then
    /// took a forgotten-topics length of about 2^32 that the walk never checked:
    /// `Vec::with_capacity` of 256 GB aborted the process.
    #[test]
    fn a_known_tagged_field_with_a_lying_size_cannot_desynchronise_the_walk() {
        let found = Bytes::from_static(include_bytes!("guard/regressions/fetch-v18-known-tag-size.bin"));
        match crate::server::parse(found) {
            crate::server::Parsed::Reject(reason) => assert!(reason.contains("Fetch v18"), "{reason}"),
            _ => panic!("the fuzzer's Fetch v18 request must be refused"),
        }

        // The same in its smallest form: Fetch v17, one topic, one partition.
        let mut body = vec![0u8; 21]; // max_wait_ms .. session_epoch
        body.push(0x02); // 1 topic
        body.extend_from_slice(&[0x11; 16]); // its topic id
        body.push(0x02); // 1 partition
        body.extend_from_slice(&[0u8; 32]); // partition .. partition_max_bytes
        body.extend_from_slice(&[0x01, 0x00, 0x00]); // 1 tagged field: tag 0, "size 0"
        // The UUID the decoder reads; skipped by size, a walk reads it as the end of the
        // request: no topic tags, no forgotten topics, rack "", no tags.
        body.extend_from_slice(&[0x00, 0x01, 0x01, 0x00]);
        body.extend_from_slice(&[0u8; 12]);
        body.push(0x00); // the topic's tags
        body.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]); // forgotten topics: 2^32 - 2
        let err = check(ApiKey::Fetch, &body, 17).expect_err("impossible length");
        assert!(err.to_string().contains("4294967294 elements"), "{err}");
    }

    #[test]
    fn impossible_array_lengths_are_rejected() {
        // The Metadata v0 body of kafka-protocol-rs PR #152: 54 million topics declared.
        let body = [0x03, 0x3c, 0x0c, 0x00, 0xb6];
        let err = check(ApiKey::Metadata, &body, 0).expect_err("impossible length");
        assert!(err.to_string().contains("54266880 elements but only 1 bytes"), "{err}");
        // Compact arrays too: a varint length of ~268 million in a Metadata v12 body.
        let body = [0xff, 0xff, 0xff, 0xff, 0x01, 0x00];
        assert!(check(ApiKey::Metadata, &body, 12).is_err());
        // A nested array inside a valid outer one.
        let mut body = vec![0u8; 17]; // Fetch v4: replica_id .. isolation_level
        body.extend_from_slice(&[0, 0, 0, 1]); // 1 topic
        body.extend_from_slice(&[0, 0]); // its name: ""
        body.extend_from_slice(&[0x7f, 0xff, 0xff, 0xff]); // partitions: 2^31-1
        assert!(check(ApiKey::Fetch, &body, 4).is_err());
    }
}
