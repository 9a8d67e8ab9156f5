import time

from tandem.cli import main
from tandem.routing.log import DecisionLog
from tandem.routing.types import Decision, RequestFeatures


def write_log(path, count):
    log = DecisionLog()
    for index in range(count):
        log.record(1_700_000_000.0 + index, RequestFeatures(10, 5, tier="batch"),
                   Decision(pool=f"pool-{index}", reason="test"), request_id=f"req-{index}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(log.to_jsonl())


def test_route_explain_reads_the_default_file(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TANDEM_HOME", str(tmp_path))
    write_log(tmp_path / "routing" / "decisions.jsonl", 5)
    assert main(["route", "explain", "--last", "2"]) == 0
    out = capsys.readouterr().out
    assert "req-3" in out and "req-4" in out and "req-2" not in out


def test_route_explain_with_file_and_user_errors(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TANDEM_HOME", str(tmp_path))
    path = tmp_path / "elsewhere.jsonl"
    write_log(path, 1)
    assert main(["route", "explain", "--file", str(path)]) == 0
    assert "pool-0" in capsys.readouterr().out
    assert main(["route", "explain"]) == 2  # nothing recorded under TANDEM_HOME yet
    assert "no routing decisions" in capsys.readouterr().err
    assert main(["route", "explain", "--file", str(path), "--last", "0"]) == 2


def test_route_explain_shows_each_pools_calibration_from_the_request_log(tmp_path, monkeypatch,
                                                                         capsys):
    from tandem.telemetry.request_log import RequestLog

    from tests.unit.triggers.tables import request

    monkeypatch.setenv("TANDEM_HOME", str(tmp_path))
    write_log(tmp_path / "routing" / "decisions.jsonl", 1)
    assert main(["route", "explain"]) == 0
    assert "no pool has more than 20" in capsys.readouterr().out

    log = RequestLog(str(tmp_path / "telemetry"), flush_rows=1)
    now = time.time()
    for index in range(30):  # 20 to learn from, then predicted 30 ms, measured 25 ms
        log.append(request(f"r{index}", 0, time=now - 100 + index, pool="fast", stream=True,
                           predicted_ttft_ms=30.0, ttft_ms=25.0))
    for index in range(40):  # a day ago: outside the window, never read
        log.append(request(f"old{index}", 0, time=now - 86400, pool="fast", stream=True,
                           predicted_ttft_ms=30.0, ttft_ms=300.0))
    log.close()
    assert main(["route", "explain"]) == 0
    out = capsys.readouterr().out
    assert "last 1 h of the request log: 30 requests" in out
    line = next(line for line in out.splitlines() if line.strip().startswith("fast"))
    assert line.split()[1:3] == ["10", "20.0%"]
    assert main(["route", "explain", "--hours", "48"]) == 0
    assert "last 48 h of the request log: 70 requests" in capsys.readouterr().out
    assert main(["route", "explain", "--hours", "nan"]) == 2


def test_route_explain_names_the_line_and_field_of_a_bad_decision(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TANDEM_HOME", str(tmp_path))
    path = tmp_path / "decisions.jsonl"
    write_log(path, 3)
    lines = path.read_text().splitlines()
    lines[1] = lines[1].replace('"ttft_target_ms":null', '"ttft_target_ms":"abc"')
    path.write_text("\n".join(lines) + "\n")
    assert main(["route", "explain", "--file", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"tandem route: {path} line 2: request.ttft_target_ms is 'abc', not a number"]
