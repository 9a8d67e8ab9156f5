import pytest
from tandem.errors import UserError
from tandem.planner.trace import load_trace


def test_reads_azure_timestamps_sorted_from_zero(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n"
                    "2023-11-16 18:15:50.9951690,396,109\n"
                    "2023-11-16 18:15:46.6805900,374,44\n")
    trace = load_trace(path)
    assert list(trace.prompt_tokens) == [374, 396]
    assert trace.arrival_s[0] == 0 and trace.arrival_s[1] == pytest.approx(4.314579, abs=1e-5)
    assert trace.scaled(2).arrival_s[1] == pytest.approx(trace.arrival_s[1] / 2)


@pytest.mark.parametrize("body, message", [
    ("TIMESTAMP,ContextTokens\n1,2\n", "lacks column"),
    ("TIMESTAMP,ContextTokens,GeneratedTokens\n", "no requests"),
    ("TIMESTAMP,ContextTokens,GeneratedTokens\n1,x,3\n", "line 2"),
    ("TIMESTAMP,ContextTokens,GeneratedTokens\n1,0,3\n", ">= 1"),
])
def test_bad_traces_are_user_errors(tmp_path, body, message):
    path = tmp_path / "t.csv"
    path.write_text(body)
    with pytest.raises(UserError, match=message):
        load_trace(path)
