"""Consumer groups through Chronik with confluent-kafka (librdkafka's Python binding): two
consumers in one group split every partition, commit, and a new consumer resumes exactly
after the committed offsets."""
import sys
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

bootstrap = sys.argv[1]
topic = "interop-confluent-group"
group = "interop-confluent-group"
partitions = 4

admin = AdminClient({"bootstrap.servers": bootstrap})
for f in admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)]).values():
    f.result(30)
producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": False})


def produce(start, count):
    for i in range(start, start + count):
        producer.produce(topic, value=f"m{i}".encode(), partition=i % partitions)
    if producer.flush(30) != 0:
        fail("messages were not acknowledged")


def member():
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 500,
    })
    c.subscribe([topic])
    return c


def fail(why):
    print(f"confluent-kafka group: {why}")
    sys.exit(1)


# The group settles first, on an empty topic, so no message is read before the final split
# (a rebalance without commits re-reads, as in Kafka).
a, b = member(), member()
seen = {}
balanced = False
deadline = time.time() + 90
while time.time() < deadline:
    for c in (a, b):
        m = c.poll(0.1)
        if m is not None and m.error() is None:
            seen[m.value()] = seen.get(m.value(), 0) + 1
    pa = {tp.partition for tp in a.assignment()}
    pb = {tp.partition for tp in b.assignment()}
    if pa and pb and not (pa & pb) and (pa | pb) == set(range(partitions)):
        if not balanced:
            balanced = True
            produce(0, 200)
        elif len(seen) == 200:
            break
else:
    fail(f"two members never covered every partition ({len(seen)} of 200 read)")
if any(n != 1 for n in seen.values()):
    fail("a message was read twice by the group")
a.commit(asynchronous=False)
b.commit(asynchronous=False)
committed = a.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
if {tp.partition: tp.offset for tp in committed} != {p: 50 for p in range(partitions)}:
    fail(f"committed offsets are {[(tp.partition, tp.offset) for tp in committed]}, expected 50 each")
a.close()
b.close()

produce(200, 40)
c = member()
rest = []
deadline = time.time() + 60
while len(rest) < 40 and time.time() < deadline:
    m = c.poll(0.2)
    if m is not None and m.error() is None:
        rest.append(m.value())
c.close()
expected = {f"m{i}".encode() for i in range(200, 240)}
if sorted(rest) != sorted(expected):
    fail(f"the new member read {len(rest)} messages, not exactly the 40 after the committed offsets")
print("confluent-kafka group: 2 members covered 4 partitions, committed, a new member resumed exactly")
