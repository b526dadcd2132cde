"""Where usage events go once a request is finished.

``publish()`` is synchronous and cheap on purpose: it runs after the response has been sent
and must never block, fail or slow the caller. Every implementation keeps that promise.

- ``kafka``: ``KafkaPublisher``, the distributed mode, with the local spool (``spool.py``)
  behind its buffer; ``health``: ``PublisherHealth``, whether Kafka is taking its events.
- ``bus``: ``BusPublisher``, the embedded mode's bus (its local log on disk, or memory).
- ``memory``: ``MemoryPublisher``, a list, for tests.
- ``protocol``: ``UsagePublisher``, what all of them are; ``metrics``: their counters in the
  Prometheus text format.
"""
