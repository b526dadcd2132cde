from meterline.consumer.dedupe import RecentIds


def _ids(first: int, count: int) -> list[str]:
    return [f"id-{n}" for n in range(first, first + count)]


def test_the_newest_capacity_ids_are_always_remembered() -> None:
    recent = RecentIds(capacity=10)
    remembered: list[str] = []
    for first in range(0, 200, 7):  # batches of 7 ids, not a divisor of the capacity
        batch = _ids(first, 7)
        recent.remember(batch)
        remembered += batch
        assert all(event_id in recent for event_id in remembered[-10:])


def test_ids_older_than_twice_the_capacity_are_forgotten() -> None:
    recent = RecentIds(capacity=10)
    for first in range(0, 100, 5):
        recent.remember(_ids(first, 5))
    assert "id-0" not in recent
    assert sum(event_id in recent for event_id in _ids(0, 100)) <= 20


def test_an_id_never_remembered_is_not_recent() -> None:
    recent = RecentIds(capacity=10)
    recent.remember(_ids(0, 5))
    assert "id-5" not in recent


def test_a_zero_window_remembers_nothing() -> None:
    recent = RecentIds(capacity=0)
    recent.remember(_ids(0, 5))
    assert "id-0" not in recent
