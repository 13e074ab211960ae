"""Config validation: errors name the key and the fix and never echo a credential."""

import subprocess
import sys

import pytest
import yaml

from daemon.config import ConfigError, load_config, parse_config, redact_url, secrets_of


@pytest.fixture
def engine(tmp_path):
    p = tmp_path / "det.onnx"
    p.write_bytes(b"x")
    return p


def base(engine, **over):
    d = {"cameras": [{"name": "gate", "url": "rtsp://admin:s3cret-pw@10.0.0.5:554/stream1"}],
         "engines": {"detector": str(engine)}}
    d.update(over)
    return d


def test_minimal_valid(engine):
    cfg = parse_config(base(engine))
    cam = cfg.cameras[0]
    assert cam.fps == 10 and cam.enhance == "auto"
    assert cam.display_url == "rtsp://admin:***@10.0.0.5:554/stream1"
    assert "s3cret-pw" not in repr(cfg)


def test_unknown_key_names_the_key(engine):
    d = base(engine)
    d["cameras"][0]["fsp"] = 5
    with pytest.raises(ConfigError) as e:
        parse_config(d)
    assert "cameras[0] (gate).fsp: unknown key" in str(e.value)
    d = base(engine, scheduller={})
    with pytest.raises(ConfigError, match="scheduller: unknown key"):
        parse_config(d)


@pytest.mark.parametrize("url,why", [
    ("ftp://h/x", "scheme 'ftp' is not supported"),
    ("rtsp:///stream", "has no host"),
    ("rtsp://h:99999/x", "invalid port"),
    ("", "non-empty"),
])
def test_bad_urls(engine, url, why):
    d = base(engine)
    d["cameras"][0]["url"] = url
    with pytest.raises(ConfigError) as e:
        parse_config(d)
    assert "cameras[0] (gate).url" in str(e.value) and why in str(e.value)


def test_bad_url_error_never_shows_the_password(engine):
    d = base(engine)
    d["cameras"][0]["url"] = "rtsp://admin:s3cret-pw@h:70000/x"
    with pytest.raises(ConfigError) as e:
        parse_config(d)
    assert "s3cret-pw" not in str(e.value)


def test_duplicate_names(engine):
    d = base(engine)
    d["cameras"].append(dict(d["cameras"][0]))
    with pytest.raises(ConfigError, match="camera name 'gate' is used twice"):
        parse_config(d)


def test_bad_name(engine):
    d = base(engine)
    d["cameras"][0]["name"] = "Gate Cam"
    with pytest.raises(ConfigError, match=r"cameras\[0\] \(Gate Cam\).name"):
        parse_config(d)


def test_missing_engine_file_names_key_and_fix(tmp_path):
    d = {"cameras": [], "engines": {"detector": str(tmp_path / "nope.onnx"),
                                   "enhancer": str(tmp_path / "den.onnx")}}
    with pytest.raises(ConfigError) as e:
        parse_config(d)
    msg = str(e.value)
    assert "detector: engine file" in msg and "duskwatch export yolo" in msg


def test_hysteresis_and_bounds(engine):
    with pytest.raises(ConfigError, match="exit_above"):
        parse_config(base(engine, lowlight={"enter_below": 80, "exit_above": 60}))
    with pytest.raises(ConfigError, match=r"scheduler.max_batch"):
        parse_config(base(engine, scheduler={"max_batch": 0}))
    with pytest.raises(ConfigError, match=r"http.listen"):
        parse_config(base(engine, http={"listen": "nonsense"}))


def test_password_from_env_and_credentials(engine, tmp_path):
    d = base(engine)
    d["cameras"] = [
        {"name": "a", "url": "rtsp://viewer@h/a", "password_env": "CAM_A_PW"},
        {"name": "b", "url": "rtsp://h/b", "password_credential": "cam-b"},
    ]
    cfg = parse_config(d)
    (tmp_path / "cam-b").write_text("pw-b\n")
    env = {"CAM_A_PW": "p@ss:a", "CREDENTIALS_DIRECTORY": str(tmp_path)}
    assert cfg.cameras[0].resolved_url(env) == "rtsp://viewer:p%40ss%3Aa@h/a"
    assert cfg.cameras[1].resolved_url(env) == "rtsp://admin:pw-b@h/b"
    assert sorted(secrets_of(cfg, env)) == ["p%40ss%3Aa", "pw-b"]
    with pytest.raises(ConfigError, match="CAM_A_PW"):
        cfg.cameras[0].resolved_url({})
    with pytest.raises(ConfigError, match="LoadCredential"):
        cfg.cameras[1].resolved_url({})


def test_redact_url():
    assert redact_url("rtsp://u:p@h:554/x?token=abc") == "rtsp://u:***@h:554/x?token=***"
    assert redact_url("/var/video.mp4") == "/var/video.mp4"


def test_yaml_errors(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("cameras: [\n")
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        load_config(p)
    p.write_text("- 1\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(p)
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "missing.yaml")


def check_config(path, *extra):
    return subprocess.run([sys.executable, "-m", "daemon.cli", "check-config", *extra, str(path)],
                          capture_output=True, text=True, timeout=60)


def test_check_config_command_exit_codes(engine, tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(base(engine)))
    r = check_config(good, "--no-engines")  # the engine file is a placeholder
    assert r.returncode == 0, r.stderr
    assert "valid (1 cameras)" in r.stdout
    r = check_config(good)  # opened like start-up does: the placeholder is refused
    assert r.returncode == 2 and "engines.detector: cannot open the engine" in r.stderr
    bad = tmp_path / "bad.yaml"
    d = base(engine)
    d["cameras"][0]["url"] = "gopher://admin:s3cret-pw@h/x"
    bad.write_text(yaml.safe_dump(d))
    r = check_config(bad)
    assert r.returncode == 2
    assert "cameras[0] (gate).url" in r.stderr and "s3cret-pw" not in r.stderr + r.stdout


def test_example_config_is_valid():
    from pathlib import Path

    example = Path(__file__).resolve().parents[1] / "deploy" / "duskwatch.example.yaml"
    data = yaml.safe_load(example.read_text())
    data["engines"]["check_files"] = False
    cfg = parse_config(data)
    assert cfg.cameras and all(c.display_url for c in cfg.cameras)
