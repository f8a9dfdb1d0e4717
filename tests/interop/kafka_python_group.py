"""Consumer groups through Chronik with kafka-python (its own protocol code, not librdkafka).

Chronik's coordinator only relays member metadata and the leader's assignment, so each
client-side assignor must work unchanged. For range, roundrobin and sticky in turn, on a
fresh 6-partition topic and group, this proves:
- 3 members get pairwise disjoint, non-empty assignments covering all 6 partitions, and read
  every message exactly once; their commits store exactly the per-partition counts;
- one member leaves cleanly and the other two cover all 6 partitions again within the
  session timeout (plus slack), then read every new message exactly once and commit;
- after all members close, a new member resumes exactly after the committed offsets.
"""
import queue
import sys
import threading
import time
from collections import Counter

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.coordinator.assignors.range import RangePartitionAssignor
from kafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from kafka.coordinator.assignors.sticky.sticky_assignor import StickyPartitionAssignor

bootstrap = sys.argv[1]
PARTITIONS = 6
SESSION_MS = 6000
ALL = set(range(PARTITIONS))

admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="interop-group")
producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")


def fail(why):
    sys.exit(f"kafka-python group: {why}")


def produce(topic, start, count):
    for i in range(start, start + count):
        producer.send(topic, value=f"m{i}".encode(), partition=i % PARTITIONS).get(timeout=30)
    producer.flush()


class Member(threading.Thread):
    """One group member, polled by its own thread: kafka-python 3.0 drops a JoinGroup/SyncGroup
    round that ends while its consumer is outside poll() and rejoins, so one thread polling
    three consumers in turn makes the leader restart nearly every rebalance."""

    def __init__(self, topic, group, assignor):
        super().__init__(daemon=True)
        self.consumer = KafkaConsumer(
            bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
            auto_offset_reset="earliest", session_timeout_ms=SESSION_MS, heartbeat_interval_ms=500,
            partition_assignment_strategy=[assignor])
        self.consumer.subscribe([topic])
        # A metadata round trip before the first JoinGroup: a leader that assigned before its
        # subscription's metadata arrived rejoins once it does, and kafka-python 3.0 can leave
        # that rejoin half done if poll() times out meanwhile (no heartbeats, evicted).
        self.consumer.topics()
        self.read, self.parts, self.jobs, self.closed = [], [], queue.Queue(), False
        self.start()

    def run(self):
        while not self.closed:
            while not self.jobs.empty():
                job, done = self.jobs.get()
                try:
                    done.put(job(self.consumer))
                except Exception as e:  # re-raised by call()
                    done.put(e)
            if not self.closed:
                for records in self.consumer.poll(timeout_ms=100).values():
                    self.read.extend(r.value for r in records)
                self.parts = sorted(tp.partition for tp in self.consumer.assignment())

    def call(self, job):
        """job(consumer) on this member's thread (a consumer is not thread-safe)."""
        self.jobs.put((job, done := queue.Queue()))
        if isinstance(result := done.get(timeout=60), Exception):
            raise result
        return result

    def close(self):
        self.call(lambda c: (c.close(), setattr(self, "closed", True)))
        self.join()


def settle(members, timeout, what, start=None):
    """Seconds from start until the members' assignments are non-empty, pairwise disjoint and
    together every partition; they must then stay so for a second (no rebalance still under
    way when messages are produced)."""
    start, took = start or time.time(), None
    while took is None or time.time() - start - took < 1:
        parts = [m.parts for m in members]
        if time.time() - start > timeout + 1:
            fail(f"{what}: no lasting disjoint complete split within {timeout}s: {parts}")
        split = all(parts) and sum(map(len, parts)) == PARTITIONS and set().union(*parts) == ALL
        took = (took or time.time() - start) if split else None
        time.sleep(0.05)
    if took > timeout:
        fail(f"{what}: the split took {took:.1f}s, more than {timeout}s")
    return took


def drain(everyone, total, what):
    """Every message so far read exactly once by the group's members, past and present."""
    deadline = time.time() + 60
    while len({v for m in everyone for v in m.read}) < total and time.time() < deadline:
        time.sleep(0.05)
    seen = Counter(v for m in everyone for v in m.read)
    twice = sorted(v for v, n in seen.items() if n != 1)
    if len(seen) != total or twice:
        fail(f"{what}: read {len(seen)} of {total} distinct messages, read twice: {twice[:5]}")


def commit(topic, members, per_partition, what):
    for m in members:
        m.call(lambda c: c.commit())
    committed = members[0].call(lambda c: {p: c.committed(TopicPartition(topic, p)) for p in ALL})
    if committed != dict.fromkeys(ALL, per_partition):
        fail(f"{what}: committed offsets are {committed}, expected {per_partition} per partition")


def scenario(assignor):
    name = assignor.name
    topic = group = f"interop-kafka-python-group-{name}"
    admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)])
    # The group settles on an empty topic, so no message is read before the final split
    # (a rebalance without commits re-reads, as in Kafka).
    members = [Member(topic, group, assignor) for _ in range(3)]
    everyone = list(members)
    settle(members, 60, f"{name}: 3 members")
    three = [m.parts for m in members]
    produce(topic, 0, 300)
    drain(everyone, 300, f"{name}: 3 members")
    commit(topic, members, 50, f"{name}: 3 members")

    left = time.time()
    members.pop().close()  # a clean leave (LeaveGroup)
    took = settle(members, SESSION_MS / 1000 + 10, f"{name}: after one left", left)
    two = [m.parts for m in members]
    produce(topic, 300, 120)
    drain(everyone, 420, f"{name}: 2 members")
    commit(topic, members, 70, f"{name}: 2 members")
    for m in members:
        m.close()

    produce(topic, 420, 60)
    fresh = Member(topic, group, assignor)
    drain([fresh], 60, f"{name}: the new member")
    fresh.close()
    if set(fresh.read) != {f"m{i}".encode() for i in range(420, 480)}:
        fail(f"{name}: the new member did not resume exactly after the committed offsets")
    print(f"kafka-python group [{name}]: 3 members {three}, one left, 2 members {two} after "
          f"{took:.1f}s, 480 read once, new member resumed after the commits")


for a in (RangePartitionAssignor, RoundRobinPartitionAssignor, StickyPartitionAssignor):
    scenario(a)
