"""Job ids: sortable by time, unique, strictly validated."""

from __future__ import annotations

import pytest

from shared.ids import ID_LENGTH, id_time_ms, is_job_id, is_unique_id, job_id, new_id, split_id


def test_ids_sort_by_creation_time() -> None:
    ids = [new_id(1_700_000_000_000 + step) for step in range(0, 5000, 7)]
    assert ids == sorted(ids)


def test_ids_are_unique_and_well_formed() -> None:
    ids = {new_id(1_700_000_000_000) for _ in range(10_000)}
    assert len(ids) == 10_000
    assert all(len(i) == ID_LENGTH and is_unique_id(i) and not is_job_id(i) for i in ids)
    public = {job_id(i, "mail:eu.1") for i in ids}
    assert all(is_job_id(i) and split_id(i)[1] == "mail:eu.1" and split_id(i)[0] in ids for i in public)


def test_a_job_id_names_its_queue() -> None:
    unique = new_id(1_700_000_000_000)
    assert job_id(unique, "mail") == f"{unique}.mail"
    assert split_id(f"{unique}.a.b") == (unique, "a.b")
    assert id_time_ms(job_id(unique, "mail")) == 1_700_000_000_000


def test_time_round_trips() -> None:
    assert id_time_ms(new_id(1_763_830_000_123)) == 1_763_830_000_123


@pytest.mark.parametrize(
    "hostile",
    [
        "",
        "../../etc/passwd",
        "01ABC",
        "x" * 10_000,
        "01HZZZZZZZZZZZZZZZZZZZZZZI",
        "01hzzzzzzzzzzzzzzzzzzzzzzz",
        "jobq:job:01H",
        "01HZZZZZZZZZZZZZZZZZZZZZZ\n",
        None,
        42,
        "81HZZZZZZZZZZZZZZZZZZZZZZZ",
        "01HZZZZZZZZZZZZZZZZZZZZZZZ",  # a unique part alone names no queue
        "01HZZZZZZZZZZZZZZZZZZZZZZZ.",
        "01HZZZZZZZZZZZZZZZZZZZZZZZ.-q",
        "01HZZZZZZZZZZZZZZZZZZZZZZZ.q}",
        "01HZZZZZZZZZZZZZZZZZZZZZZZ.q\n",
        "01HZZZZZZZZZZZZZZZZZZZZZZZ." + "q" * 65,
    ],
)
def test_hostile_ids_are_rejected(hostile: object) -> None:
    assert not is_job_id(hostile)


def test_out_of_range_time_is_refused() -> None:
    with pytest.raises(ValueError):
        new_id(-1)
    with pytest.raises(ValueError):
        new_id(1 << 48)
