-- Budgets: the refusals the gateways counted, and the budgets made through the API.

-- Requests a hard budget refused before forwarding them. They are not usage (nothing was
-- forwarded or billed), so they never reach usage_events or the rollups; each ingress adds
-- its counts here on its spend refresh, and GET /v1/budgets/status reads them.
CREATE TABLE IF NOT EXISTS budget_blocked_requests
(
    team_id         LowCardinality(String),
    budget_id       LowCardinality(String),
    budget_value    Array(Tuple(dimension String, value String)) COMMENT 'the values of the budget''s "*" dimensions (empty: one value for the whole scope)',
    period_start    DateTime('UTC') COMMENT 'the start of the period the refusals fell in (1970-01-01 for a budget that never resets)',
    blocked_count   UInt64
)
ENGINE = SummingMergeTree
-- A status names a team and a budget and asks for its current period; the full key is
-- what counts are summed by. No TTL: a budget that never resets keeps one period forever,
-- and a row per budget value and period is small next to the rollups.
ORDER BY (team_id, budget_id, period_start, budget_value);

-- Budgets made through the API (PUT /v1/budgets), beside those of meterline.toml: every
-- change is a new row; the latest row of a budget wins and says whether it was deleted.
CREATE TABLE IF NOT EXISTS budgets
(
    team_id     LowCardinality(String),
    budget_id   String,
    definition  String COMMENT 'the budget as JSON, as PUT /v1/budgets took it',
    deleted     Bool,
    updated_at  DateTime64(6, 'UTC'),
    updated_by  String COMMENT 'the name of the gateway key that made the change'
)
ENGINE = ReplacingMergeTree(updated_at)
-- One row per budget after merges (the latest); reads still take argMax by updated_at,
-- since merges are eventual.
ORDER BY (team_id, budget_id);
