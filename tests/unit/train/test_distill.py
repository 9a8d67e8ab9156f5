"""Distillation: the set built from the teacher's logged answers, the student built from the
teacher, and the refusals (no logged text, another tokenizer)."""

import json

import pytest
import torch
from tandem.data.task import format_completion, format_prompt
from tandem.errors import UserError
from tandem.train.distill import DistillConfig, StudentShape, build_student, check_tokenizer
from tandem.train.distill_data import build_distill_rows, quality_rows
from tandem.triggers.retrain_data import held_out

from tests.unit.triggers.tables import NOW, feedback, feedback_table, request, requests_table


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    from tandem.models.tiny import resolve_base_model

    return resolve_base_model("tiny", tmp_path_factory.mktemp("models"))


TRAIN = [{"prompt": format_prompt(words), "completion": format_completion(words)}
         for words in (["red"], ["cat"], ["blue", "dog"])]
WINDOW = {"start": NOW - 3600, "end": NOW}


def test_the_set_is_the_teachers_answers_corrected_plus_uncovered_training_rows():
    requests = requests_table(
        request("a", 60, prompt="translate: storm =>", response=" kavo"),
        request("b", 50, prompt="translate: storm =>", response=" kavu "),  # later answer wins
        request("c", 40, prompt=TRAIN[0]["prompt"], response=" wrong"),
        request("d", 30, prompt="translate: moon =>", response=" x", model="other"),
        request("e", 20, prompt="translate: fog =>", response=" y", status=500),
        request("f", 7200, prompt="translate: old =>", response=" z"))  # outside the window
    fixes = feedback_table(feedback("c", 35, -1.0, "fipo"))
    rows = build_distill_rows(requests, fixes, TRAIN, teacher="tandem-tiny", sample=len(TRAIN),
                              seed=3, **WINDOW)
    by_prompt = {row["prompt"]: row["completion"] for row in rows}
    assert by_prompt == {"translate: storm =>": " kavu", TRAIN[0]["prompt"]: " fipo",
                         TRAIN[1]["prompt"]: TRAIN[1]["completion"],
                         TRAIN[2]["prompt"]: TRAIN[2]["completion"]}
    assert len(rows) == 4
    assert rows == build_distill_rows(requests, fixes, TRAIN, teacher="tandem-tiny",
                                      sample=len(TRAIN), seed=3, **WINDOW)


def test_held_out_live_prompts_score_each_tier_against_the_ground_truth_not_the_teacher():
    prompts = [format_prompt(words) for words in (["red", "cat"], ["blue"], ["green", "dog"],
                                                  ["bread"], ["lamp", "cup"], ["moon"])]
    kept = [prompt for prompt in prompts if held_out(prompt, 0.5)]
    assert 0 < len(kept) < len(prompts)  # the share splits these prompts both ways
    requests = requests_table(*[
        request(f"r{i}", 60 - i, prompt=prompt, response=" wrong",
                tier="batch" if i % 2 else "interactive")
        for i, prompt in enumerate(prompts + ["translate: zzz =>"])])  # zzz: no ground truth
    fixed = kept[0]
    fixes = feedback_table(feedback(f"r{prompts.index(fixed)}", 30, -1.0, "corrected"))
    scoring = quality_rows(requests, fixes, teacher="tandem-tiny", holdout_share=0.5, **WINDOW)
    rows = [row for tier_rows in scoring.values() for row in tier_rows]
    assert sorted(row["prompt"] for row in rows) == sorted(kept)
    truth = {row["prompt"]: row["completion"] for row in rows}
    assert truth[fixed] == " corrected"
    for prompt in kept[1:]:
        words = prompt.removeprefix("translate: ").removesuffix(" =>").split()
        assert truth[prompt] == format_completion(words)
    assert set(scoring) <= {"batch", "interactive"}
    training = build_distill_rows(requests, fixes, TRAIN, teacher="tandem-tiny", sample=0,
                                  seed=0, holdout_share=0.5, **WINDOW)
    assert not {row["prompt"] for row in training} & set(kept)  # never trained on


def test_without_logged_text_there_is_nothing_to_distill_and_it_says_why():
    requests = requests_table(request("a", 60, prompt=None, response=None))
    with pytest.raises(UserError, match="log_text: false"):
        build_distill_rows(requests, feedback_table(), TRAIN, teacher="tandem-tiny", sample=1,
                           seed=0, **WINDOW)
    with pytest.raises(UserError, match="no answered request of nobody"):
        build_distill_rows(requests, feedback_table(), TRAIN, teacher="nobody", sample=1,
                           seed=0, **WINDOW)


def test_a_shallower_student_starts_from_the_teachers_embeddings_and_first_layer(
        tmp_path, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    student_dir = build_student(tiny_model_dir, StudentShape(num_hidden_layers=1),
                                tmp_path, seed=0)
    assert build_student(tiny_model_dir, StudentShape(num_hidden_layers=1), tmp_path,
                         seed=0) == student_dir  # built once
    student = AutoModelForCausalLM.from_pretrained(student_dir)
    teacher = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert student.config.num_hidden_layers == 1 < teacher.config.num_hidden_layers
    assert sum(p.numel() for p in student.parameters()) < sum(
        p.numel() for p in teacher.parameters())
    own, theirs = student.state_dict(), teacher.state_dict()
    for name in ("model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight"):
        assert torch.equal(own[name], theirs[name])
    check_tokenizer(student_dir, tiny_model_dir)  # the teacher's tokenizer


def test_a_narrower_student_is_random_where_shapes_differ(tmp_path, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    narrow = build_student(tiny_model_dir, StudentShape(intermediate_size=64), tmp_path, seed=0)
    student = AutoModelForCausalLM.from_pretrained(narrow)
    assert student.config.intermediate_size == 64
    assert student.model.layers[0].mlp.up_proj.weight.shape[0] == 64


def test_a_student_with_another_tokenizer_is_refused(tmp_path, tiny_model_dir):
    from transformers import AutoTokenizer

    other = tmp_path / "other"
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.add_tokens(["<|extra|>"])
    tokenizer.save_pretrained(other)
    (other / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(UserError, match="differs from the teacher's"):
        check_tokenizer(other, tiny_model_dir)


def test_the_distill_config_is_strict():
    with pytest.raises(ValueError, match="teacher"):
        DistillConfig(teacher="tandem-tiny", student_model="s")
    with pytest.raises(ValueError, match="extra"):
        DistillConfig(teacher="models:/t@champion", student_model="s", students=1)
    assert DistillConfig(teacher="models:/t@champion", student_model="s").student \
        .num_hidden_layers == 1


def test_logit_distillation_needs_one_vocabulary_and_says_so(tmp_path):
    from tandem.train.distill import check_vocabulary

    for name, size in (("student", 300), ("teacher", 310), ("same", 310)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(json.dumps({"vocab_size": size}))
    check_vocabulary(tmp_path / "same", tmp_path / "teacher")
    with pytest.raises(UserError, match="300 tokens, the teacher .* 310.*logit_weight: 0"):
        check_vocabulary(tmp_path / "student", tmp_path / "teacher")
