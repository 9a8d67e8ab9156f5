"""A planned fleet becomes a Serve config the strict loader accepts, priced by the catalog."""


import pytest
import yaml
from tandem.errors import UserError
from tandem.perf import build_replica_model
from tandem.planner.emit import pool_name, serve_config_for_fleet, write_serve_config
from tandem.serve.config import load_serve_config


@pytest.fixture(scope="module")
def fleet(catalog):
    """8B on H100 (fp16) and L4 (fp8), 70B on H200 at TP 2 (fp8): GPU type -> (count, replica)."""
    small, large = catalog.model("llama-3.1-8b"), catalog.model("llama-3.1-70b")
    return {"H100": (3, build_replica_model(catalog, "H100", small, "fp16")),
            "L4": (2, build_replica_model(catalog, "L4", small, "fp8")),
            "H200": (1, build_replica_model(catalog, "H200", large, "fp8", tp=2))}


def emitted(fleet, *gpus, **kwargs):
    return serve_config_for_fleet({gpu: fleet[gpu][0] for gpu in gpus},
                                  {gpu: fleet[gpu][1] for gpu in gpus}, "llama-3.1-8b", **kwargs)


def test_an_emitted_fleet_passes_the_strict_loader(fleet, catalog, tmp_path):
    path = tmp_path / "plan.yaml"
    write_serve_config(path, emitted(fleet, "H100", "L4", "H200"))
    text = path.read_text()
    assert text.startswith(f"# Launch: tandem deploy --config {path}")
    assert "Emitted by `tandem plan`: 3 x H100, 2 x L4, 1 x H200 (TP 2)" in text
    assert "price_per_hour:" not in text.split("proxy_location")[1]  # prices come from the catalog

    config = load_serve_config(path)
    assert list(config.pools) == ["h100", "l4", "h200"]
    for name, (count, replica) in fleet.items():
        pool = config.pools[pool_name(name)]
        assert (pool.gpu, pool.num_replicas, pool.engine.tensor_parallel_size) == (name, count,
                                                                                   replica.tp)
        assert pool.price_per_hour == pytest.approx(catalog.gpu(name).price_per_hour * replica.tp)
        assert pool.price_per_hour == pytest.approx(replica.price_per_hour)
        assert pool.engine.max_num_seqs == replica.max_num_seqs
        assert pool.engine.max_model_len <= replica.context_length
        assert (pool.engine.gpu_memory_utilization, pool.engine.enforce_eager) == (0.9, False)
    assert config.pools["h200"].engine.tensor_parallel_size == 2
    assert config.pools["l4"].engine.quantization == "fp8"
    assert config.pools["h100"].engine.quantization is None
    assert config.pools["h100"].engine.dtype == "float16"
    assert (config.routing_policy, config.model_profile) == ("tandem", "llama-3.1-8b")
    assert config.model == "models:/tandem-tiny@champion"


def test_the_file_is_a_serve_config_ray_accepts(fleet, tmp_path):
    from ray.serve.schema import ServeDeploySchema

    path = tmp_path / "plan.yaml"
    write_serve_config(path, emitted(fleet, "H100", "L4"))
    schema = ServeDeploySchema.model_validate(yaml.safe_load(path.read_text()))
    assert schema.applications[0].import_path == "apps.llm_app:build_app"


def test_fp8_on_a_gpu_without_it_is_emitted_in_bf16(catalog):
    a100 = build_replica_model(catalog, "A100-80G", catalog.model("llama-3.1-8b"), "fp8")
    pool = serve_config_for_fleet({"A100-80G": 1}, {"A100-80G": a100},
                                  "llama-3.1-8b")["applications"][0]["args"]["pools"]["a100-80g"]
    assert pool["engine"]["dtype"] == "bfloat16" and "quantization" not in pool["engine"]


def test_types_without_replicas_are_left_out(fleet):
    config = serve_config_for_fleet({"H100": 2, "L4": 0}, {"H100": fleet["H100"][1]}, "llama-3.1-8b")
    assert list(config["applications"][0]["args"]["pools"]) == ["h100"]


@pytest.mark.parametrize("counts, message", [
    ({"H100": 0}, "no replicas"),
    ({"H100": -1}, "fewer than 0"),
    ({"B300": 1}, "B300: the fleet has replicas of it but no replica model"),
])
def test_a_bad_fleet_is_a_user_error(fleet, counts, message):
    with pytest.raises(UserError, match=message):
        serve_config_for_fleet(counts, {"H100": fleet["H100"][1]}, "llama-3.1-8b")


def test_a_bad_model_uri_is_a_user_error(fleet):
    with pytest.raises(UserError, match="not a registry URI"):
        emitted(fleet, "H100", model_uri="/models/llama")


def test_pool_names_come_from_gpu_names():
    assert [pool_name(gpu) for gpu in ("H100", "A100-80G", "RTX 6000 Ada")] == [
        "h100", "a100-80g", "rtx-6000-ada"]
    with pytest.raises(UserError):
        pool_name("+++")


@pytest.mark.parametrize("where", ["missing_dir", "directory", "under_a_file"])
def test_an_unwritable_path_is_a_user_error_naming_it(fleet, tmp_path, where):
    if where == "missing_dir":
        path = tmp_path / "nowhere" / "plan.yaml"
    elif where == "directory":
        path = tmp_path
    else:
        (tmp_path / "file").write_text("")
        path = tmp_path / "file" / "plan.yaml"
    with pytest.raises(UserError, match=f"cannot write Serve config {path}: "):
        write_serve_config(path, emitted(fleet, "H100"))
