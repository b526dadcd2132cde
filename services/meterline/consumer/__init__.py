"""The consumer: usage events from Kafka (or the in-process bus) into ClickHouse.

The steps, one file each, are assembled in ``pipeline.py``."""
