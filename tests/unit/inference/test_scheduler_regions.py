"""The scheduler with region groups: one frame's regions together, fairness counting regions."""

from __future__ import annotations

import itertools

import numpy as np

from edged.frame import Frame
from edged.inference.scheduler import Part, Scheduler


def _frame(i: int, region: str | None = None) -> Frame:
    return Frame(np.zeros((4, 4, 3), np.uint8), i, float(i), float(i), region_name=region)


def _group(camera: str, i: int, n: int, tickets: dict) -> list[Part]:
    return [Part(_frame(i, f"r{j}"), f"{camera}/r{j}",
                 tickets.setdefault(f"{camera}/r{j}", itertools.count()))
            for j in range(n)]


def _drain(s: Scheduler, limit: int = 1000) -> list:
    out = []
    for _ in range(limit):
        job = s.get(timeout=0)
        if job is None:
            return out
        out.append(job)
    raise AssertionError("scheduler did not drain")


def never() -> bool:
    return False


def test_a_camera_with_12_regions_cannot_starve_one_with_one():
    s = Scheduler(capacity=4)
    tickets: dict = {}
    s.add_camera("big", "every")
    s.add_camera("small", "every")
    for i in range(3):
        s.put("big", _group("big", i, 12, tickets), never)
        s.put("small", _frame(i), never)
    jobs = _drain(s)
    order = [j.camera for j in jobs]
    assert order.count("big") == 36 and order.count("small") == 3
    # One classification per turn: the small camera's frames are served among the first
    # jobs, not after 36 of the big one's.
    assert [i for i, c in enumerate(order) if c == "small"] == [1, 3, 5]


def test_a_group_is_served_whole_in_order_with_per_region_tickets():
    s = Scheduler(capacity=4)
    tickets: dict = {}
    s.add_camera("cam", "every")
    for i in range(2):
        s.put("cam", _group("cam", i, 3, tickets), never)
    jobs = _drain(s)
    assert [(j.frame.index, j.subject, j.ticket) for j in jobs] == [
        (0, "cam/r0", 0), (0, "cam/r1", 0), (0, "cam/r2", 0),
        (1, "cam/r0", 1), (1, "cam/r1", 1), (1, "cam/r2", 1)]


def test_latest_replaces_a_waiting_group_never_a_started_one():
    s = Scheduler(capacity=4)
    tickets: dict = {}
    s.add_camera("cam", "latest")
    first = _group("cam", 0, 3, tickets)
    assert s.put("cam", first, never) is None
    assert s.get(timeout=0).frame.index == 0  # frame 0 started
    assert s.put("cam", _group("cam", 1, 3, tickets), never) is None
    third = _group("cam", 2, 3, tickets)
    replaced = s.put("cam", third, never)  # replaces frame 1, which had not started
    assert [p.frame.index for p in replaced] == [1, 1, 1]
    jobs = _drain(s)
    assert [j.frame.index for j in jobs] == [0, 0, 2, 2, 2]
    # No ticket was spent on the replaced frame: each region's seq stays gap-free.
    assert [j.ticket for j in jobs if j.subject == "cam/r0"] == [1]


def test_remove_waits_for_a_started_group_and_empty_groups_are_ignored():
    s = Scheduler(capacity=4)
    tickets: dict = {}
    s.add_camera("cam", "every")
    assert s.put("cam", [], never) is None
    s.put("cam", _group("cam", 0, 2, tickets), never)
    s.get(timeout=0)
    assert s.remove_camera("cam", timeout=0) == 1  # the started group's rest was dropped
    assert s.get(timeout=0) is None
