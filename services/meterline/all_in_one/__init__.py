"""The embedded default: ingress, consumer and query service in one process on one port,
with the in-process bus (or Kafka, when configured) and ClickHouse embedded through chDB.

chDB allows one engine per process and one process per data directory, which is why the
consumer and the query service share this process when the warehouse is embedded."""
