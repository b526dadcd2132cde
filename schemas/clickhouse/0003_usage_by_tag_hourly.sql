-- One row per tag of each request, without the user: the small table behind group_by=tag
-- when the report filters on neither user nor tags (those need usage_hourly's full tag set
-- and user). A request with three tags is counted under each of the three.
CREATE TABLE IF NOT EXISTS usage_by_tag_hourly
(
    team_id                        LowCardinality(String),
    hour                           DateTime('UTC'),
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
-- By month, like the other rollups.
PARTITION BY toYYYYMM(hour)
-- Team and time first as everywhere; the tag right after, since it is always grouped on.
ORDER BY (team_id, hour, tag, model, provider, credential_type, api_key_name)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS usage_by_tag_hourly_mv TO usage_by_tag_hourly AS
SELECT
    team_id,
    toStartOfHour(started_at) AS hour,
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
GROUP BY team_id, hour, tag, model, provider, credential_type, api_key_name;
