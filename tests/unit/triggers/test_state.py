import json

import pytest
from tandem.errors import UserError
from tandem.triggers.state import TriggerState, window_id


def test_window_id_is_the_name_and_start_bucket():
    assert window_id("drift", 7199.0, 3600) == "drift@1"
    assert window_id("drift", 7200.0, 3600) == "drift@2"


def test_claim_once_per_window():
    state = TriggerState()
    assert not state.already_submitted("quality@5")
    assert state.claim("quality@5", "retrain-quality-5")
    assert not state.claim("quality@5", "another")
    assert state.already_submitted("quality@5") and state.job_of("quality@5") == "retrain-quality-5"
    assert state.job_of("quality@6") is None


def test_a_restarted_watcher_does_not_submit_twice(tmp_path):
    path = tmp_path / "watch" / "tandem-tiny.json"
    state = TriggerState(path)
    state.record_fire("quality", 1000.0)
    assert state.claim("quality@0", "job-1")
    restarted = TriggerState(path)
    assert restarted.last_fired("quality") == 1000.0 and restarted.last_fired("drift") is None
    assert restarted.already_submitted("quality@0")
    assert not restarted.claim("quality@0", "job-2")
    assert TriggerState(path).job_of("quality@0") == "job-1"
    assert [p.name for p in path.parent.iterdir()] == ["tandem-tiny.json"]


def test_state_file_is_json_with_a_version(tmp_path):
    path = tmp_path / "state.json"
    TriggerState(path).claim("drift@3", "job")
    assert json.loads(path.read_text()) == {"version": 1, "last_fired": {}, "submitted": {"drift@3": "job"}}


@pytest.mark.parametrize("text", ["not json", "[]", '{"version": 2, "last_fired": {}, "submitted": {}}',
                                  '{"version": 1, "last_fired": {"a": "soon"}, "submitted": {}}'])
def test_a_corrupt_state_file_is_a_user_error(tmp_path, text):
    path = tmp_path / "state.json"
    path.write_text(text)
    with pytest.raises(UserError, match="state.json: not a trigger state file"):
        TriggerState(path)
