"""The shipped Prometheus rules and scrape config, checked and unit-tested by promtool
(`make install` puts it on PATH), and the local config `tandem observe` renders."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from tandem.observe import render_config
from tandem.settings import load_settings

REPO = Path(__file__).resolve().parents[3]
PROMETHEUS = REPO / "deploy" / "prometheus"
DASHBOARD = REPO / "deploy" / "grafana" / "tandem.json"


def promtool(*args: str) -> subprocess.CompletedProcess:
    path = shutil.which("promtool")
    assert path, "promtool is missing: `make install` installs Debian's prometheus package"
    return subprocess.run([path, *args], capture_output=True, text=True, timeout=120)


def test_rules_parse():
    result = promtool("check", "rules", *map(str, sorted((PROMETHEUS / "rules").glob("*.yml"))))
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_and_recording_rule_unit_tests_pass():
    result = promtool("test", "rules", *map(str, sorted((PROMETHEUS / "tests").glob("*.yml"))))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_unit_test():
    rules = yaml.safe_load((PROMETHEUS / "rules" / "tandem.rules.yml").read_text())
    alerts = {rule["alert"] for group in rules["groups"] for rule in group["rules"]
              if "alert" in rule}
    tested = {case["alertname"] for path in (PROMETHEUS / "tests").glob("*.yml")
              for test in yaml.safe_load(path.read_text())["tests"]
              for case in test.get("alert_rule_test", ())}
    assert alerts == tested
    assert {"TandemSLOAttainmentLow", "TandemHigh5xxRate", "TandemPoolDown",
            "TandemTierOverBudget", "TandemRetrainJobFailed"} <= alerts


def test_a_rule_that_does_not_parse_fails_with_promtools_message(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text("groups:\n  - name: g\n    rules:\n      - record: x\n"
                      "        expr: sum(rate(ray_tandem_requests_total[5m])\n")
    result = promtool("check", "rules", str(broken))
    assert result.returncode != 0
    assert "parse error" in result.stdout + result.stderr


def test_the_shipped_scrape_config_is_valid():
    result = promtool("check", "config", str(PROMETHEUS / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_local_config_scrapes_this_stacks_nodes_with_the_shipped_rules(tmp_path):
    settings = load_settings({"TANDEM_HOME": str(tmp_path), "TANDEM_PROJECT_DIR": str(REPO)})
    path = render_config(settings, ["127.0.0.1:40001", "127.0.0.1:40002"])
    config = yaml.safe_load(path.read_text())
    [targets_file] = config["scrape_configs"][0]["file_sd_configs"][0]["files"]
    assert json.loads(Path(targets_file).read_text())[0]["targets"] == ["127.0.0.1:40001",
                                                                       "127.0.0.1:40002"]
    assert config["rule_files"] == [str(PROMETHEUS / "rules" / "tandem.rules.yml")]
    assert config["global"]["evaluation_interval"] == "5s"
    result = promtool("check", "config", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def dashboard_panels(dashboard: dict) -> list[dict]:
    """Every panel, those inside collapsed rows included."""
    return [inner for panel in dashboard["panels"]
            for inner in (panel, *panel.get("panels", ()))]


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def test_the_dashboard_has_a_panel_per_question(dashboard):
    titles = {panel["title"] for panel in dashboard_panels(dashboard)}
    assert {"TTFT p50 / p99 by pool and version", "TPOT p50 / p99 by pool and version",
            "SLO attainment by tier", "Rent by pool ($/h)", "Requests/s by pool",
            "Pools up", "Tier spend vs budget ($/h)", "Retraining jobs",
            "Rollout stage"} <= titles
    for panel in dashboard_panels(dashboard):
        if panel["type"] != "row":
            assert panel["targets"] and all(t["expr"].strip() for t in panel["targets"]), panel
