import pytest
from tandem.catalog import load_catalog
from tandem.perf import build_replica_model

GPUS = ("H100", "H200", "A100-80G", "L4")


@pytest.fixture(scope="session")
def priors():
    """Roofline priors of llama-3.1-8b in FP16 on each catalog GPU, keyed by GPU name."""
    catalog = load_catalog()
    model = catalog.model("llama-3.1-8b")
    return {gpu: build_replica_model(catalog, gpu, model, "fp16") for gpu in GPUS}
