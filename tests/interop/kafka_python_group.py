"""Consumer groups through Chronik with kafka-python (its own protocol code, not librdkafka):
two consumers in one group split every partition between them, commit, and a new consumer
of the group resumes exactly after the committed offsets."""
import sys
import time

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

bootstrap = sys.argv[1]
topic = "interop-kafka-python-group"
group = "interop-kafka-python-group"
partitions = 4

admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="interop-group")
admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")


def produce(start, count):
    for i in range(start, start + count):
        producer.send(topic, value=f"m{i}".encode(), partition=i % partitions).get(timeout=30)
    producer.flush()


def member():
    c = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=6000,
        heartbeat_interval_ms=500,
    )
    c.subscribe([topic])
    return c


def fail(why):
    print(f"kafka-python group: {why}")
    sys.exit(1)


# The group settles first, on an empty topic, so no message is read before the final split
# (a rebalance without commits re-reads, as in Kafka).
a, b = member(), member()
seen = {}
balanced = False
deadline = time.time() + 90
while time.time() < deadline:
    for c in (a, b):
        for records in c.poll(timeout_ms=200).values():
            for r in records:
                seen[r.value] = seen.get(r.value, 0) + 1
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
a.commit()
b.commit()
committed = {p: a.committed(TopicPartition(topic, p)) for p in range(partitions)}
if committed != {p: 50 for p in range(partitions)}:
    fail(f"committed offsets are {committed}, expected 50 per partition")
a.close()
b.close()

produce(200, 40)
c = member()
rest = []
deadline = time.time() + 60
while len(rest) < 40 and time.time() < deadline:
    for records in c.poll(timeout_ms=200).values():
        rest.extend(r.value for r in records)
c.close()
expected = {f"m{i}".encode() for i in range(200, 240)}
if sorted(rest) != sorted(expected):
    fail(f"the new member read {len(rest)} messages, not exactly the 40 after the committed offsets")
print("kafka-python group: 2 members covered 4 partitions, committed, a new member resumed exactly")
