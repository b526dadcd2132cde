-- A small per-tag rollup for the common tag report ("what did each feature cost this month",
-- perhaps for one model or provider). usage_by_tag_daily also keeps the credential type and
-- the key name, so a busy team has several rows per tag, model and day, and a month of it is
-- hundreds of thousands of rows to re-aggregate; this table keeps only the model and the
-- provider, so it is several times smaller and answers tag reports that neither group nor
-- filter on anything else (the query service picks it then, see query/builders/base.py).
--
-- Fed by a materialized view on usage_events like the other rollups, and rebuilt by
-- `meterline rollups rebuild`. On a warehouse that already holds events it is filled from
-- usage_by_tag_daily before its view exists; apply it with the consumers stopped (the
-- consumer applies migrations at start, before it reads), or rebuild the days that received
-- events while it ran.

CREATE TABLE IF NOT EXISTS usage_by_tag_model_daily
(
    team_id                        LowCardinality(String),
    day                            Date,
    tag                            LowCardinality(String),
    model                          LowCardinality(String),
    provider                       LowCardinality(String),
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
-- By month, like usage_events, so a month of raw events and its rollups are rebuilt or
-- dropped together.
PARTITION BY toYYYYMM(day)
-- Team (every report is one team's), then day (every report names a range), then the tag,
-- which every read of this table groups on; the full key is what rows are summed by.
ORDER BY (team_id, day, tag, model, provider)
-- The consumer's insert deduplication must hold for every view's target table too.
SETTINGS non_replicated_deduplication_window = 10000;

INSERT INTO usage_by_tag_model_daily
SELECT
    team_id, day, tag, model, provider,
    sum(input_tokens), sum(output_tokens), sum(cached_input_tokens),
    sum(cache_creation_input_tokens), sum(cache_creation_1h_input_tokens),
    sum(reasoning_tokens), sum(market_cost), sum(total_cost), sum(request_count),
    sum(unpriced_request_count), sum(error_count)
FROM usage_by_tag_daily
WHERE (SELECT count() FROM usage_by_tag_model_daily) = 0
GROUP BY team_id, day, tag, model, provider;

CREATE MATERIALIZED VIEW IF NOT EXISTS usage_by_tag_model_daily_mv TO usage_by_tag_model_daily AS
SELECT
    team_id,
    toDate(started_at) AS day,
    tag,
    model,
    provider,
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
GROUP BY team_id, day, tag, model, provider;
