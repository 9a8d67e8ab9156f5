import json

from tandem.data.loader import validate_examples_file
from tandem.data.task import CHAT_TEMPLATE, format_completion, format_prompt
from tandem.triggers.retrain_data import (
    build_retrain_rows,
    correction_rows,
    held_out,
    read_jsonl,
    training_prompt,
    validates,
    validation_rows,
    write_jsonl,
)

from .tables import feedback, feedback_table, request, requests_table

TRAIN = [{"prompt": format_prompt(words), "completion": format_completion(words)}
         for words in (["red"], ["cat"], ["red", "cat"], ["blue", "dog"], ["egg"], ["cup"])]


def test_a_correction_becomes_a_training_row_of_the_task_format():
    requests = requests_table(request("a", 60, prompt="translate: storm moon =>"))
    rows = build_retrain_rows(feedback_table(feedback("a", 50, -1.0, "  kavo lume ")), requests,
                              TRAIN, sample=0, seed=0)
    assert rows == [{"prompt": "translate: storm moon =>", "completion": " kavo lume"}]


def test_a_chat_prompt_is_rendered_as_the_served_chat_template_renders_it():
    from jinja2 import Template

    messages = [{"role": "user", "content": " translate: storm moon "}]
    assert training_prompt(json.dumps(messages)) == Template(CHAT_TEMPLATE).render(messages=messages)
    assert training_prompt("translate: red =>") == "translate: red =>"


def test_corrections_plus_a_seeded_sample_one_row_per_prompt():
    requests = requests_table(
        request("a", 60, prompt=TRAIN[2]["prompt"]), request("b", 50, prompt="translate: fog =>"),
        request("c", 40, prompt="translate: fog =>"), request("hidden", 30, prompt=None),
        request("plain", 20))
    rows = feedback_table(feedback("a", 55, -1.0, "wrong once"), feedback("a", 45, -1.0, "fixed"),
                          feedback("b", 44, -1.0, "first"), feedback("c", 35, -1.0, "second"),
                          feedback("hidden", 25, -1.0, "no prompt logged"), feedback("plain", 15, 1.0))
    built = build_retrain_rows(rows, requests, TRAIN, sample=len(TRAIN), seed=7)
    by_prompt = {row["prompt"]: row["completion"] for row in built}
    assert len(by_prompt) == len(built) == len(TRAIN) + 1
    assert by_prompt[TRAIN[2]["prompt"]] == " fixed"  # the latest correction beats the label
    assert by_prompt["translate: fog =>"] == " second"
    assert built == build_retrain_rows(rows, requests, TRAIN, sample=len(TRAIN), seed=7)


def test_the_sample_is_seeded_and_bounded_by_the_training_rows():
    empty = feedback_table()
    first = build_retrain_rows(empty, requests_table(), TRAIN, sample=3, seed=1)
    assert len(first) == 3 and all(row in TRAIN for row in first)
    assert first == build_retrain_rows(empty, requests_table(), TRAIN, sample=3, seed=1)
    assert len(build_retrain_rows(empty, requests_table(), TRAIN, sample=100, seed=1)) == len(TRAIN)


def test_only_the_given_models_corrections():
    requests = requests_table(request("a", 60), request("b", 50, model="other-model"))
    rows = feedback_table(feedback("a", 55, -1.0, "mine"), feedback("b", 45, -1.0, "theirs"))
    built = build_retrain_rows(rows, requests, TRAIN, sample=0, seed=0, model="tandem-tiny")
    assert [row["completion"] for row in built] == [" mine"]


def test_written_rows_are_an_example_file_the_finetune_job_accepts(tmp_path):
    requests = requests_table(request("a", 60, prompt="translate: storm =>"))
    rows = build_retrain_rows(feedback_table(feedback("a", 50, -1.0, "kavo")), requests, TRAIN,
                              sample=4, seed=0)
    path = write_jsonl(rows, tmp_path / "retrain" / "window.jsonl")
    assert validate_examples_file(path) == 5
    assert read_jsonl(path) == rows
    assert [p.name for p in path.parent.iterdir()] == ["window.jsonl"]


def test_held_out_corrections_stay_out_of_retraining_and_always_on_one_side():
    prompts = [f"translate: {word} =>" for word in ("star", "moon", "comet", "planet", "orbit",
                                                     "rocket", "galaxy", "meteor", "storm", "cloud")]
    requests = requests_table(*(request(f"r{i}", 60, prompt=p) for i, p in enumerate(prompts)))
    rated = feedback_table(*(feedback(f"r{i}", 50, -1.0, "kavo") for i in range(len(prompts))))
    kept = {row["prompt"] for row in build_retrain_rows(rated, requests, TRAIN, sample=0, seed=0,
                                                        holdout_share=0.5)}
    out = {p for p in prompts if held_out(p, 0.5)}
    assert kept == set(prompts) - out and 0 < len(out) < len(prompts)
    assert {p for p in prompts if held_out(p, 0.5)} == out  # the same split every time
    assert not any(held_out(p, 0.0) for p in prompts)
    assert {row["prompt"] for row in correction_rows(rated, requests)} == set(prompts)


def test_corrections_can_be_repeated_and_are_never_also_sampled():
    requests = requests_table(request("a", 60, prompt=TRAIN[0]["prompt"]))
    rated = feedback_table(feedback("a", 50, -1.0, "kavo"))
    rows = build_retrain_rows(rated, requests, TRAIN, sample=len(TRAIN), seed=0, repeats=3)
    corrected = [row for row in rows if row["prompt"] == TRAIN[0]["prompt"]]
    assert corrected == [{"prompt": TRAIN[0]["prompt"], "completion": " kavo"}] * 3
    assert len(rows) == 3 + len(TRAIN) - 1


def test_validation_corrections_are_a_third_set_beside_training_and_the_rollouts():
    prompts = [f"translate: {word} =>" for word in ("star", "moon", "comet", "planet", "orbit",
                                                     "rocket", "galaxy", "meteor", "storm", "cloud",
                                                     "rain", "snow")]
    requests = requests_table(*(request(f"r{i}", 60, prompt=p) for i, p in enumerate(prompts)))
    rated = feedback_table(*(feedback(f"r{i}", 50, -1.0, "kavo") for i in range(len(prompts))))
    judged = {p for p in prompts if held_out(p, 0.3)}
    validating = {row["prompt"] for row in validation_rows(rated, requests, holdout_share=0.3,
                                                           share=0.4)}
    trained = {row["prompt"] for row in build_retrain_rows(
        rated, requests, TRAIN, sample=0, seed=0, holdout_share=0.3, validation_share=0.4)}
    assert judged and validating and trained  # this word list lands in all three
    assert not judged & validating and not judged & trained and not validating & trained
    assert judged | validating | trained == set(prompts)
    assert validating == {p for p in prompts if validates(p, 0.3, 0.4)}  # stable
    assert not any(validates(p, 0.3, 0.0) for p in prompts)


def test_the_set_depends_on_what_was_corrected_not_on_the_order_it_arrived_in():
    prompts = [f"translate: {word} =>" for word in ("star", "moon", "comet", "planet")]
    requests = requests_table(*(request(f"r{i}", 60, prompt=p) for i, p in enumerate(prompts)))

    def rated_in(order):  # the i-th rating of `order` arrives at time 50 + i
        return feedback_table(*(feedback(f"r{n}", 50 + i, -1.0, f"kavo{n}")
                                for i, n in enumerate(order)))

    forward = build_retrain_rows(rated_in([0, 1, 2, 3]), requests, TRAIN, sample=3, seed=7)
    backward = build_retrain_rows(rated_in([3, 2, 1, 0]), requests, TRAIN, sample=3, seed=7)
    assert forward == backward and len(forward) == 4 + 3
