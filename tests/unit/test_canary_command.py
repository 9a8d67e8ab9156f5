"""`tandem canary` refuses bad arguments before it touches the cluster."""

import pytest
from tandem.cli import main


@pytest.mark.parametrize("argv, message", [
    (["canary", "tandem-tiny", "2", "--share", "1.5"], "--share must be between 0 and 1"),
    (["canary", "tandem-tiny", "2", "--share", "0"], "--share must be between 0 and 1"),
    (["canary", "tandem-tiny"], "give the VERSION to canary, or --stop"),
])
def test_bad_canary_arguments_are_user_errors(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err
