-- Small rollups for the common reports. usage_daily and usage_hourly keep every dimension
-- and the request's whole tag set, so for a busy team they hold nearly a row per user, model,
-- key, credential type and tag set, and a month of them is millions of rows to re-aggregate.
-- Most reports need only a few of those dimensions; each table here keeps only some, so it
-- is far smaller and answers those reports (the query service picks the smallest table that
-- holds every dimension a report groups or filters on, see query/builders/base.py):
--
--   usage_by_model_daily / usage_by_model_hourly: model, provider, credential type, key name
--     (reports by time, model, provider, credential type or key, without user or tags);
--   usage_by_user_daily: the user only (reports by time and user, e.g. day,user);
--   usage_by_user_model_daily: the user first in the sort key, then model, provider,
--     credential type and key (one user's report reads a few rows instead of scanning days).
--
-- Like the other rollups they are fed by materialized views on usage_events, carry the
-- deduplication window, and are rebuilt by `meterline rollups rebuild` (which finds every
-- view on usage_events). On a warehouse that already holds events each table is filled from
-- usage_hourly before its view exists; apply this migration with the consumers stopped (the
-- consumer applies migrations at start, before it reads), or rebuild the days that received
-- events while it ran.

CREATE TABLE IF NOT EXISTS usage_by_model_daily
(
    team_id                        LowCardinality(String),
    day                            Date,
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
-- By month, like usage_events, so a month of raw events and its rollups are rebuilt or
-- dropped together.
PARTITION BY toYYYYMM(day)
-- Team (every report is one team's), then day (every report names a range), then the
-- dimensions in the order reports group by them; the full key is what rows are summed by.
ORDER BY (team_id, day, model, provider, credential_type, api_key_name)
SETTINGS non_replicated_deduplication_window = 10000;

INSERT INTO usage_by_model_daily
SELECT
    team_id, toDate(hour) AS day, model, provider, credential_type, api_key_name,
    sum(input_tokens), sum(output_tokens), sum(cached_input_tokens),
    sum(cache_creation_input_tokens), sum(cache_creation_1h_input_tokens),
    sum(reasoning_tokens), sum(market_cost), sum(total_cost), sum(request_count),
    sum(unpriced_request_count), sum(error_count)
FROM usage_hourly
WHERE (SELECT count() FROM usage_by_model_daily) = 0
GROUP BY team_id, day, model, provider, credential_type, api_key_name;

CREATE MATERIALIZED VIEW IF NOT EXISTS usage_by_model_daily_mv TO usage_by_model_daily AS
SELECT
    team_id,
    toDate(started_at) AS day,
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
GROUP BY team_id, day, model, provider, credential_type, api_key_name;

CREATE TABLE IF NOT EXISTS usage_by_model_hourly
(
    team_id                        LowCardinality(String),
    hour                           DateTime('UTC'),
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
-- Team, then hour, then the dimensions: the same reasons as usage_by_model_daily.
ORDER BY (team_id, hour, model, provider, credential_type, api_key_name)
SETTINGS non_replicated_deduplication_window = 10000;

INSERT INTO usage_by_model_hourly
SELECT
    team_id, hour, model, provider, credential_type, api_key_name,
    sum(input_tokens), sum(output_tokens), sum(cached_input_tokens),
    sum(cache_creation_input_tokens), sum(cache_creation_1h_input_tokens),
    sum(reasoning_tokens), sum(market_cost), sum(total_cost), sum(request_count),
    sum(unpriced_request_count), sum(error_count)
FROM usage_hourly
WHERE (SELECT count() FROM usage_by_model_hourly) = 0
GROUP BY team_id, hour, model, provider, credential_type, api_key_name;

CREATE MATERIALIZED VIEW IF NOT EXISTS usage_by_model_hourly_mv TO usage_by_model_hourly AS
SELECT
    team_id,
    toStartOfHour(started_at) AS hour,
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
GROUP BY team_id, hour, model, provider, credential_type, api_key_name;

CREATE TABLE IF NOT EXISTS usage_by_user_daily
(
    team_id                        LowCardinality(String),
    day                            Date,
    user_id                        String,
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
PARTITION BY toYYYYMM(day)
-- Team, then day, then user: a day,user report reads the team's range in exactly the
-- order it groups and sorts by, so it aggregates and pages without a hash table of users.
ORDER BY (team_id, day, user_id)
SETTINGS non_replicated_deduplication_window = 10000;

INSERT INTO usage_by_user_daily
SELECT
    team_id, toDate(hour) AS day, user_id,
    sum(input_tokens), sum(output_tokens), sum(cached_input_tokens),
    sum(cache_creation_input_tokens), sum(cache_creation_1h_input_tokens),
    sum(reasoning_tokens), sum(market_cost), sum(total_cost), sum(request_count),
    sum(unpriced_request_count), sum(error_count)
FROM usage_hourly
WHERE (SELECT count() FROM usage_by_user_daily) = 0
GROUP BY team_id, day, user_id;

CREATE MATERIALIZED VIEW IF NOT EXISTS usage_by_user_daily_mv TO usage_by_user_daily AS
SELECT
    team_id,
    toDate(started_at) AS day,
    user_id,
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
GROUP BY team_id, day, user_id;

CREATE TABLE IF NOT EXISTS usage_by_user_model_daily
(
    team_id                        LowCardinality(String),
    user_id                        String,
    day                            Date,
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
PARTITION BY toYYYYMM(day)
-- Team, then user before day: this table serves reports filtered on one user, and with the
-- user first that user's whole range is one contiguous run of rows, not a slice of every day.
ORDER BY (team_id, user_id, day, model, provider, credential_type, api_key_name)
SETTINGS non_replicated_deduplication_window = 10000;

INSERT INTO usage_by_user_model_daily
SELECT
    team_id, user_id, toDate(hour) AS day, model, provider, credential_type, api_key_name,
    sum(input_tokens), sum(output_tokens), sum(cached_input_tokens),
    sum(cache_creation_input_tokens), sum(cache_creation_1h_input_tokens),
    sum(reasoning_tokens), sum(market_cost), sum(total_cost), sum(request_count),
    sum(unpriced_request_count), sum(error_count)
FROM usage_hourly
WHERE (SELECT count() FROM usage_by_user_model_daily) = 0
GROUP BY team_id, user_id, day, model, provider, credential_type, api_key_name;

CREATE MATERIALIZED VIEW IF NOT EXISTS usage_by_user_model_daily_mv TO usage_by_user_model_daily AS
SELECT
    team_id,
    user_id,
    toDate(started_at) AS day,
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
GROUP BY team_id, user_id, day, model, provider, credential_type, api_key_name;
