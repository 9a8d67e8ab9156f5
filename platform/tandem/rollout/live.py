"""A version's live record, read from the request log and the feedback store.

The ingress logs which model version answered each request, so a canary's two
versions, or a promoted version and the one it replaced, are told apart by that
column alone; feedback joins its request by id (`tandem.telemetry.window.ratings`).
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from tandem.rollout.verdicts import LiveStats
from tandem.telemetry.feedback import FeedbackScale, normalized_score
from tandem.telemetry.window import between, ratings
from tandem.tenants import bounded_by_tenant


def live_stats(requests: pa.Table, feedback: pa.Table, *, model: str, version: int,
               since: float, until: float, scale: FeedbackScale) -> LiveStats:
    """Requests `version` of `model` answered in `(since, until]` (POSIX seconds), their 5xx
    count, and the mean normalized score of the feedback they received, with no tenant over
    half of it (`bounded_by_tenant`)."""
    answered = between(requests, since, until)
    mine = answered.filter(pc.and_(pc.equal(answered["model"], model),
                                   pc.equal(answered["model_version"], version)))
    ids = set(mine["request_id"].to_pylist())
    errors = sum(status >= 500 for status in mine["status"].to_pylist())
    mine_rated = [rating for rating in ratings(feedback, mine) if rating.request_id in ids]
    scores = [normalized_score(rating.score, scale)
              for rating in bounded_by_tenant(mine_rated, lambda rating: rating.tenant)]
    return LiveStats(requests=mine.num_rows, errors=errors, rated=len(scores),
                     mean_score=sum(scores) / len(scores) if scores else None)
