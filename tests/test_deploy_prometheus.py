"""deploy/prometheus: the scrape config and alert rules pass promtool, and the rules' unit tests
(deploy/prometheus/rules_test.yml: every alert firing and not firing) pass."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

PROM_DIR = Path(__file__).resolve().parents[1] / "deploy" / "prometheus"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool not found: install Debian's prometheus package (`make sysdeps`)",
)

# Every alert the issue asks for, by the rule that implements it.
REQUIRED_ALERTS = {
    "DuskwatchDown",  # daemon down: up == 0
    "DuskwatchAbsent",  # daemon down: no target at all
    "DuskwatchCameraDown",
    "DuskwatchCameraStalled",
    "DuskwatchFrameAgeHigh",
    "DuskwatchReconnectStorm",
    "DuskwatchEngineFailing",
    "DuskwatchSinkFailing",
}


def promtool(*args: str, cwd: Path = PROM_DIR) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def alert_rules() -> list[dict]:
    groups = yaml.safe_load((PROM_DIR / "rules.yml").read_text())["groups"]
    return [r for g in groups for r in g["rules"] if "alert" in r]


@needs_promtool
def test_rules_pass_promtool_check():
    res = promtool("check", "rules", "rules.yml")
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in res.stdout


@needs_promtool
def test_scrape_config_passes_promtool_check(tmp_path):
    """Checked where it is installed: beside the token file its authorization names."""
    for name in ("prometheus.yml", "rules.yml"):
        shutil.copy(PROM_DIR / name, tmp_path / name)
    (tmp_path / "duskwatch.token").write_text("0" * 64 + "\n")
    res = promtool("check", "config", "prometheus.yml", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    (tmp_path / "duskwatch.token").unlink()  # without it, promtool says what is missing
    res = promtool("check", "config", "prometheus.yml", cwd=tmp_path)
    assert res.returncode != 0 and "duskwatch.token" in res.stdout + res.stderr


def test_scrape_job_authenticates():
    job = {j["job_name"]: j for j in yaml.safe_load(
        (PROM_DIR / "prometheus.yml").read_text())["scrape_configs"]}["duskwatch"]
    assert job["authorization"] == {"type": "Bearer", "credentials_file": "duskwatch.token"}


def test_scrape_job_is_the_one_the_rules_select():
    cfg = yaml.safe_load((PROM_DIR / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in cfg["scrape_configs"]}
    assert "duskwatch" in jobs
    targets = [t for sc in jobs["duskwatch"]["static_configs"] for t in sc["targets"]]
    assert "localhost:9872" in targets  # the daemon's default http.listen port
    assert "rules.yml" in cfg["rule_files"]


def test_every_required_alert_exists_and_links_its_runbook():
    rules = {r["alert"]: r for r in alert_rules()}
    assert REQUIRED_ALERTS <= set(rules), REQUIRED_ALERTS - set(rules)
    guide = (PROM_DIR.parent / "README.md").read_text().lower()
    for name, rule in rules.items():
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        anchor = rule["annotations"]["runbook_url"].split("#", 1)[1]
        assert anchor == name.lower()
        assert f"### {name.lower()}" in guide, f"deploy/README.md has no section for {name}"


def test_rule_tests_cover_every_alert_firing_and_silent():
    tests = yaml.safe_load((PROM_DIR / "rules_test.yml").read_text())["tests"]
    fired: set[str] = set()
    silent: set[str] = set()
    for group in tests:
        for case in group.get("alert_rule_test", []):
            (fired if case.get("exp_alerts") else silent).add(case["alertname"])
    names = {r["alert"] for r in alert_rules()}
    assert names - fired == set(), f"never shown firing: {names - fired}"
    assert names - silent == set(), f"never shown silent: {names - silent}"


@needs_promtool
def test_rule_unit_tests_pass():
    res = promtool("test", "rules", "rules_test.yml")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout


@needs_promtool
def test_rule_unit_tests_catch_a_broken_rule(tmp_path):
    """The unit tests are not vacuous: a reconnect-storm threshold raised tenfold fails them."""
    rules = (PROM_DIR / "rules.yml").read_text()
    broken = rules.replace("[15m]) > 5", "[15m]) > 50")
    assert broken != rules
    (tmp_path / "rules.yml").write_text(broken)
    shutil.copy(PROM_DIR / "rules_test.yml", tmp_path)
    res = promtool("test", "rules", "rules_test.yml", cwd=tmp_path)
    assert res.returncode != 0
    assert "DuskwatchReconnectStorm" in res.stdout + res.stderr
