"""Code shared by every Meterline service: the usage event, its codec, settings, pricing,
the ClickHouse client factory and the migration runner. No web framework here."""
