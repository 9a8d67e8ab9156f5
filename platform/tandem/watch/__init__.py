"""The retraining loop, wired to the real stores: what `tandem watch` and the long-lived
Ray job `jobs/retrain_watch.py` run.

The pure pieces live below (`tandem.triggers`, `tandem.rollout`, `tandem.telemetry`);
this package connects them to the request log and feedback under `$TANDEM_HOME/telemetry`,
to MLflow, to Ray's Jobs API and to the Serve deployment. `config` is what the loop
watches, `build` wires each piece, `run` ticks them every interval.
"""
