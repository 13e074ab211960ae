import json
import logging

import pytest

from daemon.pipeline.frames import Result
from daemon.pipeline.sinks import JsonlSink, SinkSet
from engines.detections import Detections


def result(camera="gate"):
    return Result(camera, 7, 1700000000.25, True,
                  Detections.from_arrays([[1.0, 2.0, 30.5, 40.25]], [0.87654], [0], {0: "person"}))


def test_jsonl_file_lines(tmp_path):
    path = tmp_path / "out.jsonl"
    sink = JsonlSink(str(path))
    sink.write(result("a"))
    sink.write(result("b"))
    sink.close()
    lines = [json.loads(l) for l in path.read_text().splitlines()]
    assert [l["camera"] for l in lines] == ["a", "b"]
    first = lines[0]
    assert first["time"] == "2023-11-14T22:13:20.250+00:00"
    assert first["epoch"] == 1700000000.25
    assert first["enhanced"] is True and first["seq"] == 7
    assert first["detections"] == [{"box": [1.0, 2.0, 30.5, 40.2], "score": 0.8765,
                                    "class": "person", "class_id": 0}]


def test_jsonl_stdout(capsys):
    JsonlSink("-").write(result())
    assert json.loads(capsys.readouterr().out)["camera"] == "gate"


class Broken:
    name = "broken"

    def write(self, r):
        raise OSError("disk full")

    def close(self):
        raise OSError("still full")


class Keep:
    name = "keep"

    def __init__(self):
        self.got = []

    def write(self, r):
        self.got.append(r)

    def close(self):
        pass


def test_failing_sink_is_counted_logged_once_and_others_go_on(caplog):
    failures = []
    keep = Keep()
    sinks = SinkSet([Broken(), keep], on_failure=failures.append, log_interval_s=3600)
    with caplog.at_level(logging.ERROR, logger="duskwatch.sinks"):
        for _ in range(5):
            sinks.write(result())
    assert len(keep.got) == 5
    assert failures == ["broken"] * 5
    errors = [r for r in caplog.records if "write failed" in r.getMessage()]
    assert len(errors) == 1 and "disk full" in errors[0].getMessage()
    sinks.close()  # a failing close is logged, not raised


def test_jsonl_file_exists_from_the_start(tmp_path):
    path = tmp_path / "events.jsonl"
    sink = JsonlSink(str(path))
    assert path.is_file() and path.read_text() == ""
    sink.close()


def test_jsonl_unopenable_path_does_not_raise_at_start(tmp_path):
    sink = JsonlSink(str(tmp_path / "missing-dir" / "events.jsonl"))  # logged, not raised
    with pytest.raises(OSError):  # each write fails (SinkSet counts it) until the folder exists
        sink.write(result())
    (tmp_path / "missing-dir").mkdir()
    sink.write(result())
    assert (tmp_path / "missing-dir" / "events.jsonl").read_text().count("\n") == 1
