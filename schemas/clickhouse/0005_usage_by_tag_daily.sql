-- The per-tag rollup by UTC day: what group_by=tag reads for UTC reports by day, week or
-- month, so a month of tag rows is thirty rows per tag and dimension set instead of 720.
-- Like usage_by_tag_hourly it keeps neither the user nor the request's other tags; reports
-- that filter on those read usage_daily's full tag set instead. Untagged requests have no
-- row here (ARRAY JOIN of an empty array yields nothing).
CREATE TABLE IF NOT EXISTS usage_by_tag_daily
(
    team_id                        LowCardinality(String),
    day                            Date,
    tag                            LowCardinality(String),
    model                          LowCardinality(String),
    provider                       LowCardinality(String),
    credential_type                LowCardinality(String),
    api_key_name                   LowCardinality(String),
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
-- By month, like usage_events, so a month of raw events and its rollups can be rebuilt or
-- dropped together.
PARTITION BY toYYYYMM(day)
-- Team first (every report is one team's), then the day (every report names a range), then
-- the tag, which every read of this table groups on; the full key is what rows are summed by.
ORDER BY (team_id, day, tag, model, provider, credential_type, api_key_name)
-- The consumer's insert deduplication must hold for every view's target table too.
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS usage_by_tag_daily_mv TO usage_by_tag_daily AS
SELECT
    team_id,
    toDate(started_at) AS day,
    tag,
    model,
    provider,
    credential_type,
    api_key_name,
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
ARRAY JOIN tags AS tag
GROUP BY team_id, day, tag, model, provider, credential_type, api_key_name;
