#!/usr/bin/env python3
"""Produce and check for the compose tests (confluent-kafka, i.e. librdkafka).

  checker.py produce --bootstrap B --topic T --count N --prefix P --acked FILE [--rate R]
      An idempotent producer (enable.idempotence, acks=all) sends N values P-0 .. P-(N-1)
      (with --count 0, until SIGTERM);
      every value the cluster acknowledged is appended to FILE (one "value partition offset"
      line each). Values whose delivery failed are counted, not written: they may or may not
      be stored, and the check allows either.

  checker.py consume --bootstrap B --topic T --group G --seen FILE [--progress FILE]
      A consumer in group G (subscribe, commits every second and on exit) reads until SIGTERM;
      every message is appended to FILE ("value partition offset"), and the number read so far
      is rewritten to the progress file every second, so the caller can see it advance. It
      fails (exit 1) if a partition's offsets go backwards other than to a committed offset
      after a rebalance, or if committed offsets go backwards.

  checker.py verify --bootstrap B --topic T --acked FILE [FILE ...] [--consumed FILE ...]
      Reads every partition from the start up to its high watermark and proves that no
      acknowledged value is missing, none is stored twice, and each acknowledged value sits at
      the partition and offset it was acknowledged with. With --consumed, also that every
      message a group consumer read is the one stored at that partition and offset, and that
      the consumer read every acknowledged value. Exit 1 with the evidence otherwise.

  With CHECKER_DEBUG set (e.g. CHECKER_DEBUG=eos,msg), librdkafka's debug log of that
  category goes to stderr.
"""
import os
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


def client_config(conf):
    """`conf` plus librdkafka's debug categories from CHECKER_DEBUG, if set."""
    if os.environ.get("CHECKER_DEBUG"):
        conf = dict(conf, debug=os.environ["CHECKER_DEBUG"], log_level=7)
    return conf


def produce(a):
    fatal = []

    p = Producer(client_config({
        "bootstrap.servers": a.bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "message.timeout.ms": a.timeout_ms,
        "retry.backoff.ms": 200,
        "log_level": 3,
    }))
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


def consume(a):
    anomalies = []
    # Where each assigned partition's next message must come from: the position after the last
    # message read, or (after an assignment) the committed offset the consumer resumes from.
    expect = {}
    committed_max = {}
    assigned_at = {}

    def on_assign(consumer, parts):
        try:
            committed = consumer.committed(parts, timeout=30)
        except KafkaException as e:
            # Only the check below needs it; the consumer itself resumes from the commits.
            log(f"consume {a.group}: committed offsets not available ({e}); not checked for this assignment")
            committed = []
        for tp in parts:
            expect.pop(tp.partition, None)
        for tp in committed:
            expect.pop(tp.partition, None)
            assigned_at[tp.partition] = tp.offset
            last = committed_max.get(tp.partition)
            if tp.offset >= 0 and last is not None and tp.offset < last:
                anomalies.append(f"partition {tp.partition}: committed offset went back from {last} to {tp.offset}")
        log(f"consume {a.group}: assigned {sorted(tp.partition for tp in parts)}")

    def on_revoke(consumer, parts):
        for tp in parts:
            expect.pop(tp.partition, None)

    c = Consumer(client_config({
        "bootstrap.servers": a.bootstrap,
        "group.id": a.group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 10000,
        "heartbeat.interval.ms": 1000,
        "log_level": 3,
    }))
    c.subscribe([a.topic], on_assign=on_assign, on_revoke=on_revoke)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    read = 0
    last_commit = last_progress = time.time()
    errors = Counter()
    with open(a.seen, "a") as seen:
        while not stop:
            msg = c.poll(0.5)
            now = time.time()
            if msg is not None and msg.error():
                errors[msg.error().name()] += 1
            elif msg is not None:
                p, o = msg.partition(), msg.offset()
                want = expect.get(p)
                # Re-reading from the committed offset after a rebalance is allowed; within
                # one assignment the offsets only go forward.
                if want is not None and o < want:
                    anomalies.append(f"partition {p}: read offset {o} after {want - 1}")
                expect[p] = o + 1
                seen.write(f"{msg.value().decode()} {p} {o}\n")
                read += 1
            if now - last_commit >= 1 and expect:
                try:
                    done = c.commit(offsets=[TopicPartition(a.topic, p, o) for p, o in expect.items()],
                                    asynchronous=False)
                    for tp in done or []:
                        if tp.error is None:
                            committed_max[tp.partition] = max(committed_max.get(tp.partition, -1), tp.offset)
                except KafkaException as e:
                    errors[f"commit: {e.args[0].name() if e.args else e}"] += 1
                last_commit = now
            if now - last_progress >= 1:
                seen.flush()
                if a.progress:
                    with open(a.progress + ".tmp", "w") as f:
                        f.write(f"{read}\n")
                    os.replace(a.progress + ".tmp", a.progress)
                last_progress = now
    try:
        if expect:
            c.commit(offsets=[TopicPartition(a.topic, p, o) for p, o in expect.items()], asynchronous=False)
    except KafkaException as e:
        log(f"consume {a.group}: final commit failed: {e}")
    c.close()
    log(f"consume {a.group}: {read} read; transient errors {dict(errors) or 'none'}")
    if anomalies:
        for x in anomalies[:10]:
            log(f"FAIL: {x}")
        sys.exit(1)


def verify(a):
    acked = {}
    for path in a.acked:
        with open(path) as f:
            for line in f:
                value, part, off = line.split()
                acked[value] = (int(part), int(off))
    c = Consumer(client_config({
        "bootstrap.servers": a.bootstrap,
        "group.id": f"checker-{time.time()}",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": True,
    }))
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
    if a.consumed:
        got = {}
        wrong = []
        for path in a.consumed:
            with open(path) as f:
                for line in f:
                    fields = line.split()
                    if len(fields) != 3:
                        continue  # a line cut short when the consumer was stopped
                    value, part, off = fields[0], int(fields[1]), int(fields[2])
                    got[value] = (part, off)
                    if seen.get((part, off)) != value:
                        wrong.append((value, part, off, seen.get((part, off))))
        if wrong:
            problems.append(f"{len(wrong)} consumed message(s) differ from what is stored at their offset, "
                            f"e.g. (value, partition, offset, stored) {wrong[:5]}")
        unread = [v for v in acked if v not in got]
        if unread:
            problems.append(f"the group consumer never read {len(unread)} acknowledged value(s), e.g. {unread[:5]}")
        log(f"verify {a.topic}: the group consumer read {len(got)} distinct values, "
            f"{len(wrong)} wrong, {len(unread)} acknowledged ones unread")
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
    v.add_argument("--consumed", nargs="*", default=[], help="files written by `consume`")
    k = sub.add_parser("consume")
    k.add_argument("--bootstrap", required=True)
    k.add_argument("--topic", required=True)
    k.add_argument("--group", required=True)
    k.add_argument("--seen", required=True)
    k.add_argument("--progress")
    a = ap.parse_args()
    if a.cmd == "create":
        create_topic(a.bootstrap, a.topic, a.partitions, a.replication_factor)
    elif a.cmd == "produce":
        produce(a)
    elif a.cmd == "consume":
        consume(a)
    else:
        verify(a)


if __name__ == "__main__":
    main()
