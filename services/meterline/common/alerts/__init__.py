"""Alert delivery: once something has decided an alert is due (a budget threshold crossed,
a budget reset, a spend spike), it is raised here (a store write, idempotent by its
deterministic id) and delivered to the team's webhooks, signed, with retries, at least
once and in the normal case exactly once.

- ``model``: the ``Alert``, its id, its JSON and Slack bodies;
- ``signature``: the ``Meterline-Signature`` header and ``verify_signature`` for receivers;
- ``webhooks``: the request, the sender (httpx or in memory), retries;
- ``store``: ``AlertStore`` in the warehouse or in memory;
- ``delivery``: the ``AlertDelivery`` loop and its settings."""

from meterline.common.alerts.delivery import AlertDelivery, AlertSettings
from meterline.common.alerts.model import KINDS, Alert, alert_fields, alert_id
from meterline.common.alerts.signature import (
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    verify_signature,
)
from meterline.common.alerts.store import (
    AlertStore,
    ClickHouseAlertStore,
    Delivery,
    MemoryAlertStore,
)
from meterline.common.alerts.webhooks import (
    HttpxSender,
    MemorySender,
    RetryPolicy,
    SendResult,
    WebhookSender,
)

__all__ = [
    "IDEMPOTENCY_HEADER",
    "KINDS",
    "SIGNATURE_HEADER",
    "Alert",
    "AlertDelivery",
    "AlertSettings",
    "AlertStore",
    "ClickHouseAlertStore",
    "Delivery",
    "HttpxSender",
    "MemoryAlertStore",
    "MemorySender",
    "RetryPolicy",
    "SendResult",
    "WebhookSender",
    "alert_fields",
    "alert_id",
    "verify_signature",
]
