#!/usr/bin/env python3
"""Produce and check for the compose tests (confluent-kafka, i.e. librdkafka).

  checker.py produce --bootstrap B --topic T --count N --prefix P --acked FILE [--rate R]
      An idempotent producer (enable.idempotence, acks=all) sends N values P-0 .. P-(N-1)
      (with --count 0, until SIGTERM);
      every value the cluster acknowledged is appended to FILE (one "value partition offset"
      line each). Values whose delivery failed are counted, not written: they may or may not
      be stored, and the check allows either.

  checker.py verify --bootstrap B --topic T --acked FILE [FILE ...]
      Reads every partition from the start up to its high watermark and proves that no
      acknowledged value is missing, none is stored twice, and each acknowledged value sits at
      the partition and offset it was acknowledged with. Exit 1 with the evidence otherwise.
"""
import argparse
import signal
import sys
import time
from collections import Counter

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def log(msg):
    print(f"checker: {msg}", flush=True)


def create_topic(bootstrap, topic, partitions, rf):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.time() + 60
    while True:
        fs = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=rf)])
        try:
            fs[topic].result(timeout=30)
            log(f"created {topic} ({partitions} partitions, replication factor {rf})")
            return
        except Exception as e:  # noqa: BLE001 - any error is retried until the deadline
            if "TOPIC_ALREADY_EXISTS" in str(e) or "already exists" in str(e):
                return
            if time.time() > deadline:
                raise
            log(f"create {topic}: {e}; retrying")
            time.sleep(2)


def produce(a):
    fatal = []

    p = Producer({
        "bootstrap.servers": a.bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "message.timeout.ms": a.timeout_ms,
        "retry.backoff.ms": 200,
        "log_level": 3,
    })
    acked, failed = [], []

    def on_delivery(err, msg):
        value = msg.value().decode()
        if err is None:
            acked.append((value, msg.partition(), msg.offset()))
        else:
            failed.append((value, str(err)))

    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    start = last_report = time.time()
    try:
        for i in range(a.count if a.count > 0 else 10**12):
            if stop or fatal:
                break
            if time.time() - last_report >= 10:
                last_report = time.time()
                log(f"produce {a.prefix}: {i} sent, {len(acked)} acknowledged, {len(failed)} failed so far")
            value = f"{a.prefix}-{i}"
            while True:
                try:
                    p.produce(a.topic, value=value.encode(), key=str(i).encode(), on_delivery=on_delivery)
                    break
                except BufferError:
                    p.poll(0.1)
            p.poll(0)
            if a.rate > 0:
                ahead = (i + 1) / a.rate - (time.time() - start)
                if ahead > 0:
                    time.sleep(ahead)
    except (KafkaException, SystemError) as e:
        fatal.append(str(e))
    left = 0
    try:
        left = p.flush(a.timeout_ms / 1000 + 30)
    except (KafkaException, SystemError) as e:
        fatal.append(str(e))
        left = len(p)
    with open(a.acked, "a") as f:
        for value, part, off in acked:
            f.write(f"{value} {part} {off}\n")
    sent = len(acked) + len(failed) + left
    log(f"produce {a.prefix}: {sent} sent, {len(acked)} acknowledged, {len(failed)} failed, {left} unresolved "
        f"in {time.time() - start:.1f}s")
    for value, err in failed[:5]:
        log(f"  failed: {value}: {err}")
    if fatal:
        log(f"FAIL: the idempotent producer hit a fatal error: {fatal[0]}")
        sys.exit(1)
    if a.require_all and (failed or left):
        sys.exit(1)
    if sent and len(acked) < a.min_acked * sent:
        log(f"FAIL: only {len(acked)} of {sent} acknowledged (wanted at least {a.min_acked:.0%})")
        sys.exit(1)


def verify(a):
    acked = {}
    for path in a.acked:
        with open(path) as f:
            for line in f:
                value, part, off = line.split()
                acked[value] = (int(part), int(off))
    c = Consumer({
        "bootstrap.servers": a.bootstrap,
        "group.id": f"checker-{time.time()}",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": True,
    })
    md = c.list_topics(a.topic, timeout=30)
    parts = sorted(md.topics[a.topic].partitions)
    ends = {}
    deadline = time.time() + 60
    for p in parts:
        while True:
            try:
                lo, hi = c.get_watermark_offsets(TopicPartition(a.topic, p), timeout=10)
                ends[p] = hi
                break
            except Exception as e:  # noqa: BLE001
                if time.time() > deadline:
                    raise
                log(f"watermarks of partition {p}: {e}; retrying")
                time.sleep(1)
    c.assign([TopicPartition(a.topic, p, 0) for p in parts])
    seen = {}  # (partition, offset) -> value
    values = Counter()
    done = {p for p in parts if ends[p] == 0}
    deadline = time.time() + a.timeout_s
    while len(done) < len(parts) and time.time() < deadline:
        msg = c.poll(1.0)
        if msg is None:
            continue
        if msg.error():
            if msg.error().code() == KafkaError._PARTITION_EOF:
                if msg.offset() >= ends[msg.partition()]:
                    done.add(msg.partition())
                continue
            log(f"consumer error: {msg.error()}")
            continue
        key = (msg.partition(), msg.offset())
        if key in seen:
            continue  # a re-fetch after a reconnect, not a stored duplicate
        v = msg.value().decode()
        seen[key] = v
        values[v] += 1
        if msg.offset() + 1 >= ends[msg.partition()]:
            done.add(msg.partition())
    c.close()
    problems = []
    if len(done) < len(parts):
        problems.append(f"could not read to the high watermark of partitions {sorted(set(parts) - done)}")
    dups = [v for v, n in values.items() if n > 1]
    if dups:
        problems.append(f"{len(dups)} value(s) stored more than once, e.g. {dups[:5]}")
    lost = [v for v in acked if v not in values]
    if lost:
        problems.append(f"{len(lost)} acknowledged value(s) missing, e.g. {lost[:5]}")
    moved = [v for v, (p, o) in acked.items() if v in values and seen.get((p, o)) != v]
    if moved:
        problems.append(f"{len(moved)} acknowledged value(s) not at their acknowledged offset, e.g. "
                        f"{[(v, acked[v]) for v in moved[:5]]}")
    total = sum(ends.values())
    log(f"verify {a.topic}: {len(seen)} stored in {len(parts)} partitions (high watermarks sum {total}), "
        f"{len(acked)} acknowledged, {len(lost)} lost, {len(dups)} duplicated")
    if problems:
        for p in problems:
            log(f"FAIL: {p}")
        sys.exit(1)
    log("OK: no acknowledged message lost, none duplicated")


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("create")
    c.add_argument("--bootstrap", required=True)
    c.add_argument("--topic", required=True)
    c.add_argument("--partitions", type=int, default=3)
    c.add_argument("--replication-factor", type=int, default=3)
    p = sub.add_parser("produce")
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--prefix", required=True)
    p.add_argument("--acked", required=True)
    p.add_argument("--rate", type=float, default=0, help="messages per second; 0 = as fast as possible")
    p.add_argument("--timeout-ms", type=int, default=120000)
    p.add_argument("--require-all", action="store_true", help="fail unless every message is acknowledged")
    p.add_argument("--min-acked", type=float, default=0.0, help="fail if fewer than this share is acknowledged")
    v = sub.add_parser("verify")
    v.add_argument("--bootstrap", required=True)
    v.add_argument("--topic", required=True)
    v.add_argument("--acked", nargs="+", required=True)
    v.add_argument("--timeout-s", type=float, default=120)
    a = ap.parse_args()
    if a.cmd == "create":
        create_topic(a.bootstrap, a.topic, a.partitions, a.replication_factor)
    elif a.cmd == "produce":
        produce(a)
    else:
        verify(a)


if __name__ == "__main__":
    main()
