"""LoRA adapters in the serving config, the route table and the ingress's choice of version."""

from pathlib import Path

import pytest
from tandem.errors import UserError
from tandem.serve.adapters import (
    AdapterMismatch,
    adapter_entry,
    adapters_on,
    base_of,
    check_base,
    engine_models,
    lora_name,
    parse_lora_name,
)
from tandem.serve.config import load_serve_config
from tandem.serve.ingress.pool_sync import judge_pools
from tandem.serve.pools import llm_config
from tandem.serve.routes import canary_or_champion

REPO = Path(__file__).resolve().parents[3]
LOCAL = REPO / "apps" / "serve.local.yaml"


def config(adapters=("models:/support@champion",), on=("cheap",), max_adapters=4):
    base = load_serve_config(LOCAL)
    data = base.model_dump(mode="json")
    data["adapters"] = list(adapters)
    for pool in on:
        data["pools"][pool]["adapters"] = {"max_adapters": max_adapters}
    return type(base).model_validate(data)


def base_entry():
    route = {"app": "tiny-cheap-v3-abc", "deployment": "cheap-v3:tiny", "version": 3,
             "gpu": "cpu", "price_per_hour": 0.1, "replicas": 1}
    fast = {**route, "app": "tiny-fast-v3-abc", "deployment": "fast-v3:tiny",
            "price_per_hour": 0.4}
    return {"version": 3, "pools": {"cheap": route, "fast": fast}}


def test_adapter_pools_get_vllm_lora_and_ray_multiplexing():
    served = config()
    assert served.adapter_pools() == ["cheap"]
    cheap = llm_config("tiny", "/models/tiny", "cheap", served.pools["cheap"])
    assert cheap.engine_kwargs["enable_lora"] is True
    assert (cheap.engine_kwargs["max_loras"], cheap.engine_kwargs["max_lora_rank"]) == (4, 8)
    assert cheap.lora_config.max_num_adapters_per_replica == 4
    fast = llm_config("tiny", "/models/tiny", "fast", served.pools["fast"])
    assert "enable_lora" not in fast.engine_kwargs and fast.lora_config is None


@pytest.mark.parametrize("change, message", [
    ({"on": ()}, "no pool sets `adapters`"),
    ({"adapters": ("models:/a@champion", "models:/a/2")}, "listed once"),
    ({"adapters": ("models:/tandem-tiny@challenger",)}, "served model's name"),
    ({"adapters": ("/tmp/adapter",)}, "not a registry URI"),
    ({"adapters": ("models:/a@x", "models:/b@x"), "max_adapters": 1}, "at most 1 loaded"),
])
def test_bad_adapter_configs_name_the_problem(change, message):
    with pytest.raises(ValueError, match=message):
        config(**change)


def test_a_config_error_reads_as_a_user_error(tmp_path):
    text = LOCAL.read_text().replace("routing_policy: tandem",
                                     "routing_policy: tandem\n      adapters: [models:/a@x]")
    path = tmp_path / "serve.yaml"
    path.write_text(text)
    with pytest.raises(UserError, match="no pool sets `adapters`"):
        load_serve_config(path)


def test_lora_names_carry_the_version_and_parse_back():
    assert lora_name("support-bot", 12) == "support-bot-v12"
    assert parse_lora_name("support-bot-v12") == ("support-bot", 12)
    for bad in ("support", "support-vx", "-v3"):
        with pytest.raises(ValueError, match="not an adapter version"):
            parse_lora_name(bad)


def test_an_adapter_fits_only_the_base_version_it_was_trained_on():
    check_base("support", 2, "models:/tiny/3", "tiny", 3)
    with pytest.raises(AdapterMismatch) as mismatch:
        check_base("support", 2, "models:/tiny/2", "tiny", 3)
    assert "models:/support/2" in str(mismatch.value)
    assert "models:/tiny/2" in str(mismatch.value) and "models:/tiny/3" in str(mismatch.value)
    with pytest.raises(AdapterMismatch, match="not a LoRA adapter"):
        check_base("other", 1, None, "tiny", 3)
    assert isinstance(mismatch.value, UserError)  # the CLI's exit 2


def test_an_adapter_entry_rides_its_base_engines_labelled_with_its_own_version():
    base = base_entry()
    entry = adapter_entry("support", 2, "tiny", base, ["cheap"])
    assert entry["version"] == 2
    assert entry["adapter"] == {"base": "tiny", "base_version": 3, "lora": "support-v2"}
    assert list(entry["pools"]) == ["cheap"]
    cheap = entry["pools"]["cheap"]
    assert (cheap["app"], cheap["deployment"]) == (base["pools"]["cheap"]["app"],
                                                   base["pools"]["cheap"]["deployment"])
    assert cheap["version"] == 2 and base["pools"]["cheap"]["version"] == 3
    models = {"tiny": base, "support": entry}
    assert base_of(models, "support") == "tiny" and base_of(models, "tiny") is None
    assert adapters_on(models, "tiny") == ["support"]
    assert list(engine_models(models)) == ["tiny"]


def test_an_adapter_canary_sends_its_share_to_the_other_adapter_version():
    base = base_entry()
    entry = adapter_entry("support", 2, "tiny", base, ["cheap"])
    candidate = adapter_entry("support", 3, "tiny", base, ["cheap"])
    entry["canary"] = {"version": 3, "share": 0.2, "adapter": candidate["adapter"],
                       "pools": candidate["pools"]}
    draws = [i / 100 for i in range(100)]
    chosen = [canary_or_champion(entry, draw)["adapter"]["lora"] for draw in draws]
    assert chosen.count("support-v3") == 20 and chosen.count("support-v2") == 80


def test_rent_counts_an_engine_once_however_many_adapters_it_serves():
    class Router:
        def __init__(self):
            self.down, self.scaled_calls = set(), []

        def failed(self, pool):
            self.down.add(pool)

        def scaled(self, pool, count, now):
            self.scaled_calls.append(pool)

    base = base_entry()
    table = {"models": {"tiny": base,
                        "support": adapter_entry("support", 2, "tiny", base, ["cheap"]),
                        "legal": adapter_entry("legal", 1, "tiny", base, ["cheap"])}}
    running = {("tiny-cheap-v3-abc", "cheap-v3:tiny"): 1, ("tiny-fast-v3-abc", "fast-v3:tiny"): 1}
    router = Router()
    rent = judge_pools(table, running, router, 0.0)
    assert rent == {"cheap": (0.1, 1), "fast": (0.4, 1)}
    assert sorted(router.scaled_calls) == ["cheap", "fast"]
