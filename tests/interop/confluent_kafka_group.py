"""Consumer groups through Chronik with confluent-kafka (librdkafka's Python binding).

Chronik's coordinator only relays member metadata and the leader's assignment, so each
client-side assignor must work unchanged, including librdkafka's incremental
cooperative-sticky. For range, roundrobin and cooperative-sticky in turn, on a fresh
6-partition topic and group, this proves:
- 3 members get pairwise disjoint, non-empty assignments covering all 6 partitions, and read
  every message exactly once; their commits store exactly the per-partition counts;
- one member leaves cleanly and the other two cover all 6 partitions again within the
  session timeout (plus slack), then read every new message exactly once and commit;
- after all members close, a new member resumes exactly after the committed offsets.
"""
import sys
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

bootstrap = sys.argv[1]
PARTITIONS = 6
SESSION_MS = 6000
ALL = set(range(PARTITIONS))

admin = AdminClient({"bootstrap.servers": bootstrap})
producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": False})


def fail(why):
    sys.exit(f"confluent-kafka group: {why}")


def produce(topic, start, count):
    for i in range(start, start + count):
        producer.produce(topic, value=f"m{i}".encode(), partition=i % PARTITIONS)
    if producer.flush(30) != 0:
        fail("messages were not acknowledged")


def member(topic, group, strategy):
    # Without on_assign/on_revoke the binding applies each rebalance itself, incrementally
    # (incremental_assign/unassign) under cooperative-sticky; assignment() is the current set.
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": SESSION_MS,
        "heartbeat.interval.ms": 500,
        "partition.assignment.strategy": strategy,
    })
    c.subscribe([topic])
    return c


def assignments(members):
    return [sorted(tp.partition for tp in c.assignment()) for c in members]


def poll(members, seen):
    for c in members:
        for m in c.consume(num_messages=500, timeout=0.1):
            if m.error() is None:
                seen[m.value()] = seen.get(m.value(), 0) + 1


def settle(members, seen, timeout, what, start=None):
    """Seconds from start until the members' assignments are non-empty, pairwise disjoint and
    together every partition; they must then stay so for a second (no rebalance still under
    way when messages are produced)."""
    start, took = start or time.time(), None
    while took is None or time.time() - start - took < 1:
        poll(members, seen)
        parts = assignments(members)
        if time.time() - start > timeout + 1:
            fail(f"{what}: no lasting disjoint complete split within {timeout}s: {parts}")
        split = all(parts) and sum(map(len, parts)) == PARTITIONS and set().union(*parts) == ALL
        took = (took or time.time() - start) if split else None
    if took > timeout:
        fail(f"{what}: the split took {took:.1f}s, more than {timeout}s")
    return took


def drain(members, seen, total, what):
    """Every message so far read exactly once by the group's members, past and present."""
    deadline = time.time() + 60
    while len(seen) < total and time.time() < deadline:
        poll(members, seen)
    twice = sorted(v for v, n in seen.items() if n != 1)
    if len(seen) != total or twice:
        fail(f"{what}: read {len(seen)} of {total} distinct messages, read twice: {twice[:5]}")


def commit(topic, members, per_partition, what):
    for c in members:
        c.commit(asynchronous=False)
    committed = members[0].committed([TopicPartition(topic, p) for p in ALL], timeout=10)
    committed = {tp.partition: tp.offset for tp in committed}
    if committed != dict.fromkeys(ALL, per_partition):
        fail(f"{what}: committed offsets are {committed}, expected {per_partition} per partition")


def scenario(strategy):
    topic = group = f"interop-confluent-group-{strategy}"
    admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)])[topic].result(30)
    # The group settles on an empty topic, so no message is read before the final split
    # (a rebalance without commits re-reads, as in Kafka).
    members = [member(topic, group, strategy) for _ in range(3)]
    seen = {}
    settle(members, seen, 60, f"{strategy}: 3 members")
    three = assignments(members)
    produce(topic, 0, 300)
    drain(members, seen, 300, f"{strategy}: 3 members")
    commit(topic, members, 50, f"{strategy}: 3 members")

    left = time.time()
    members.pop().close()  # a clean leave (LeaveGroup)
    took = settle(members, seen, SESSION_MS / 1000 + 10, f"{strategy}: after one left", left)
    two = assignments(members)
    produce(topic, 300, 120)
    drain(members, seen, 420, f"{strategy}: 2 members")
    commit(topic, members, 70, f"{strategy}: 2 members")
    for c in members:
        c.close()

    produce(topic, 420, 60)
    fresh, rest = member(topic, group, strategy), {}
    drain([fresh], rest, 60, f"{strategy}: the new member")
    fresh.close()
    if set(rest) != {f"m{i}".encode() for i in range(420, 480)}:
        fail(f"{strategy}: the new member did not resume exactly after the committed offsets")
    print(f"confluent-kafka group [{strategy}]: 3 members {three}, one left, 2 members {two} after "
          f"{took:.1f}s, 480 read once, new member resumed after the commits")


for s in ("range", "roundrobin", "cooperative-sticky"):
    scenario(s)
