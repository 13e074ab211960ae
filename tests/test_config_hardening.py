"""Config reading as a careless operator or a hostile file would exercise it (issue 12, item 6
and the bounds of item 2): every input bounded, every error one readable line per problem."""

import subprocess
import sys

import pytest

from daemon.config import ConfigError, load_config, parse_config, redact_url
from daemon.config_yaml import MAX_BYTES


def write(tmp_path, text: str | bytes, name="c.yaml"):
    p = tmp_path / name
    (p.write_bytes if isinstance(text, bytes) else p.write_text)(text)
    return p


def minimal(url="rtsp://10.0.0.5/x"):
    return {"cameras": [{"name": "gate", "url": url}],
            "engines": {"detector": "/x/det.onnx", "check_files": False}}


@pytest.mark.parametrize("url", [" rtsp://10.0.0.5/x", "rtsp://10.0.0.5/x ", "rtsp://10.0.0.5/a b",
                                 "rtsp://10.0.0.5/x\n"])
def test_url_with_whitespace_is_refused(url):
    with pytest.raises(ConfigError, match="space, tab or line break"):
        parse_config(minimal(url))


@pytest.mark.parametrize("url", ["rtsp://admin:pa/ss@10.0.0.5/x", "rtsp://admin:pa#ss@10.0.0.5/x",
                                 "rtsp://admin:pa?ss@10.0.0.5:554/x"])
def test_slash_or_hash_in_password_is_explained_not_called_a_port(url):
    with pytest.raises(ConfigError) as e:
        parse_config(minimal(url))
    msg = str(e.value)
    assert "percent-encode" in msg and "%2F" in msg and "invalid port" not in msg
    assert "pa" not in msg.replace("password", "").replace("part", "")  # never echoes it


def test_encoded_password_is_fine():
    assert parse_config(minimal("rtsp://admin:pa%2Fss@10.0.0.5/x")).cameras[0].display_url \
        == "rtsp://admin:***@10.0.0.5/x"


def test_duplicate_keys_are_refused(tmp_path):
    p = write(tmp_path, "cameras:\n  - name: a\n    url: rtsp://h/a\nengines:\n  detector: /d.onnx\n"
                        "  check_files: false\ncameras: []\n")
    with pytest.raises(ConfigError, match=r"key 'cameras' is given twice \(first on line 1\)"):
        load_config(p)
    p = write(tmp_path, "cameras:\n  - name: a\n    name: b\n    url: rtsp://h/a\n")
    with pytest.raises(ConfigError, match="key 'name' is given twice"):
        load_config(p)


def test_binary_file(tmp_path):
    p = write(tmp_path, bytes(range(256)) * 8)
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        load_config(p)


def test_deep_nesting(tmp_path):
    p = write(tmp_path, "a: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ConfigError, match="nested more than 32 levels"):
        load_config(p)
    p = write(tmp_path, "a:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, 60)))
    with pytest.raises(ConfigError, match="nested more than"):
        load_config(p)


def test_huge_file_is_refused_without_reading_it(tmp_path):
    p = tmp_path / "big.yaml"
    with open(p, "wb") as fh:
        fh.truncate(50 * 1024 * 1024)  # 50 MB (sparse): refused after reading 1 MiB
    with pytest.raises(ConfigError, match=f"larger than {MAX_BYTES // 1024} KiB"):
        load_config(p)


def test_alias_bomb_is_refused(tmp_path):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    p = write(tmp_path, "\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match="expands to more than"):
        load_config(p)


def test_several_errors_come_one_per_line():
    data = minimal()
    data["cameras"] = [{"name": "A!", "url": " x", "fps": 0}, {"name": "b", "url": "ftp://h/x"}]
    data["lowlight"] = {"enter_below": 90, "exit_above": 80}
    with pytest.raises(ConfigError) as e:
        parse_config(data, "c.yaml")
    lines = str(e.value).splitlines()
    assert lines[0] == f"c.yaml: {len(lines) - 1} errors:" and len(lines) >= 5
    assert all(line.startswith("  ") and len(line) < 240 for line in lines[1:])


def test_redact_url_keeps_harmless_query_parameters():
    assert redact_url("rtsp://u:p@nvr/live?channel=1&subtype=0") == \
        "rtsp://u:***@nvr/live?channel=1&subtype=0"
    assert redact_url("rtsp://nvr/live?channel=2&token=abc&Password=x&apikey=k") == \
        "rtsp://nvr/live?channel=2&token=***&Password=***&apikey=***"
    assert redact_url("rtsp://nvr/live?justasecret") == "rtsp://nvr/live?***"


@pytest.mark.parametrize("content", [bytes(range(256)) * 4, b"a: " + b"[" * 5000 + b"]" * 5000])
def test_check_config_never_prints_a_traceback(tmp_path, content):
    p = write(tmp_path, content)
    res = subprocess.run([sys.executable, "-m", "daemon.cli", "check-config", str(p)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr and res.stderr.startswith("duskwatch check-config: error:")


def test_verbose_flag_after_the_subcommand(tmp_path):
    p = write(tmp_path, "cameras: []\nengines:\n  detector: /x/det.onnx\n  check_files: false\n"
                        "http:\n  listen: 127.0.0.1:0\n")
    for argv in (["-v", "check-config", "--no-engines", str(p)],
                 ["check-config", "-v", "--no-engines", str(p)],
                 ["check-config", "--no-engines", str(p), "--verbose"]):
        res = subprocess.run([sys.executable, "-m", "daemon.cli", *argv], capture_output=True,
                             text=True, timeout=120)
        assert res.returncode == 0 and "valid (0 cameras)" in res.stdout, (argv, res.stderr)
