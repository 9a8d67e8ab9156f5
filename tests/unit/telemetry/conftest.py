import pytest


@pytest.fixture
def logs():
    """Request logs a test opens; closed at teardown."""
    opened = []
    yield opened
    for log in opened:
        log.close()
