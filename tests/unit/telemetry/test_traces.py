"""Requests and feedback exported as MLflow traces and assessments, into a real MLflow store
(sqlite in a temporary directory): rated requests always, others by a fixed sample, each
once, and late feedback still reaches its trace."""

import pytest
from tandem.telemetry.traces import TraceExport, sampled

from tests.unit.triggers.tables import feedback, feedback_table, request, requests_table


@pytest.fixture
def exporter(tmp_path):
    from mlflow import MlflowClient

    # a sqlite store keeps artifacts (trace data) under ./mlruns unless told otherwise
    MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").create_experiment(
        "tandem-serving", artifact_location=(tmp_path / "artifacts").as_uri())

    def build(share=0.0):
        return TraceExport(f"sqlite:///{tmp_path / 'mlflow.db'}", "tandem-tiny",
                           tmp_path / "traces.json", share=share, model_id_of=lambda v: None)
    return build


def _traces(tmp_path):
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("tandem-serving").experiment_id
    return client.search_traces(locations=[experiment])


def test_rated_requests_become_traces_with_their_feedback_once(exporter, tmp_path):
    requests = requests_table(request("a", 30), request("b", 20, status=503), request("c", 10),
                              request("d", 10, model="other"))
    rated = feedback_table(feedback("a", 5, -1.0, "kavo"), feedback("b", 5, 1.0))
    assert exporter().export(requests, rated) == (2, 2)
    assert exporter().export(requests, rated) == (0, 0)  # a restarted exporter remembers
    late = feedback_table(*rated.to_pylist(), feedback("a", 1, 1.0))
    assert exporter().export(requests, late) == (0, 1)
    traces = {t.info.tags["tandem.request_id"]: t for t in _traces(tmp_path)}
    assert set(traces) == {"a", "b"}
    a = traces["a"]
    assert a.data.spans[0].inputs == {"prompt": "translate: a =>"}
    assert sorted(x.value for x in a.info.assessments if x.name == "user_score") == [-1.0, 1.0]
    assert any(x.rationale == "kavo" for x in a.info.assessments)
    assert traces["b"].info.state.value == "ERROR"


def test_a_fixed_share_of_unrated_requests_is_sampled(exporter):
    ids = [f"r{i}" for i in range(400)]
    chosen = [i for i in ids if sampled(i, 0.25)]
    assert 60 < len(chosen) < 140 and chosen == [i for i in ids if sampled(i, 0.25)]
    requests = requests_table(*(request(i, 10) for i in ids))
    assert exporter(share=0.25).export(requests, feedback_table()) == (len(chosen), 0)


def test_export_leaves_the_processs_mlflow_settings_alone(exporter, tmp_path, monkeypatch):
    """Code that logs runs in the same process (a registration) must still reach its own
    tracking server and experiment after an export."""
    import mlflow

    monkeypatch.setattr(mlflow.tracking._tracking_service.utils, "_tracking_uri", None)
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'other.db'}")
    before = (mlflow.get_tracking_uri(), mlflow.tracking.fluent._active_experiment_id)
    exporter().export(requests_table(request("a", 10)), feedback_table(feedback("a", 5, 1.0)))
    assert (mlflow.get_tracking_uri(), mlflow.tracking.fluent._active_experiment_id) == before
