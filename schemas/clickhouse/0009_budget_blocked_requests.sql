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
