"""`tandem promote` reads the registry before anything moves: a registry that does not
answer is an internal failure (exit 1) that says nothing changed."""

from tandem.cli import main
from tandem.stack import free_port


def test_a_registry_that_does_not_answer_stops_a_promote_before_anything_moves(
        monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("TANDEM_HOME", str(tmp_path))
    monkeypatch.setenv("TANDEM_MLFLOW_PORT", str(free_port()))  # nothing listens there
    assert main(["promote", "tandem-tiny", "2"]) == 1
    error = capsys.readouterr().err
    assert "tandem promote: cannot read tandem-tiny from the registry" in error
    assert "nothing changed" in error and "Traceback" not in error
