import pytest
from tandem.catalog import load_catalog
from tandem.perf import (
    batch_slots,
    build_replica_model,
    generation_throughput,
    join_pool,
    pool_constants,
    replica_seconds_at_capacity,
)


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


def _replica(catalog, gpu="H100", model="llama-3.1-8b", precision="fp16", tp=None):
    return build_replica_model(catalog, gpu, catalog.model(model), precision, tp)


def test_decode_is_faster_with_more_bandwidth(tmp_path, catalog):
    override = tmp_path / "fast.yaml"
    override.write_text("gpus:\n  H100:\n    memory_bandwidth_tbps: 6.7\n")
    fast = _replica(load_catalog(override))
    slow = _replica(catalog)
    for batch in (1, 16, 64):
        assert fast.decode_step(batch, batch * 1000) < slow.decode_step(batch, batch * 1000)


def test_step_time_and_throughput_grow_with_batch(catalog):
    replica = _replica(catalog)
    steps = [replica.decode_step(b, b * 1000) for b in (1, 8, 32, 128)]
    rates = [replica.decode_tokens_per_s(b, 1000) for b in (1, 8, 32, 128)]
    assert steps == sorted(steps) and len(set(steps)) == 4
    assert rates == sorted(rates) and len(set(rates)) == 4


def test_kv_capacity_limits_the_batch(catalog):
    replica = _replica(catalog, gpu="L4")
    short, long = replica.max_concurrent_seqs(500), replica.max_concurrent_seqs(20_000)
    assert long < short <= replica.max_num_seqs
    assert long == replica.kv_capacity // 20_000


def test_batch_slots_are_the_kv_cache_share_capped_by_max_num_seqs():
    assert batch_slots(100, 1_000, max_num_seqs=4) == 4
    assert batch_slots(300, 1_000, max_num_seqs=4) == 3
    assert batch_slots(250.5, 1_000.0, max_num_seqs=16) == 3
    assert batch_slots(1_001, 1_000, max_num_seqs=4) == 0  # larger than the cache
    assert batch_slots(0, 1_000, max_num_seqs=4) == 4  # size not known


def test_join_pool_and_the_rent_count_slots_as_batch_slots_does(catalog):
    constants = pool_constants(_replica(catalog, gpu="L4"))
    for prompt, output in ((100, 50), (6_000, 2_000), (40_000, 4_000)):  # 256, 5, 0
        slots = batch_slots(prompt + output, constants.kv_capacity, constants.max_num_seqs)
        assert join_pool(constants, 40, 8, 2, prompt, output, 300.0, slots) == join_pool(
            constants, 40, 8, 2, prompt, output, 300.0)
        assert replica_seconds_at_capacity(constants, prompt, output, slots) == (
            replica_seconds_at_capacity(constants, prompt, output))


def test_fp8_halves_the_weight_read_time(catalog):
    fp16 = _replica(catalog, precision="fp16")
    fp8 = _replica(catalog, precision="fp8")
    assert fp8.mem_fixed * 2 == pytest.approx(fp16.mem_fixed)
    assert fp8.kv_capacity > fp16.kv_capacity


def test_prefill_is_compute_bound_and_grows_with_prompt(catalog):
    replica = _replica(catalog)
    short, long = replica.prefill_time(256), replica.prefill_time(4096)
    assert long > short * 8  # more than linear once attention's square term counts
    assert replica.prefill_time(4096) > replica.decode_step(1, 4096)


def test_h200_beats_h100_on_the_seed_benchmark(catalog):
    h100 = _replica(catalog, gpu="H100", model="llama-2-70b", precision="fp8", tp=2)
    h200 = _replica(catalog, gpu="H200", model="llama-2-70b", precision="fp8", tp=2)
    ratio = generation_throughput(h200, 64, 128, 2048) / generation_throughput(h100, 64, 128, 2048)
    assert 1.0 < ratio <= 4.8 / 3.35 + 1e-9  # at most the bandwidth ratio at equal TP


def test_tensor_parallel_prices_the_whole_replica(catalog):
    replica = _replica(catalog, model="llama-3.1-70b")
    assert replica.tp > 1
    assert replica.price_per_hour == pytest.approx(catalog.gpu("H100").price_per_hour * replica.tp)
