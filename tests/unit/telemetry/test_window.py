import json

from tandem.telemetry.window import between, chat_messages, prompt_text, ratings

from tests.unit.triggers.tables import NOW, feedback, feedback_table, request, requests_table


def test_between_keeps_rows_after_start_up_to_and_including_end():
    table = requests_table(request("old", 100), request("start", 60), request("in", 30),
                           request("end", 10), request("late", 0))
    assert between(table, NOW - 60, NOW - 10)["request_id"].to_pylist() == ["in", "end"]
    assert between(table, None, NOW - 10)["request_id"].to_pylist() == ["old", "start", "in", "end"]


def test_ratings_keep_the_latest_feedback_per_request_joined_to_its_record():
    requests = requests_table(request("a", 60, model_version=2), request("b", 50))
    rows = feedback_table(feedback("a", 40, 1.0), feedback("b", 30, -1.0, "fipo"),
                          feedback("a", 20, -1.0, "zemu"))
    found = ratings(rows, requests)
    assert [(r.request_id, r.score, r.correction) for r in found] == [
        ("b", -1.0, "fipo"), ("a", -1.0, "zemu")]
    assert (found[1].model, found[1].model_version, found[1].prompt) == (
        "tandem-tiny", 2, "translate: a =>")
    assert found[1].time == NOW - 20


def test_feedback_on_a_request_missing_from_the_table_uses_the_stored_copy():
    rows = feedback_table(feedback("gone", 100, -1.0, "fipo", model="tandem-tiny",
                                   model_version=3, prompt="translate: red =>"))
    [rating] = ratings(rows, requests_table())
    assert (rating.model, rating.model_version, rating.prompt) == (
        "tandem-tiny", 3, "translate: red =>")


def test_chat_messages_are_read_from_a_logged_chat_prompt_only():
    messages = [{"role": "user", "content": "translate: red cat"}]
    assert chat_messages(json.dumps(messages)) == messages
    for logged in ("translate: red cat =>", "[1, 2, 3]", "[not json", "[]"):
        assert chat_messages(logged) is None


def test_prompt_text_reads_chat_messages_and_keeps_anything_else():
    chat = json.dumps([{"role": "system", "content": "be brief"},
                       {"role": "user", "content": "translate: red cat"}])
    assert prompt_text(chat) == "be brief\ntranslate: red cat"
    assert prompt_text("translate: red cat =>") == "translate: red cat =>"
    assert prompt_text("[1, 2, 3]") == "[1, 2, 3]"
    assert prompt_text("[not json") == "[not json"
