"""The query service: ``GET /v1/report`` and ``GET /v1/generation``, team-scoped, reading
the ClickHouse rollups (and the raw table for one request's facts)."""
