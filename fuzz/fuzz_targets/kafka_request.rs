//! A client's bytes on the Kafka port, up to the handler: size prefix (optional: the input is
//! read both as one request without it and as a stream of size-prefixed frames), request
//! header, the guard's walk of the body and kafka-protocol's decoding, for every API key and
//! version the gateway serves. Any panic, abort or runaway allocation is a finding; a rejected
//! request is the expected outcome for most inputs.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: chronik_fuzz::LimitAlloc = chronik_fuzz::LimitAlloc;

fuzz_target!(|data: &[u8]| {
    let _ = chronik_gateway::fuzzing::decode_request(data);
});
