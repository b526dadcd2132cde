-- Budget and spike alerts, and their delivery to each webhook (services/meterline/common/alerts).
--
-- budget_alerts holds one row per alert. The alert's id is a hash of what makes it the same
-- alert (team, kind, subject, scope, period, threshold), so a second replica or a restarted
-- process raising it again writes the same id. The store skips the insert when the id is
-- already there; when two raises race, both rows are written and ReplacingMergeTree keeps
-- one per (team_id, alert_id) at its next merge, the later raise by raised_at (read with
-- FINAL to see one row before the merge).
--
-- budget_alert_deliveries holds the state of each alert at each of its webhooks: written
-- pending (attempts = 0) when the alert is raised, and written again after every attempt
-- with one more attempt. ReplacingMergeTree(attempts) keeps the row with the most attempts,
-- that is the latest state; a raise repeated after a delivery writes attempts = 0 again,
-- which never replaces a row that was tried, so the alert is not sent a second time.
--
-- Neither table has a TTL: alerts are few (a handful per budget and period), and analysts
-- compare them across periods.
CREATE TABLE IF NOT EXISTS budget_alerts
(
    alert_id          String COMMENT 'deterministic; the Meterline-Idempotency-Key of its deliveries',
    team_id           LowCardinality(String),
    kind              LowCardinality(String) COMMENT 'budget_threshold, budget_reset or spike',
    subject           String COMMENT 'the budget id; for a spike, the dimension',
    scope             Array(Tuple(dimension String, value String)) COMMENT 'e.g. [(user, ana), (tag, feature:x)]',
    period_start      DateTime64(3, 'UTC') COMMENT 'start of the budget period or spike window',
    threshold_percent Nullable(UInt16) COMMENT 'the threshold crossed, percent of limit_usd',
    spend_usd         Decimal(38, 12) COMMENT 'spend in the period when the alert was raised',
    limit_usd         Nullable(Decimal(38, 12)) COMMENT 'the budget limit',
    baseline_usd      Nullable(Decimal(38, 12)) COMMENT 'for a spike: the usual spend it is compared with',
    message           String COMMENT 'the sentence sent to people',
    raised_at         DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(raised_at)
-- The sort key is what ReplacingMergeTree deduplicates by: one row per alert id. Team first
-- because GET /v1/alerts reads one team's alerts.
ORDER BY (team_id, alert_id);
-- No PARTITION BY in either table: rows are replaced only within a partition, and the
-- tables are small enough for one.

CREATE TABLE IF NOT EXISTS budget_alert_deliveries
(
    team_id          LowCardinality(String),
    alert_id         String,
    webhook          LowCardinality(String) COMMENT 'the webhook name in the team configuration',
    status           Enum8('pending' = 1, 'delivered' = 2, 'failed' = 3) COMMENT 'failed: refused (4xx) or out of attempts, not retried',
    attempts         UInt32 COMMENT 'requests sent so far; the version ReplacingMergeTree keeps the highest of',
    next_attempt_at  DateTime64(3, 'UTC') COMMENT 'a pending delivery is sent again from then on',
    last_attempt_at  Nullable(DateTime64(3, 'UTC')),
    last_http_status Nullable(UInt16) COMMENT 'null: no answer (timeout, connection refused)',
    last_error       String COMMENT 'empty once delivered',
    delivered_at     Nullable(DateTime64(3, 'UTC')) COMMENT 'when the receiver answered 2xx',
    recorded_at      DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(attempts)
-- One row per alert and webhook is the deduplication key; by team and alert first, so an
-- alert's deliveries are read together.
ORDER BY (team_id, alert_id, webhook);
