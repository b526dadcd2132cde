"""The Kafka publisher's view of Kafka's health, on its own: no broker, no event loop,
times passed in."""

from __future__ import annotations

from meterline.ingress.publishing.health import PublisherHealth


def test_healthy_until_a_failure_and_again_from_the_next_acknowledgement() -> None:
    health = PublisherHealth(stall_seconds=5)
    assert health.healthy
    assert health.down()  # news: it was healthy
    assert not health.healthy
    assert not health.down()  # already down: nothing to report again
    assert health.acknowledged(now=10.0)  # news: it was down
    assert health.healthy
    assert not health.acknowledged(now=11.0)


def test_progress_without_an_acknowledgement_does_not_make_it_healthy() -> None:
    health = PublisherHealth(stall_seconds=5)
    health.down()
    health.progress(now=3.0)  # a connection opened: Kafka has not taken anything yet
    assert not health.healthy


def test_a_stall_is_records_in_flight_and_nothing_moving_for_longer_than_the_limit() -> None:
    health = PublisherHealth(stall_seconds=5)
    health.progress(now=100.0)
    assert not health.stalled(now=105.0, in_flight=3)  # exactly the limit: not yet
    assert health.stalled(now=105.1, in_flight=3)
    # Nothing in flight: nothing to wait for, however long it has been quiet.
    assert not health.stalled(now=1000.0, in_flight=0)


def test_progress_and_acknowledgements_restart_the_stall_clock() -> None:
    health = PublisherHealth(stall_seconds=5)
    health.progress(now=0.0)
    assert health.stalled(now=6.0, in_flight=1)
    health.progress(now=6.0)
    assert not health.stalled(now=10.0, in_flight=1)
    health.acknowledged(now=10.0)
    assert not health.stalled(now=14.0, in_flight=1)
    assert health.stalled(now=15.5, in_flight=1)


def test_a_stall_is_looked_for_often_enough_to_see_it_soon() -> None:
    assert PublisherHealth(stall_seconds=5).check_seconds == 0.25
    assert PublisherHealth(stall_seconds=0.4).check_seconds == 0.1
