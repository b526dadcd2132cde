-- The raw events table: one row per finished gateway request, priced by the consumer.
-- It is the source of truth; every rollup can be rebuilt from it for a date range.
CREATE TABLE IF NOT EXISTS usage_events
(
    event_id                       UUID,
    team_id                        LowCardinality(String),
    api_key_name                   LowCardinality(String),
    api_surface                    LowCardinality(String),
    started_at                     DateTime64(3, 'UTC'),
    duration_ms                    UInt32,
    time_to_first_token_ms         Nullable(UInt32),
    user_id                        String COMMENT 'empty when the request named no user',
    tags                           Array(LowCardinality(String)) COMMENT 'sorted, without duplicates',
    model_requested                LowCardinality(String),
    model                          LowCardinality(String),
    provider                       LowCardinality(String),
    credential_type                LowCardinality(String) COMMENT 'system or byok',
    streamed                       Bool,
    status                         LowCardinality(String) COMMENT 'success, error or client_disconnected',
    http_status                    UInt16,
    finish_reason                  LowCardinality(String),
    error_type                     LowCardinality(String),
    input_tokens                   UInt64 COMMENT 'every input token, cache reads and writes included',
    output_tokens                  UInt64 COMMENT 'every output token, reasoning included',
    cached_input_tokens            UInt64 COMMENT 'cache reads, part of input_tokens',
    cache_creation_input_tokens    UInt64 COMMENT 'cache writes, part of input_tokens',
    cache_creation_1h_input_tokens UInt64 COMMENT 'cache writes with a one-hour TTL, part of cache_creation_input_tokens',
    reasoning_tokens               UInt64 COMMENT 'part of output_tokens',
    market_cost                    Decimal(38, 12) COMMENT 'USD at the provider list price when the request ran, BYOK included',
    total_cost                     Decimal(38, 12) COMMENT 'USD charged to the team: market cost after its overrides; 0 for byok',
    price_known                    Bool COMMENT 'false: no price for this model yet, costs are 0 until re-priced',
    price_source                   LowCardinality(String),
    raw_usage                      String CODEC(ZSTD(3)) COMMENT 'the provider usage object, to re-price later',
    ingested_at                    DateTime64(3, 'UTC') DEFAULT now64(3),
    -- GET /v1/generation looks one event up by id within a team's rows.
    INDEX event_id_bloom event_id TYPE bloom_filter GRANULARITY 4
)
ENGINE = MergeTree
-- By month: few, large partitions; a range of months can be dropped or rebuilt at once.
-- Not by team: thousands of teams would mean thousands of tiny parts per insert.
PARTITION BY toYYYYMM(started_at)
-- Team first because every query is scoped to one team; then time, because every query
-- names a date range; event_id last so a generation lookup within a team is a short scan.
ORDER BY (team_id, toStartOfHour(started_at), event_id)
-- Insert deduplication on a non-replicated table needs this window: the consumer retries a
-- batch with the same insert_deduplication_token after a crash, and it must count once.
SETTINGS non_replicated_deduplication_window = 10000;
