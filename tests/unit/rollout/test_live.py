"""A version's live record from hand-built request-log and feedback tables."""

from tandem.rollout.live import live_stats

from tests.unit.triggers.tables import NOW, feedback, feedback_table, request, requests_table


def test_live_stats_count_one_versions_requests_errors_and_scores_in_the_window():
    requests = requests_table(
        request("a", 30, model_version=2), request("b", 20, model_version=2, status=503),
        request("c", 10, model_version=3), request("d", 500, model_version=2),
        request("e", 10, model_version=2, model="other"))
    rated = feedback_table(feedback("a", 5, 1.0), feedback("c", 5, -1.0), feedback("d", 5, -1.0))
    stats = live_stats(requests, rated, model="tandem-tiny", version=2, since=NOW - 100,
                       until=NOW, scale="-1..1")
    assert (stats.requests, stats.errors, stats.rated, stats.mean_score) == (2, 1, 1, 1.0)
    assert stats.error_rate == 0.5
    empty = live_stats(requests, rated, model="tandem-tiny", version=9, since=NOW - 100,
                       until=NOW, scale="1..5")
    assert (empty.requests, empty.mean_score, empty.error_rate) == (0, None, 0.0)
