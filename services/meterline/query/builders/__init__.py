"""One query builder per report shape. Each returns SQL plus parameters for ClickHouse's
server-side binding (``{name:Type}``); user input only ever travels as a parameter, and the
team is a required argument of every builder, so no query can leave out the tenant."""

from meterline.query.builders.alerts import build_alert_deliveries_query, build_alerts_query
from meterline.query.builders.base import BuiltQuery, Source, choose_source
from meterline.query.builders.credits import build_credits_query
from meterline.query.builders.generation import build_generation_query
from meterline.query.builders.report import build_report_query
from meterline.query.builders.tags import build_tag_report
from meterline.query.builders.usage import build_usage_report

__all__ = [
    "BuiltQuery",
    "Source",
    "build_alert_deliveries_query",
    "build_alerts_query",
    "build_credits_query",
    "build_generation_query",
    "build_report_query",
    "build_tag_report",
    "build_usage_report",
    "choose_source",
]
