"""deploy/systemd/duskwatch.service: `systemd-analyze verify` reports nothing for the unit as
install-service writes it, every directive says why it is there, and the directives the
operator relies on (notify + watchdog, restart limits, sandbox, GPU devices, credentials) are set."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from daemon.install import installer as install

UNIT = Path(__file__).resolve().parents[1] / "deploy" / "systemd" / "duskwatch.service"
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(
    ANALYZE is None, reason="systemd-analyze not found: install Debian's systemd package (`make sysdeps`)"
)
DUSKWATCH = Path(sys.executable).parent / "duskwatch"


def directives(text: str) -> list[tuple[str, str, str]]:
    """(section, key, value) for every assignment in the unit."""
    out, section = [], ""
    for line in text.splitlines():
        if m := re.fullmatch(r"\[(\w+)\]", line.strip()):
            section = m.group(1)
        elif line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            out.append((section, key.strip(), value.strip()))
    return out


def values(key: str, section: str = "Service") -> list[str]:
    return [v for s, k, v in directives(UNIT.read_text()) if s == section and k == key]


def rendered_unit(tmp_path: Path, text: str | None = None) -> Path:
    """The unit as install-service writes it: ExecStart= runs this checkout's duskwatch."""
    if not DUSKWATCH.is_file():
        pytest.skip(f"{DUSKWATCH} is not installed (pip install -e . into this environment)")
    path = tmp_path / install.UNIT_NAME
    path.write_text(text or install.render_unit(UNIT.read_text(), DUSKWATCH, "duskwatch"))
    return path


def verify(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([ANALYZE, "verify", str(path)], capture_output=True, text=True,
                          cwd=path.parent, timeout=120)


@needs_analyze
def test_systemd_analyze_verify_reports_nothing(tmp_path):
    res = verify(rendered_unit(tmp_path))
    assert res.returncode == 0 and res.stdout == "" and res.stderr == "", res.stdout + res.stderr


@needs_analyze
def test_verify_would_catch_a_typo(tmp_path):
    """The check above is not vacuous: a misspelt directive is reported."""
    text = install.render_unit(UNIT.read_text(), DUSKWATCH, "duskwatch")
    res = verify(rendered_unit(tmp_path, text.replace("ProtectClock=", "ProtectClok=")))
    assert "Unknown key" in res.stderr and "ProtectClok" in res.stderr


@needs_analyze
def test_sandbox_exposure_is_low(tmp_path):
    res = subprocess.run([ANALYZE, "security", "--offline=yes", str(rendered_unit(tmp_path))],
                         capture_output=True, text=True, timeout=120)
    if "--offline" in res.stderr and res.returncode != 0:
        pytest.skip(f"this systemd-analyze has no offline security check: {res.stderr.strip()}")
    m = re.search(r"Overall exposure level for duskwatch.service: ([\d.]+)", res.stdout + res.stderr)
    assert m, res.stdout + res.stderr
    assert float(m.group(1)) <= 3.0, res.stdout  # systemd's scale: 0 safest .. 10 unprotected


def test_every_directive_has_a_comment_saying_why():
    lines = UNIT.read_text().splitlines()
    for i, line in enumerate(lines):
        if line and not line.startswith(("#", "[")) and "=" in line:
            assert lines[i - 1].startswith("# "), f"line {i + 1} {line!r} has no comment above it"


def test_notify_watchdog_and_restart_policy():
    assert values("Type") == ["notify"]
    assert values("NotifyAccess") == ["main"]
    assert values("WatchdogSec") and values("TimeoutStopSec") and values("TimeoutStartSec")
    assert values("Restart") == ["on-failure"]
    assert values("StartLimitIntervalSec", "Unit") and values("StartLimitBurst", "Unit")
    assert "/bin/kill -HUP $MAINPID" in values("ExecReload")
    assert values("ExecStart") == [f"{install.TEMPLATE_EXEC} run --config {install.CONFIG_PATH}"]


def test_sandbox_devices_and_credentials():
    expected = {
        "DynamicUser": "yes", "ProtectSystem": "strict", "StateDirectory": "duskwatch",
        "CacheDirectory": "duskwatch", "NoNewPrivileges": "yes", "DevicePolicy": "closed",
        "ProtectHome": "yes", "PrivateTmp": "yes", "SystemCallArchitectures": "native",
    }
    for key, value in expected.items():
        assert values(key) == [value], key
    allowed = values("DeviceAllow")
    assert "char-nvidia* rw" in allowed  # /dev/nvidia*, nvidiactl, nvidia-uvm, nvidia-caps
    assert any(a.startswith("char-nvhost") for a in allowed)  # Jetson
    assert values("PrivateDevices") == []  # would hide /dev/nvidia*
    assert values("LoadCredential") == [f"camera:{install.CREDENTIALS_DIR}"]
    assert set(values("RestrictAddressFamilies")[0].split()) >= {"AF_INET", "AF_INET6", "AF_UNIX"}
    assert values("MemoryDenyWriteExecute") == []  # CUDA and ONNX Runtime JIT need W+X pages
