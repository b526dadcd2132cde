-- The consumer's batch log: each batch's offset range, written before the batch is inserted,
-- so a batch re-read after a crash is cut at the same offsets and carries the same insert
-- deduplication token (see services/meterline/consumer/batch_log.py).
CREATE TABLE IF NOT EXISTS consumer_batches
(
    consumer_group LowCardinality(String),
    topic          LowCardinality(String),
    partition      UInt32,
    first_offset   UInt64,
    last_offset    UInt64,
    recorded_at    DateTime('UTC') DEFAULT now()
)
ENGINE = MergeTree
-- Lookups name a group, topic and partition and ask for ranges from an offset on.
ORDER BY (consumer_group, topic, partition, first_offset)
-- A record matters only until its batch's offsets are committed, seconds later; a week
-- outlasts any outage after which the group's committed offsets are still there.
TTL recorded_at + INTERVAL 7 DAY;
