#!/usr/bin/env python3
"""Builds the fuzz seed corpus from real client traffic.

A recording TCP proxy sits between Kafka clients and a running Chronik: it forwards bytes both
ways unchanged and writes what clients send.

- corpus/kafka_request/seed-<Api>-v<version>-<hash>: one request frame without its 4-byte size
  (header and body; the kafka_request target reads each input with and without a size prefix),
  at most PER_VERSION distinct frames per API version;
- corpus/kafka_request/seed-stream-<hash>: the first frames of a connection, size-prefixed and
  concatenated, as the connection reads them;
- corpus/record_batch/seed-<client>-<hash>: the `records` of each partition of each Produce
  request (one or more record batches).

Chronik must advertise the proxy's address, so that clients come back through it after the
Metadata response:

    ./target/release/chronik-server standalone --data-dir /tmp/fz \
      --set listeners.kafka=127.0.0.1:29092 --set listeners.http=127.0.0.1:28080 \
      --set listeners.grpc=127.0.0.1:29093 --set listeners.advertised_kafka=127.0.0.1:29192
    python3 fuzz/capture.py --listen 127.0.0.1:29192 --upstream 127.0.0.1:29092

Without --no-drive it also runs the clients (kcat, kafka-python, confluent-kafka) through the
proxy: produce with every compression codec, idempotent produce, consume, consumer groups and
the admin APIs, so that every API key the gateway serves appears. Needs `kcat` (apt) and
`pip install kafka-python confluent-kafka`.
"""

import argparse
import hashlib
import os
import socket
import struct
import subprocess
import sys
import threading
import time

API_NAMES = {
    0: "Produce", 1: "Fetch", 2: "ListOffsets", 3: "Metadata", 8: "OffsetCommit", 9: "OffsetFetch",
    10: "FindCoordinator", 11: "JoinGroup", 12: "Heartbeat", 13: "LeaveGroup", 14: "SyncGroup",
    15: "DescribeGroups", 16: "ListGroups", 18: "ApiVersions", 19: "CreateTopics",
    20: "DeleteTopics", 22: "InitProducerId", 32: "DescribeConfigs", 37: "CreatePartitions",
    42: "DeleteGroups", 47: "OffsetDelete",
}
PER_VERSION = 12
STREAM_FRAMES = 6
MAX_STREAMS = 20

HERE = os.path.dirname(os.path.abspath(__file__))


class Recorder:
    def __init__(self, out):
        self.requests = os.path.join(out, "kafka_request")
        self.batches = os.path.join(out, "record_batch")
        os.makedirs(self.requests, exist_ok=True)
        os.makedirs(self.batches, exist_ok=True)
        self.lock = threading.Lock()
        self.counts = {}
        self.streams = 0
        self.client = "unknown"
        for name in os.listdir(self.requests):
            parts = name.split("-")
            if len(parts) == 4 and parts[0] == "seed" and parts[1] != "stream":
                key = (parts[1], parts[2])
                self.counts[key] = self.counts.get(key, 0) + 1

    @staticmethod
    def _write(directory, prefix, data):
        name = f"{prefix}-{hashlib.sha1(data).hexdigest()[:12]}"
        path = os.path.join(directory, name)
        if os.path.exists(path):
            return False
        with open(path, "wb") as f:
            f.write(data)
        return True

    def request(self, frame):
        if len(frame) < 8:
            return
        api_key, version = struct.unpack(">hh", frame[:4])
        api = API_NAMES.get(api_key, f"Api{api_key}")
        with self.lock:
            key = (api, f"v{version}")
            if self.counts.get(key, 0) < PER_VERSION and self._write(self.requests, f"seed-{api}-v{version}", frame):
                self.counts[key] = self.counts.get(key, 0) + 1
            if api_key == 0:
                try:
                    for records in produce_records(frame, version):
                        self._write(self.batches, f"seed-{self.client}", records)
                except (IndexError, struct.error, ValueError) as e:
                    print(f"capture: cannot read Produce v{version}: {e}", file=sys.stderr)

    def stream(self, frames):
        with self.lock:
            if self.streams < MAX_STREAMS and frames:
                data = b"".join(struct.pack(">i", len(f)) + f for f in frames)
                if self._write(self.requests, "seed-stream", data):
                    self.streams += 1


class Reader:
    def __init__(self, buf):
        self.buf, self.pos = buf, 0

    def take(self, n):
        if n < 0 or self.pos + n > len(self.buf):
            raise ValueError("truncated")
        s = self.buf[self.pos:self.pos + n]
        self.pos += n
        return s

    def i16(self):
        return struct.unpack(">h", self.take(2))[0]

    def i32(self):
        return struct.unpack(">i", self.take(4))[0]

    def uvarint(self):
        value, shift = 0, 0
        while True:
            b = self.take(1)[0]
            value |= (b & 0x7F) << shift
            if b < 0x80:
                return value
            shift += 7

    def string(self, flex):
        n = self.uvarint() - 1 if flex else self.i16()
        return self.take(n) if n > 0 else b""

    def bytes(self, flex):
        n = self.uvarint() - 1 if flex else self.i32()
        return self.take(n) if n >= 0 else None

    def array_len(self, flex):
        return self.uvarint() - 1 if flex else self.i32()

    def tags(self, flex):
        if flex:
            for _ in range(self.uvarint()):
                self.uvarint()
                self.take(self.uvarint())


def produce_records(frame, version):
    """The `records` of every partition of a Produce request frame (v3 and later)."""
    if version < 3:
        return []
    flex = version >= 9
    r = Reader(frame)
    r.take(8)  # api key, version, correlation id
    r.string(False)  # client id: never compact
    r.tags(flex)
    r.string(flex)  # transactional id
    r.take(2 + 4)  # acks, timeout
    out = []
    for _ in range(max(r.array_len(flex), 0)):
        if version <= 12:
            r.string(flex)
        else:
            r.take(16)
        for _ in range(max(r.array_len(flex), 0)):
            r.take(4)
            records = r.bytes(flex)
            if records:
                out.append(records)
            r.tags(flex)
        r.tags(flex)
    return out


def pipe_requests(client, server, recorder):
    """Client to server: forwards everything and records each complete frame."""
    buf = b""
    frames = []
    try:
        while True:
            data = client.recv(65536)
            if not data:
                break
            server.sendall(data)
            buf += data
            while len(buf) >= 4:
                (size,) = struct.unpack(">i", buf[:4])
                if size < 0 or len(buf) < 4 + size:
                    break
                frame, buf = buf[4:4 + size], buf[4 + size:]
                recorder.request(frame)
                if len(frames) < STREAM_FRAMES:
                    frames.append(frame)
                    if len(frames) == STREAM_FRAMES:
                        recorder.stream(frames)
    except OSError:
        pass
    finally:
        if 0 < len(frames) < STREAM_FRAMES:
            recorder.stream(frames)
        for s in (client, server):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def pipe_responses(server, client):
    try:
        while True:
            data = server.recv(65536)
            if not data:
                break
            client.sendall(data)
    except OSError:
        pass
    finally:
        for s in (client, server):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def serve(listen, upstream, recorder):
    host, port = listen.rsplit(":", 1)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, int(port)))
    sock.listen(64)
    uhost, uport = upstream.rsplit(":", 1)

    def accept():
        while True:
            client, _ = sock.accept()
            try:
                server = socket.create_connection((uhost, int(uport)))
            except OSError:
                client.close()
                continue
            threading.Thread(target=pipe_requests, args=(client, server, recorder), daemon=True).start()
            threading.Thread(target=pipe_responses, args=(server, client), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()


def run(cmd, stdin=None):
    print("capture: $", " ".join(cmd), file=sys.stderr)
    return subprocess.run(cmd, input=stdin, capture_output=True, timeout=60, check=False)


def drive(bootstrap, recorder):
    """Client traffic through the proxy: every API the gateway serves, several clients."""
    t = "fz-" + hashlib.sha1(str(time.time()).encode()).hexdigest()[:6]

    # kcat (librdkafka): metadata, produce with each codec, idempotent produce, consume, groups.
    recorder.client = "kcat"
    run(["kcat", "-b", bootstrap, "-L"])
    lines = "".join(f"key{i}:value-{i}-" + "x" * (i % 50) + "\n" for i in range(200)).encode()
    for codec in ("none", "gzip", "snappy", "lz4", "zstd"):
        run(["kcat", "-b", bootstrap, "-t", f"{t}-kcat", "-P", "-K:", "-z", codec, "-p", "0"], stdin=lines)
    run(["kcat", "-b", bootstrap, "-t", f"{t}-kcat", "-P", "-X", "enable.idempotence=true", "-H", "h1=v1"],
        stdin=b"one\ntwo\nthree\n")
    run(["kcat", "-b", bootstrap, "-t", f"{t}-kcat", "-C", "-p", "0", "-o", "beginning", "-e", "-q"])
    run(["kcat", "-b", bootstrap, "-t", f"{t}-kcat", "-C", "-p", "0", "-o", "-5", "-e", "-q"])
    run(["kcat", "-b", bootstrap, "-t", f"{t}-kcat", "-C", "-p", "0", "-o", "s@0", "-e", "-q"])
    run(["kcat", "-b", bootstrap, "-G", f"{t}-kcat-group", f"{t}-kcat", "-e", "-q",
         "-X", "auto.offset.reset=earliest"])

    # confluent-kafka (librdkafka): admin, codecs, idempotence, a consumer group, offsets.
    recorder.client = "confluent"
    import confluent_kafka
    from confluent_kafka import admin as cadmin

    conf = {"bootstrap.servers": bootstrap}
    a = cadmin.AdminClient(conf)
    topic = f"{t}-ck"
    for f in a.create_topics([cadmin.NewTopic(topic, 2, 1, config={"retention.ms": "3600000"})]).values():
        f.result(15)
    for f in a.create_partitions([cadmin.NewPartitions(topic, 3)]).values():
        f.result(15)
    for f in a.describe_configs([cadmin.ConfigResource("topic", topic)]).values():
        f.result(15)
    for codec in ("none", "gzip", "snappy", "lz4", "zstd"):
        p = confluent_kafka.Producer({**conf, "compression.type": codec, "enable.idempotence": True,
                                      "linger.ms": 20})
        for i in range(300):
            p.produce(topic, key=f"k{i % 7}".encode(), value=(f"{codec}-{i}-" * (1 + i % 9)).encode(),
                      headers=[("n", str(i).encode())] if i % 3 == 0 else None, partition=i % 3)
        p.flush(15)
    c = confluent_kafka.Consumer({**conf, "group.id": f"{t}-ck-group", "auto.offset.reset": "earliest",
                                  "enable.auto.commit": False})
    c.subscribe([topic])
    got, deadline = 0, time.time() + 20
    while got < 900 and time.time() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            got += 1
    c.commit(asynchronous=False)
    c.get_watermark_offsets(confluent_kafka.TopicPartition(topic, 0), timeout=10)
    c.offsets_for_times([confluent_kafka.TopicPartition(topic, 0, int(time.time() * 1000) - 60000)], timeout=10)
    c.committed([confluent_kafka.TopicPartition(topic, p) for p in range(3)], timeout=10)
    c.close()
    def attempt(what, fn):
        try:
            fn()
        except Exception as e:  # a call this client version lacks, or Chronik refuses
            print(f"capture: {what}: {e}", file=sys.stderr)

    group = f"{t}-ck-group"
    attempt("list groups", lambda: a.list_consumer_groups().result(15))
    attempt("describe groups", lambda: a.describe_consumer_groups([group])[group].result(15))
    attempt("group offsets", lambda: [f.result(15) for f in a.list_consumer_group_offsets(
        [confluent_kafka.ConsumerGroupTopicPartitions(group)]).values()])
    attempt("list offsets", lambda: [f.result(15) for f in a.list_offsets(
        {confluent_kafka.TopicPartition(topic, 0): cadmin.OffsetSpec.latest()}).values()])
    attempt("delete groups", lambda: [f.result(15) for f in a.delete_consumer_groups([group]).values()])

    # kafka-python: its own encodings of the same APIs, including OffsetDelete.
    recorder.client = "kafkapy"
    import kafka
    from kafka.admin import KafkaAdminClient, NewTopic, NewPartitions, ConfigResource, ConfigResourceType

    ka = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    kt = f"{t}-kp"
    ka.create_topics([NewTopic(kt, 2, 1)])
    ka.create_partitions({kt: NewPartitions(3)})
    ka.describe_configs([ConfigResource(ConfigResourceType.TOPIC, kt)])
    prod = kafka.KafkaProducer(bootstrap_servers=bootstrap, compression_type="gzip", linger_ms=10)
    for i in range(200):
        prod.send(kt, key=f"k{i}".encode(), value=(f"v{i}" * (1 + i % 5)).encode(), partition=i % 3,
                  headers=[("h", b"x")] if i % 4 == 0 else None)
    prod.flush(15)
    prod.close()
    prod = kafka.KafkaProducer(bootstrap_servers=bootstrap, acks=0)
    prod.send(kt, b"acks-zero", partition=0)
    prod.flush(15)
    prod.close()
    cons = kafka.KafkaConsumer(kt, bootstrap_servers=bootstrap, group_id=f"{kt}-group",
                               auto_offset_reset="earliest", consumer_timeout_ms=5000,
                               enable_auto_commit=False)
    n = sum(1 for _ in cons)
    cons.commit()
    tps = [kafka.TopicPartition(kt, p) for p in range(3)]
    cons.end_offsets(tps)
    cons.beginning_offsets(tps)
    cons.offsets_for_times({tps[0]: int(time.time() * 1000) - 60000})
    cons.close()
    print(f"capture: kafka-python consumed {n}", file=sys.stderr)
    attempt("kafka-python list groups", ka.list_groups)
    attempt("kafka-python describe groups", lambda: ka.describe_groups([f"{kt}-group"]))
    attempt("kafka-python group offsets", lambda: ka.list_group_offsets(f"{kt}-group"))
    attempt("kafka-python delete group offsets", lambda: ka.delete_group_offsets(f"{kt}-group", [tps[0]]))
    attempt("kafka-python delete groups", lambda: ka.delete_groups([f"{kt}-group"]))
    attempt("kafka-python delete topics", lambda: ka.delete_topics([kt]))
    ka.close()
    attempt("delete topics", lambda: [f.result(15) for f in a.delete_topics([topic, f"{t}-kcat"]).values()])

    # Older request versions, as older clients send them: kafka-python told the broker is old,
    # and librdkafka without ApiVersions (Kafka 0.11's fixed versions, non-flexible everywhere).
    for version in ((0, 11), (1, 0), (2, 0), (2, 4)):
        recorder.client = "kafkapy" + "".join(map(str, version))
        old = f"{t}-old{''.join(map(str, version))}"

        def old_clients():
            prod = kafka.KafkaProducer(bootstrap_servers=bootstrap, api_version=version, linger_ms=5)
            for i in range(20):
                prod.send(old, key=b"k", value=f"old-{i}".encode())
            prod.flush(15)
            prod.close()
            cons = kafka.KafkaConsumer(old, bootstrap_servers=bootstrap, api_version=version,
                                       group_id=f"{old}-group", auto_offset_reset="earliest",
                                       consumer_timeout_ms=4000)
            sum(1 for _ in cons)
            cons.commit()
            cons.end_offsets([kafka.TopicPartition(old, 0)])
            cons.close()

        attempt(f"kafka-python api_version={version}", old_clients)
    recorder.client = "kcat011"
    legacy = ["-X", "api.version.request=false", "-X", "broker.version.fallback=0.11.0"]
    run(["kcat", "-b", bootstrap, "-t", f"{t}-legacy", "-P", *legacy], stdin=b"a\nb\nc\n")
    run(["kcat", "-b", bootstrap, "-t", f"{t}-legacy", "-C", "-o", "beginning", "-e", "-q", *legacy])
    run(["kcat", "-b", bootstrap, "-L", *legacy])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--listen", default="127.0.0.1:29192")
    ap.add_argument("--upstream", default="127.0.0.1:29092")
    ap.add_argument("--out", default=os.path.join(HERE, "corpus"))
    ap.add_argument("--no-drive", action="store_true", help="only proxy (Ctrl-C to stop)")
    args = ap.parse_args()
    recorder = Recorder(args.out)
    serve(args.listen, args.upstream, recorder)
    if args.no_drive:
        while True:
            time.sleep(3600)
    drive(args.listen, recorder)
    time.sleep(1)
    for (api, version), n in sorted(recorder.counts.items()):
        print(f"capture: {api} {version}: {n} frames")


if __name__ == "__main__":
    main()
