import pytest
from tandem.catalog import load_catalog
from tandem.planner.trace import bundled_trace_path, load_trace


@pytest.fixture(scope="session")
def catalog():
    return load_catalog()


@pytest.fixture(scope="session")
def conv_slice():
    """The first 400 requests of the bundled conversation trace."""
    return load_trace(bundled_trace_path()).head(400)

