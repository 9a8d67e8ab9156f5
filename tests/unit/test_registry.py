import pytest
from tandem.errors import UserError
from tandem.registry import Lineage, parse_model_uri, with_retries


def test_lineage_tags_use_contract_names_and_skip_empty():
    tags = Lineage(run_id="r1", dataset_fingerprint="abc", base_model="tiny", git_commit="deadbeef",
                   config_hash="c0ffee", eval_exact_match=0.875, eval_loss=1.25).to_tags()
    assert tags == {
        "tandem.run_id": "r1", "tandem.dataset_fingerprint": "abc", "tandem.base_model": "tiny",
        "tandem.git_commit": "deadbeef", "tandem.config_hash": "c0ffee",
        "tandem.eval_exact_match": "0.875", "tandem.eval_loss": "1.25",
    }


def test_lineage_round_trips_through_tags():
    lineage = Lineage(run_id="r", parent_version="3", trigger="quality", eval_exact_match=0.5)
    assert Lineage.from_tags(lineage.to_tags()) == lineage


@pytest.mark.parametrize("uri,expected", [
    ("models:/tandem-tiny@champion", ("tandem-tiny", "champion", None)),
    ("models:/tandem-tiny/7", ("tandem-tiny", None, 7)),
])
def test_parse_model_uri(uri, expected):
    assert parse_model_uri(uri) == expected


@pytest.mark.parametrize("uri", ["tandem-tiny", "models:/a@b/3", "models:/../etc@x", "s3://x/y"])
def test_bad_model_uri(uri):
    with pytest.raises(UserError, match="registry URI"):
        parse_model_uri(uri)


def test_with_retries_retries_then_succeeds():
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("down")
        return "ok"

    assert with_retries(flaky, "x", attempts=3, first_delay_s=0, log=lambda _: None) == "ok"
    assert len(calls) == 3


def test_with_retries_gives_up_with_last_error():
    def down():
        raise ConnectionError("still down")

    with pytest.raises(ConnectionError, match="still down"):
        with_retries(down, "x", attempts=2, first_delay_s=0, log=lambda _: None)
