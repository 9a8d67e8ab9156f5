import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tandem.errors import UserError
from tandem.triggers.profile import DataProfile, psi

from .helpers import BASE, DRIFTED

counts = st.lists(st.floats(0, 1000, allow_nan=False), min_size=1, max_size=20).filter(
    lambda xs: sum(xs) > 1e-3)


def test_psi_of_identical_distributions_is_zero():
    assert psi([1, 2, 3], [10, 20, 30]) == pytest.approx(0.0, abs=1e-12)


def test_psi_of_a_shifted_distribution_is_above_drift_level():
    assert psi([0.7, 0.2, 0.1], [0.1, 0.2, 0.7]) > 0.2


def test_psi_refuses_mismatched_or_empty_bins():
    for expected, actual in (([1, 2], [1]), ([], []), ([0, 0], [1, 1]), ([-1, 2], [1, 1])):
        with pytest.raises(ValueError):
            psi(expected, actual)


@given(st.data())
def test_psi_is_non_negative_and_symmetric(data):
    expected = data.draw(counts)
    actual = data.draw(st.lists(st.floats(0, 1000, allow_nan=False), min_size=len(expected),
                                max_size=len(expected)).filter(lambda xs: sum(xs) > 0))
    value = psi(expected, actual)
    assert value >= 0 and math.isfinite(value)
    assert value == pytest.approx(psi(actual, expected), rel=1e-9, abs=1e-12)


@given(counts, st.floats(0.1, 100))
def test_psi_ignores_scale(distribution, factor):
    assert psi(distribution, [x * factor for x in distribution]) == pytest.approx(0.0, abs=1e-9)


def test_profile_of_the_training_prompts_matches_itself():
    profile = DataProfile.build(BASE * 10)
    assert sum(profile.length_shares) == pytest.approx(1.0)
    assert sum(profile.token_shares) == pytest.approx(1.0)
    assert profile.vocabulary[0] == "translate"
    drift = profile.compare(BASE * 3)
    assert drift["psi_length"] == pytest.approx(0.0, abs=1e-9)
    assert drift["psi_tokens"] == pytest.approx(0.0, abs=1e-9)


def test_new_vocabulary_and_longer_prompts_drift():
    profile = DataProfile.build(BASE * 10)
    drift = profile.compare(DRIFTED * 10)
    assert drift["psi_tokens"] > 0.2 and drift["psi_length"] > 0.2
    mixed = profile.compare(BASE * 9 + DRIFTED)
    assert mixed["psi_tokens"] < drift["psi_tokens"]


def test_top_k_limits_the_vocabulary_and_the_rest_is_other():
    profile = DataProfile.build(BASE, top_k=3)
    assert len(profile.vocabulary) == 3 and len(profile.token_shares) == 4
    assert profile.token_shares[-1] > 0


def test_lengths_beyond_the_last_edge_land_in_the_open_bin():
    profile = DataProfile.build(["a " * 5000, "b"], length_edges=(0, 2, 10))
    assert profile.length_shares == (0.5, 0.0, 0.5)


def test_prompts_without_words_compare_on_length_only():
    profile = DataProfile.build(BASE)
    assert profile.compare(["", "=>"])["psi_tokens"] == 0.0


def test_save_load_round_trip_and_bad_files(tmp_path):
    profile = DataProfile.build(BASE)
    profile.save(tmp_path / "profile.json")
    assert DataProfile.load(tmp_path / "profile.json") == profile
    (tmp_path / "bad.json").write_text('{"prompts": 3}')
    with pytest.raises(UserError, match="bad.json: not a data profile \\(length_edges: Field required"):
        DataProfile.load(tmp_path / "bad.json")
    (tmp_path / "short.json").write_text(
        profile.model_dump_json().replace('"length_shares":[', '"length_shares":[0.5,'))
    with pytest.raises(UserError, match="one share per length bin"):
        DataProfile.load(tmp_path / "short.json")
    with pytest.raises(UserError, match="cannot read"):
        DataProfile.load(tmp_path / "absent.json")


def test_empty_prompt_sets_are_refused():
    with pytest.raises(ValueError, match="empty"):
        DataProfile.build([])
    with pytest.raises(ValueError, match="empty"):
        DataProfile.build(BASE).compare([])
