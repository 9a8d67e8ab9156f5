import pytest


@pytest.fixture
def logs():
    """Request logs a test opens; closed at teardown."""
    opened = []
    yield opened
    for log in opened:
        log.close()


@pytest.fixture(scope="package")
def local_ray():
    """One local Ray (a single CPU) for the telemetry tests that run Ray tasks."""
    import ray

    ray.init(address="local", num_cpus=1, include_dashboard=False)
    yield
    ray.shutdown()
