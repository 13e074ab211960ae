"""check-config against mutated configs (hypothesis): exit 0 or 2, never a traceback; what it
echoes is quoted, escaped and bounded. Bounded: a fixed number of examples, in-process."""

from __future__ import annotations

import copy
import re

import pytest
import yaml

hypothesis = pytest.importorskip("hypothesis", reason="the test extra's hypothesis "
                                 "(pip install -e '.[test]') drives the mutations")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from daemon.cli.main import main  # noqa: E402
from daemon.config import ConfigError, parse_config, shown  # noqa: E402
from tests.onnx_models import scale_model  # noqa: E402

#: Control characters (bar the line breaks check-config itself writes) and escape sequences.
RAW_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f\u2028\u2029]")


def base_config(engine: str) -> dict:
    return {
        "cameras": [{
            "name": "gate", "url": "rtsp://viewer:s3cret@10.0.0.5:554/stream1", "fps": 5,
            "zones": [{"name": "door", "points": [[0.1, 0.1], [0.5, 0.1], [0.5, 0.5]]}],
            "lines": [{"name": "mid", "points": [[0.0, 0.5], [1.0, 0.5]]}],
        }],
        "engines": {"detector": engine, "device": "cpu"},
        "sinks": [{"type": "mqtt", "host": "127.0.0.1", "name": "mqtt"},
                  {"type": "webhook", "url": "http://127.0.0.1:9/hook"},
                  {"type": "events_jsonl", "path": "/tmp/duskwatch-fuzz.jsonl"}],
        "http": {"listen": "127.0.0.1:0"},
    }


def paths(node, prefix=()):
    """Every place in the tree: (path, is_container)."""
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from paths(v, prefix + (i,))


long_text = st.builds(lambda c, n: c * n, st.characters(), st.integers(1, 5000))
long_path = st.builds(lambda seg, n: "/" + "/".join([seg] * n),
                      st.text(alphabet="ab_", min_size=1, max_size=400), st.integers(1, 30))
hostile = st.sampled_from(["gate\nERROR duskwatch: forged line", "a\x00b", "\x1b[31mred\x1b[0m",
                           "x" * 100_000, "\u202etxt.exe", "../../etc/passwd", "", " ", "-1"])
values = st.one_of(
    st.text(max_size=200), long_text, long_path, hostile, st.integers(), st.none(), st.booleans(),
    st.floats(allow_nan=True, allow_infinity=True), st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=8), st.integers(), max_size=2),
)


@st.composite
def mutated(draw, base: dict) -> dict:
    cfg = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(list(paths(cfg))[1:]))
        parent = cfg
        for part in where[:-1]:
            parent = parent[part]
        op = draw(st.sampled_from(["replace", "replace", "delete", "add"]))
        if op == "delete" and isinstance(parent, dict):
            del parent[where[-1]]
        elif op == "add" and isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=20))] = draw(values)
        else:
            parent[where[-1]] = draw(values)
    return cfg


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    return str(scale_model(tmp_path_factory.mktemp("fuzz") / "det.onnx"))


def test_check_config_answers_every_mutated_config_with_0_or_2(engine, tmp_path_factory, capsys):
    folder = tmp_path_factory.mktemp("configs")
    base = base_config(engine)

    @settings(max_examples=150, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.function_scoped_fixture])
    @given(mutated(base))
    def check(cfg):
        path = folder / "c.yaml"
        path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
        capsys.readouterr()
        rc = main(["check-config", str(path)])
        err = capsys.readouterr().err
        assert rc in (0, 2), err
        assert "Traceback" not in err
        assert not RAW_CONTROL.search(err), ascii(err[:2000])
        assert all(len(line) <= 1200 for line in err.splitlines()), err[:3000]
        assert "s3cret" not in err

    check()


def test_an_engine_path_longer_than_the_file_system_allows_is_a_config_error(tmp_path):
    for path in ("/" + "a" * 300, "/" + "/".join(["b" * 200] * 30)):  # a name, the whole path
        cfg = base_config(path)
        with pytest.raises(ConfigError) as err:
            parse_config(cfg, "c.yaml")
        msg = str(err.value)
        assert msg.startswith("c.yaml: engines: detector: engine path '/")
        assert "cannot be used (File name too long)" in msg and "more characters)" in msg
        p = tmp_path / "c.yaml"
        p.write_text(yaml.safe_dump(cfg))
        assert main(["check-config", str(p)]) == 2


def test_a_crafted_camera_name_is_quoted_escaped_and_shortened():
    cfg = base_config("/x.onnx")
    cfg["engines"]["check_files"] = False
    cfg["cameras"][0]["name"] = "gate\nERROR duskwatch: all cameras down\x1b[2J" + "z" * 100_000
    with pytest.raises(ConfigError) as err:
        parse_config(cfg, "c.yaml")
    msg = str(err.value)
    assert "\\nERROR duskwatch: all cameras down\\x1b[2J" in msg
    assert not RAW_CONTROL.search(msg) and "\nERROR" not in msg and len(msg) < 400
    assert shown("it's\\") == "'it\\'s\\\\'"
    assert shown("x" * 70) == "'" + "x" * 64 + "'... (6 more characters)"
    assert shown("\u2028\x00") == "'\\u2028\\x00'"
