-- Hourly and daily rollups of usage_events, fed by materialized views at insert time, so a
-- report reads a few rows per team, hour or day and combination of dimensions instead of
-- every request. Both keep the request's whole tag set as a dimension, so tag filters
-- (any or all) combine with every grouping. Rows are summed on merge; merges are eventual,
-- so queries always re-aggregate with sum() ... GROUP BY.
CREATE TABLE IF NOT EXISTS usage_hourly
(
    team_id                        LowCardinality(String),
    hour                           DateTime('UTC'),
    user_id                        String,
    model                          LowCardinality(String),
    provider                       LowCardinality(String),
    credential_type                LowCardinality(String),
    api_key_name                   LowCardinality(String),
    tags                           Array(LowCardinality(String)),
    input_tokens                   UInt64,
    output_tokens                  UInt64,
    cached_input_tokens            UInt64,
    cache_creation_input_tokens    UInt64,
    cache_creation_1h_input_tokens UInt64,
    reasoning_tokens               UInt64,
    market_cost                    Decimal(38, 12),
    total_cost                     Decimal(38, 12),
    request_count                  UInt64,
    unpriced_request_count         UInt64 COMMENT 'requests whose model had no known price',
    error_count                    UInt64 COMMENT 'requests whose status was not success'
)
ENGINE = SummingMergeTree
-- By month, like usage_events, so a month of raw events and its rollups can be rebuilt
-- or dropped together.
PARTITION BY toYYYYMM(hour)
-- Team first (every report is one team's), then time (every report names a range), then
-- the dimensions reports filter on most; the full key is what rows are summed by.
ORDER BY (team_id, hour, user_id, model, provider, credential_type, api_key_name, tags)
-- The consumer's insert deduplication must hold for the views' target tables too.
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS usage_hourly_mv TO usage_hourly AS
SELECT
    team_id,
    toStartOfHour(started_at) AS hour,
    user_id,
    model,
    provider,
    credential_type,
    api_key_name,
    tags,
    sum(input_tokens) AS input_tokens,
    sum(output_tokens) AS output_tokens,
    sum(cached_input_tokens) AS cached_input_tokens,
    sum(cache_creation_input_tokens) AS cache_creation_input_tokens,
    sum(cache_creation_1h_input_tokens) AS cache_creation_1h_input_tokens,
    sum(reasoning_tokens) AS reasoning_tokens,
    sum(market_cost) AS market_cost,
    sum(total_cost) AS total_cost,
    count() AS request_count,
    countIf(NOT price_known) AS unpriced_request_count,
    countIf(status != 'success') AS error_count
FROM usage_events
GROUP BY team_id, hour, user_id, model, provider, credential_type, api_key_name, tags;

CREATE TABLE IF NOT EXISTS usage_daily
(
    team_id                        LowCardinality(String),
    day                            Date,
    user_id                        String,
    model                          LowCardinality(String),
    provider                       LowCardinality(String),
    credential_type                LowCardinality(String),
    api_key_name                   LowCardinality(String),
    tags                           Array(LowCardinality(String)),
    input_tokens                   UInt64,
    output_tokens                  UInt64,
    cached_input_tokens            UInt64,
    cache_creation_input_tokens    UInt64,
    cache_creation_1h_input_tokens UInt64,
    reasoning_tokens               UInt64,
    market_cost                    Decimal(38, 12),
    total_cost                     Decimal(38, 12),
    request_count                  UInt64,
    unpriced_request_count         UInt64 COMMENT 'requests whose model had no known price',
    error_count                    UInt64 COMMENT 'requests whose status was not success'
)
ENGINE = SummingMergeTree
-- By month: a year of days is twelve partitions, and a month can be rebuilt at once.
PARTITION BY toYYYYMM(day)
-- Team, then day, then dimensions: the same reasons as usage_hourly.
ORDER BY (team_id, day, user_id, model, provider, credential_type, api_key_name, tags)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS usage_daily_mv TO usage_daily AS
SELECT
    team_id,
    toDate(started_at) AS day,
    user_id,
    model,
    provider,
    credential_type,
    api_key_name,
    tags,
    sum(input_tokens) AS input_tokens,
    sum(output_tokens) AS output_tokens,
    sum(cached_input_tokens) AS cached_input_tokens,
    sum(cache_creation_input_tokens) AS cache_creation_input_tokens,
    sum(cache_creation_1h_input_tokens) AS cache_creation_1h_input_tokens,
    sum(reasoning_tokens) AS reasoning_tokens,
    sum(market_cost) AS market_cost,
    sum(total_cost) AS total_cost,
    count() AS request_count,
    countIf(NOT price_known) AS unpriced_request_count,
    countIf(status != 'success') AS error_count
FROM usage_events
GROUP BY team_id, day, user_id, model, provider, credential_type, api_key_name, tags;
