-- Event schema v2: audio tokens, web searches and zero data retention.
--
-- usage_events gains the new event fields. Rows written before this migration read 0 and
-- false, which is what those events said: no audio, no searches, and no provider was
-- configured as keeping no data.
--
-- zero_data_retention becomes a report dimension (group_by and filter). The rollups that
-- keep every dimension (usage_hourly, usage_daily), and the model rollups, gain it as the
-- last column of their sort key: the sort key is what a SummingMergeTree sums rows by, so
-- a dimension outside it would be merged away. It depends on the provider alone (a provider
-- is configured as ZDR or not), so it adds no rows to the model rollups. The other rollups
-- do not keep it; a report that needs it reads one of these four (query/builders/base.py).
--
-- Each view is dropped and created again with the new query. Not ALTER TABLE ... MODIFY
-- QUERY: on the embedded engine a view changed that way no longer recognises, after a
-- restart, a batch inserted again with its deduplication token, and its rollup counts the
-- batch twice (tests/integration/warehouse/test_deduplication_across_restarts.py). Between
-- the drop and the create an insert would miss that rollup: apply this migration with the
-- consumers stopped (the consumer applies migrations at start, before it reads), or rebuild
-- the days that received events meanwhile (`meterline rollups rebuild`). Every statement can
-- be repeated.

ALTER TABLE usage_events
    ADD COLUMN IF NOT EXISTS input_audio_tokens UInt64 DEFAULT 0
        COMMENT 'audio, part of input_tokens (never a cache read or write)' AFTER reasoning_tokens,
    ADD COLUMN IF NOT EXISTS output_audio_tokens UInt64 DEFAULT 0
        COMMENT 'audio, part of output_tokens' AFTER input_audio_tokens,
    ADD COLUMN IF NOT EXISTS web_search_requests UInt64 DEFAULT 0
        COMMENT 'server-side web searches, billed per search' AFTER output_audio_tokens,
    ADD COLUMN IF NOT EXISTS zero_data_retention Bool DEFAULT false
        COMMENT 'served by a provider configured as keeping no data' AFTER web_search_requests;

ALTER TABLE usage_hourly
    ADD COLUMN IF NOT EXISTS zero_data_retention Bool AFTER tags,
    MODIFY ORDER BY (team_id, hour, user_id, model, provider, credential_type, api_key_name, tags, zero_data_retention);

DROP VIEW IF EXISTS usage_hourly_mv;

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
    zero_data_retention,
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
GROUP BY team_id, hour, user_id, model, provider, credential_type, api_key_name, tags, zero_data_retention;

ALTER TABLE usage_daily
    ADD COLUMN IF NOT EXISTS zero_data_retention Bool AFTER tags,
    MODIFY ORDER BY (team_id, day, user_id, model, provider, credential_type, api_key_name, tags, zero_data_retention);

DROP VIEW IF EXISTS usage_daily_mv;

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
    zero_data_retention,
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
GROUP BY team_id, day, user_id, model, provider, credential_type, api_key_name, tags, zero_data_retention;

ALTER TABLE usage_by_model_hourly
    ADD COLUMN IF NOT EXISTS zero_data_retention Bool AFTER api_key_name,
    MODIFY ORDER BY (team_id, hour, model, provider, credential_type, api_key_name, zero_data_retention);

DROP VIEW IF EXISTS usage_by_model_hourly_mv;

CREATE MATERIALIZED VIEW IF NOT EXISTS usage_by_model_hourly_mv TO usage_by_model_hourly AS
SELECT
    team_id,
    toStartOfHour(started_at) AS hour,
    model,
    provider,
    credential_type,
    api_key_name,
    zero_data_retention,
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
GROUP BY team_id, hour, model, provider, credential_type, api_key_name, zero_data_retention;

ALTER TABLE usage_by_model_daily
    ADD COLUMN IF NOT EXISTS zero_data_retention Bool AFTER api_key_name,
    MODIFY ORDER BY (team_id, day, model, provider, credential_type, api_key_name, zero_data_retention);

DROP VIEW IF EXISTS usage_by_model_daily_mv;

CREATE MATERIALIZED VIEW IF NOT EXISTS usage_by_model_daily_mv TO usage_by_model_daily AS
SELECT
    team_id,
    toDate(started_at) AS day,
    model,
    provider,
    credential_type,
    api_key_name,
    zero_data_retention,
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
GROUP BY team_id, day, model, provider, credential_type, api_key_name, zero_data_retention;
