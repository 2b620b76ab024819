"""A fleet: 3 daemons with distinct node_ids on one broker, 2 consumers in one MQTT v5 shared
subscription; every result reaches exactly one consumer and none is lost."""

from __future__ import annotations

import time

import cv2

from tests.conftest import DEMO, demo_config, start_edged, write_config
from tests.helpers.subscriber import Subscriber

FRAMES = 40


def test_three_daemons_two_shared_consumers_each_result_exactly_once(tmp_path, broker):
    folder = tmp_path / "imgs"
    folder.mkdir()
    cap = cv2.VideoCapture(str(DEMO / "conveyor.mp4"))
    for i in range(FRAMES):
        ok, frame = cap.read()
        assert ok
        cv2.imwrite(str(folder / f"{i:03d}.png"), frame)
    consumers = [Subscriber(broker.port, "$share/g/edged/+/+/result", f"consumer-{i}").start()
                 for i in range(2)]
    procs = []
    try:
        for n in range(3):
            cfg = demo_config(broker.port)
            cfg["node_id"] = f"node-{n}"
            cfg["cameras"]["conveyor"]["source"] = str(folder)
            cfg["mqtt"]["outbox"] = {"path": str(tmp_path / f"outbox-{n}.db")}
            procs.append(start_edged("run", "-c",
                                     str(write_config(tmp_path / f"c{n}.yaml", cfg))))
        for proc in procs:
            _, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
        total = 3 * FRAMES
        assert consumers[0].wait_for(
            lambda: sum(len(c.messages) for c in consumers) >= total, 20)
        time.sleep(0.5)  # a duplicate would arrive now
        got = [(m.json["node_id"], m.json["camera"], m.json["seq"])
               for c in consumers for m in c.messages]
        assert len(got) == total == len(set(got)), "a result was lost or delivered twice"
        assert set(got) == {(f"node-{n}", "conveyor", s) for n in range(3) for s in range(FRAMES)}
        assert all(c.messages for c in consumers), "the group shares the load"
    finally:
        for proc in procs:
            proc.kill()
        for c in consumers:
            c.stop()
