"""Produce and consume through Chronik with kafka-python, an independent Kafka client
implementation (its own protocol code, not librdkafka)."""
import sys
import time

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

bootstrap = sys.argv[1]
topic = "interop-kafka-python"
n = 500

admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="interop")
admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])

# kafka-python 3 enables the idempotent producer by default (InitProducerId + sequences).
producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", compression_type="gzip")
acked = {}
for i in range(n):
    md = producer.send(topic, key=f"k{i}".encode(), value=f"value-{i}".encode()).get(timeout=30)
    acked[(md.partition, md.offset)] = f"value-{i}".encode()
producer.flush()

consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=10000)
parts = [TopicPartition(topic, p) for p in (0, 1)]
consumer.assign(parts)
consumer.seek_to_beginning(*parts)
seen = {}
deadline = time.time() + 60
while len(seen) < n and time.time() < deadline:
    for msg in consumer:
        seen[(msg.partition, msg.offset)] = msg.value
        if len(seen) >= n:
            break
missing = [k for k in acked if seen.get(k) != acked[k]]
print(f"kafka-python: produced {len(acked)}, consumed {len(seen)}, mismatched {len(missing)}")
sys.exit(1 if missing or len(seen) != n else 0)
