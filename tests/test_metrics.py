"""Scoring functions on hand-built steps; every expected value is worked out in a comment."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import pytest
from rouge_score.rouge_scorer import RougeScorer

from agentsft.data.schema import ToolCall
from agentsft.evaluation.metrics import (NO_CALL, MixedScriptTokenizer, aggregate, aggregate_by, json_equal,
                              match_calls, perplexity_from, rouge_l, score_step)


def call(name: str, **arguments) -> ToolCall:
    return ToolCall(name=name, arguments=arguments)


# --- json_equal -------------------------------------------------------------------------------

def test_numbers_compare_by_value_but_strings_only_when_asked():
    assert json_equal(5, 5.0) and json_equal({"n": 5}, {"n": 5.0})
    assert not json_equal(5, "5") and not json_equal("5", 5)
    assert json_equal("5", 5, numeric_strings=True) and json_equal(5, "5.0", numeric_strings=True)
    assert json_equal("-2.5e1", -25, numeric_strings=True)
    # Surrounding spaces, float() spellings and non-finite values are not numbers a model wrote.
    for s in (" 5", "5 ", "5_0", "inf", "nan", "1e999"):
        assert not json_equal(s, 5 if s != "5_0" else 50, numeric_strings=True), s
    # Two strings stay strings: "5" and "5.0" differ even with numeric_strings.
    assert not json_equal("5", "5.0", numeric_strings=True)


def test_bools_are_not_numbers_and_none_only_equals_none():
    assert not json_equal(True, 1) and not json_equal(0, False) and not json_equal([1], [True])
    assert not json_equal("1", True, numeric_strings=True)
    assert json_equal(True, True) and not json_equal(True, False)
    assert json_equal(None, None)
    assert not json_equal(None, 0) and not json_equal(None, "") and not json_equal(None, [])


def test_objects_by_key_arrays_in_order():
    assert json_equal({"a": [1, {"b": 2.0}], "c": "x"}, {"c": "x", "a": [1, {"b": 2}]})
    assert not json_equal({"a": 1}, {"a": 1, "b": None})  # an extra key, even a null one
    assert not json_equal([1, 2], [2, 1])
    assert not json_equal("Paris", "paris")


# --- match_calls ------------------------------------------------------------------------------

def test_same_name_swapped_arguments_pair_by_arguments():
    pred = [call("search", q="b", n=1), call("search", q="a", n=2)]
    gold = [call("search", q="a", n=2), call("search", q="b", n=1)]
    assert match_calls(pred, gold) == [(0, 1), (1, 0)]


def test_partial_arguments_pick_the_closer_gold_and_other_names_stay_unpaired():
    pred = [call("weather", city="Paris", unit="c"), call("time", tz="CET")]
    gold = [call("weather", city="Rome", unit="f"), call("weather", city="Paris", unit="f"),
            call("news")]
    # pred 0 shares "city" with gold 1 and nothing with gold 0; "time" has no gold.
    assert match_calls(pred, gold) == [(0, 1), (1, None), (None, 0), (None, 2)]


def test_ties_keep_the_given_order_and_any_call_shape_is_accepted():
    pred = [{"name": "f", "arguments": {"x": 1}}, SimpleNamespace(name="f", arguments={"x": 1})]
    gold = [call("f", x=1), call("f", x=1)]
    assert match_calls(pred, gold) == [(0, 0), (1, 1)]


def test_more_predicted_than_gold_leaves_the_worst_unpaired():
    pred = [call("f", x=9), call("f", x=1), call("f", x=2)]
    gold = [call("f", x=2), call("f", x=1)]
    assert match_calls(pred, gold) == [(0, None), (1, 1), (2, 0)]


def test_arguments_that_are_not_an_object_are_refused():
    with pytest.raises(ValueError, match="invalid_calls"):
        match_calls([{"name": "f", "arguments": '{"x": 1}'}], [])


# --- score_step: calls ------------------------------------------------------------------------

def test_parallel_calls_in_another_order_are_an_exact_match():
    pred = [call("weather", city="Paris"), call("time", tz="CET")]
    gold = [call("time", tz="CET"), call("weather", city="Paris")]
    s = score_step(pred, gold)
    assert s["should_call"] and s["did_call"] and s["decision"] == 1.0
    assert s["name_accuracy"] == 1.0 and s["exact_match"] == 1.0 and s["valid_json"] == 1.0
    assert (s["arg_tp"], s["arg_pred"], s["arg_gold"]) == (2, 2, 2)
    assert s["arg_precision"] == s["arg_recall"] == s["arg_f1"] == 1.0
    assert s["rouge_l"] is None
    json.dumps(s)  # what an eval report writes


def test_missing_and_extra_arguments():
    gold = [call("book", city="Paris", date="2024-05-01", guests=2)]
    pred = [call("book", city="Paris", guests=2, nights=3, pets=False)]
    s = score_step(pred, gold)
    # tp = city, guests = 2; predicted 4 args, gold 3 (date missing; nights, pets extra).
    # P = 2/4 = 0.5, R = 2/3, F1 = 2*0.5*(2/3) / (0.5+2/3) = (2/3)/(7/6) = 4/7.
    assert (s["arg_tp"], s["arg_pred"], s["arg_gold"]) == (2, 4, 3)
    assert s["arg_precision"] == 0.5
    assert s["arg_recall"] == pytest.approx(2 / 3) and s["arg_f1"] == pytest.approx(4 / 7)
    assert s["name_accuracy"] == 1.0 and s["exact_match"] == 0.0

    # Only "guests" missing: P = 2/2 = 1, R = 2/3, F1 = 2*(2/3)/(5/3) = 0.8.
    s = score_step([call("book", city="Paris", date="2024-05-01")], gold)
    assert s["arg_precision"] == 1.0
    assert s["arg_recall"] == pytest.approx(2 / 3) and s["arg_f1"] == pytest.approx(0.8)


def test_numeric_strings_option_reaches_the_step_scores():
    pred, gold = [call("add", a="5", b=True)], [call("add", a=5, b=1)]
    assert score_step(pred, gold)["arg_tp"] == 0
    s = score_step(pred, gold, numeric_strings=True)
    assert s["arg_tp"] == 1 and s["exact_match"] == 0.0  # "5" == 5 now; True is still not 1


def test_calls_without_arguments_have_no_argument_scores():
    s = score_step([call("now")], [call("now")])
    assert s["exact_match"] == 1.0 and (s["arg_tp"], s["arg_pred"], s["arg_gold"]) == (0, 0, 0)
    assert s["arg_precision"] is s["arg_recall"] is s["arg_f1"] is None


def test_calling_when_the_answer_is_text():
    s = score_step([call("search", q="x")], [], predicted_text="", gold_text="Hello!")
    assert (s["should_call"], s["did_call"], s["decision"]) == (False, True, 0.0)
    # 1 predicted slot, 0 pairs. 1 predicted argument, 0 gold: P = 0/1 = 0;
    # R = 0/0 with the other side non-empty, defined as 0.
    assert s["name_accuracy"] == 0.0 and s["exact_match"] == 0.0
    assert (s["arg_precision"], s["arg_recall"], s["arg_f1"]) == (0.0, 0.0, 0.0)
    assert s["valid_json"] == 1.0 and s["rouge_l"] == 0.0  # the text answer is missing


def test_answering_in_text_when_text_is_wanted():
    s = score_step([], [], predicted_text="Hello there", gold_text="hello")
    assert (s["should_call"], s["did_call"], s["decision"]) == (False, False, 1.0)
    for key in ("name_accuracy", "exact_match", "arg_tp", "arg_precision", "arg_f1", "valid_json"):
        assert s[key] is None, key
    # pred [hello, there], gold [hello]: LCS 1, P = 1/2, R = 1, F1 = 2/3.
    assert s["rouge_l"] == pytest.approx(2 / 3)


def test_not_calling_when_a_call_is_wanted():
    s = score_step([], [call("search", q="x")], predicted_text="I don't know")
    assert (s["should_call"], s["did_call"], s["decision"]) == (True, False, 0.0)
    assert s["name_accuracy"] == 0.0 and s["valid_json"] is None and s["rouge_l"] is None
    assert (s["arg_precision"], s["arg_recall"], s["arg_f1"]) == (0.0, 0.0, 0.0)


def test_an_unparseable_call_is_a_call_that_is_not_valid_json():
    gold = [call("search", q="x")]
    s = score_step([], gold, invalid_calls=1)
    assert s["did_call"] and s["decision"] == 1.0
    assert s["valid_json"] == 0.0 and s["name_accuracy"] == 0.0  # 0/(0+1); 0 pairs / max(1, 1)
    s = score_step([call("search", q="x")], gold, invalid_calls=1)
    # 1 parsed of 2 attempted; 1 exact pair over max(1+1, 1) = 2 slots.
    assert s["valid_json"] == 0.5 and s["name_accuracy"] == 0.5 and s["exact_match"] == 0.5
    assert s["arg_f1"] == 1.0  # the parsed call's arguments are all right
    with pytest.raises(ValueError, match="invalid_calls is -1"):
        score_step([], gold, invalid_calls=-1)


# --- ROUGE-L ----------------------------------------------------------------------------------

def test_tokenizer_splits_cjk_per_character_and_words_elsewhere():
    tok = MixedScriptTokenizer()
    assert tok.tokenize("Paris今天 sunny") == ["paris", "今", "天", "sunny"]
    assert tok.tokenize("你好，世界！") == ["你", "好", "世", "界"]  # CJK punctuation dropped
    assert tok.tokenize("東京タワーへ") == ["東", "京", "タ", "ワ", "ー", "へ"]
    assert tok.tokenize("안녕 세상") == ["안", "녕", "세", "상"]
    # Fullwidth letters/digits are NFKC-folded into ordinary words; accents stay in the word,
    # also when written as a combining mark; "_" and "-" split.
    assert tok.tokenize("ＡＢＣ１ Café cafe\u0301 au_lait-x") == [
        "abc1", "café", "café", "au", "lait", "x"]
    assert tok.tokenize("") == [] and tok.tokenize("?!") == []


def test_rouge_l_chinese():
    # gold 北 京 今 天 晴, pred 今 天 北 京 晴: LCS "北京晴" (or "今天晴") = 3,
    # P = 3/5, R = 3/5, F1 = 0.6.
    assert rouge_l("今天北京晴", "北京今天晴") == pytest.approx(0.6)
    # gold 我喜欢吃苹果 (6), pred 我喜欢苹果 (5): LCS 5, P = 1, R = 5/6,
    # F1 = 2*(5/6) / (11/6) = 10/11.
    assert rouge_l("我喜欢苹果", "我喜欢吃苹果") == pytest.approx(10 / 11)


def test_whitespace_or_default_tokens_would_miss_chinese():
    gold, pred = "北京今天晴", "今天北京晴"
    assert gold.split() == [gold]  # one "word": no overlap unless the whole sentence matches

    class Whitespace:
        def tokenize(self, text):
            return text.split()

    by_space = RougeScorer(["rougeL"], tokenizer=Whitespace()).score(gold, pred)["rougeL"]
    default = RougeScorer(["rougeL"]).score(gold, pred)["rougeL"]  # keeps only [a-z0-9]
    assert by_space.fmeasure == 0.0 and default.fmeasure == 0.0
    assert rouge_l(pred, gold) == pytest.approx(0.6)


def test_rouge_l_english_mixed_and_edges():
    # gold the cat sat on the mat (6), pred "The CAT, sat." -> the cat sat (3):
    # LCS 3, P = 1, R = 1/2, F1 = 2*0.5/1.5 = 2/3.
    assert rouge_l("The CAT, sat.", "the cat sat on the mat") == pytest.approx(2 / 3)
    # gold paris 今 天 sunny (4), pred 今 天 paris is sunny (5): LCS 今 天 sunny = 3,
    # P = 3/5, R = 3/4, F1 = 2*0.6*0.75/1.35 = 2/3.
    assert rouge_l("今天 Paris is sunny", "Paris 今天 sunny") == pytest.approx(2 / 3)
    assert rouge_l("", "Paris 今天 sunny") == 0.0
    assert rouge_l("Paris 今天 sunny", "Paris 今天 sunny") == 1.0


# --- aggregation ------------------------------------------------------------------------------

def steps() -> dict[str, dict]:
    """Four steps whose scores are checked above, plus a parallel one."""
    gold_book = [call("book", city="Paris", date="2024-05-01", guests=2)]
    return {
        # all right: tp 2 / pred 2 / gold 2
        "weather": score_step([call("weather", city="Paris", unit="c")],
                              [call("weather", city="Paris", unit="c")]),
        # P 1/2, R 2/3, F1 4/7; tp 2 / pred 4 / gold 3
        "book": score_step([call("book", city="Paris", guests=2, nights=3, pets=False)], gold_book),
        # text step, ROUGE-L 2/3
        "text": score_step([], [], "the cat sat", "the cat sat on the mat"),
        # missed call: decision 0, P = R = F1 = 0; tp 0 / pred 0 / gold 1
        "missed": score_step([], [call("search", q="x")]),
        # parallel, all right: tp 2 / pred 2 / gold 2
        "parallel": score_step([call("weather", city="Rome"), call("time", tz="CET")],
                               [call("time", tz="CET"), call("weather", city="Rome")]),
    }


def test_aggregate_means_and_micro_argument_scores():
    s = steps()
    agg = aggregate([s["weather"], s["book"], s["text"], s["missed"]])
    assert (agg["steps"], agg["call_steps"], agg["text_steps"]) == (4, 3, 1)
    assert agg["decision"] == 0.75                                      # (1+1+1+0)/4
    assert agg["name_accuracy"] == pytest.approx(2 / 3)                 # (1+1+0)/3
    assert agg["exact_match"] == pytest.approx(1 / 3)                   # (1+0+0)/3
    assert agg["valid_json"] == 1.0                                     # (1+1)/2, missed has None
    assert agg["rouge_l"] == pytest.approx(2 / 3)
    # Macro over the 3 call steps: P (1+0.5+0)/3 = 0.5, R (1+2/3+0)/3 = 5/9, F1 (1+4/7+0)/3 = 11/21.
    assert agg["arg_precision"] == pytest.approx(0.5)
    assert agg["arg_recall"] == pytest.approx(5 / 9) and agg["arg_f1"] == pytest.approx(11 / 21)
    # Micro from summed counts: tp 4, pred 6, gold 6 -> P = R = F1 = 2/3.
    assert (agg["arg_tp"], agg["arg_pred"], agg["arg_gold"]) == (4, 6, 6)
    for key in ("arg_precision_micro", "arg_recall_micro", "arg_f1_micro"):
        assert agg[key] == pytest.approx(2 / 3), key
    json.dumps(agg)


def test_aggregate_of_nothing():
    agg = aggregate([])
    assert agg["steps"] == 0 and agg["decision"] is None and agg["arg_f1_micro"] is None


def test_aggregate_by_tool_counts_a_step_under_each_of_its_tools():
    s = steps()
    rows = [{"tool": ["weather"], "file": "a.jsonl", "scores": s["weather"]},
            {"tool": ["book"], "file": "a.jsonl", "scores": s["book"]},
            {"tool": [], "file": "b.jsonl", "scores": s["text"]},
            {"tool": ["search"], "file": "b.jsonl", "scores": s["missed"]},
            {"tool": ["time", "weather"], "file": "b.jsonl", "scores": s["parallel"]}]
    by_tool = aggregate_by(rows, "tool")
    assert list(by_tool) == [NO_CALL, "book", "search", "time", "weather"]
    assert by_tool["weather"]["steps"] == 2 and by_tool["weather"]["exact_match"] == 1.0
    assert by_tool["time"]["steps"] == 1
    assert by_tool[NO_CALL]["text_steps"] == 1 and by_tool[NO_CALL]["name_accuracy"] is None
    assert by_tool["search"]["decision"] == 0.0

    by_file = aggregate_by(rows, "file")
    assert {k: v["steps"] for k, v in by_file.items()} == {"a.jsonl": 2, "b.jsonl": 3}
    # b.jsonl: decisions 1, 0, 1 -> 2/3; micro tp 0+2 / pred 0+2 / gold 1+2 -> P 1, R 2/3, F1 0.8.
    assert by_file["b.jsonl"]["decision"] == pytest.approx(2 / 3)
    assert by_file["b.jsonl"]["arg_f1_micro"] == pytest.approx(0.8)


def test_perplexity_from():
    assert perplexity_from(10 * math.log(4.0), 10) == pytest.approx(4.0)
    assert perplexity_from(0.0, 0) is None
    assert perplexity_from(1e6, 1) == math.inf
    with pytest.raises(ValueError, match="tokens is -1"):
        perplexity_from(1.0, -1)


def test_many_calls_of_one_name_still_pair_exactly():
    # 9 calls give 9! orderings, past the exact search: the greedy fallback must still pair them.
    pred = [call("f", x=i) for i in range(9)]
    gold = pred[::-1]
    assert match_calls(pred, gold) == [(i, 8 - i) for i in range(9)]
    assert score_step(pred, gold)["exact_match"] == 1.0


def test_calls_valid_against_the_schema_of_the_offered_tools():
    """Of four attempted calls, one names an offered tool with valid arguments; the others
    have a wrong type, an unknown tool, and no JSON at all: schema_valid 1/4, valid_json 3/4."""
    from agentsft.data.schema import Tool
    from agentsft.evaluation.report import markdown_table
    weather = Tool("get_weather", "", {"type": "object", "required": ["city"], "properties": {
        "city": {"type": "string"}, "unit": {"enum": ["C", "F"]}}})
    pred = [{"name": "get_weather", "arguments": {"city": "Paris", "unit": "C"}},
            {"name": "get_weather", "arguments": {"city": 3}},
            {"name": "get_time", "arguments": {}}]
    gold = [{"name": "get_weather", "arguments": {"city": "Paris"}}]
    out = score_step(pred, gold, invalid_calls=1, tools=[weather])
    assert out["schema_valid"] == 0.25 and out["valid_json"] == 0.75
    assert score_step(pred, gold)["schema_valid"] is None  # no tools offered: not scored
    assert score_step([], gold, tools=[weather])["schema_valid"] is None  # no call made
    agg = aggregate([out, score_step(pred[:1], gold, tools=[weather])])
    assert agg["schema_valid"] == (0.25 + 1.0) / 2
    assert "| calls valid against the schema | 0.625 |" in markdown_table({"model": agg})
