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
