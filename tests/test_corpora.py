"""The public function-calling corpora's layouts (fixtures written here, in each layout with
its quirks): detected, read into the one conversation shape, converted to OpenAI's and back
unchanged, and trained where the agent speaks (its calls) but not on tool results."""

from __future__ import annotations

import json

import pytest
from conftest import FIXTURES, run_cli

from agentsft.data.corpora import json_schema, python_calls, schema_of
from agentsft.data.readers import read_conversations
from agentsft.data.templates import HermesTemplate
from agentsft.data.tokenize import encode
from agentsft.errors import DataError

CORPORA = FIXTURES / "corpora"
LAYOUTS = {"xlam": "xlam.jsonl", "glaive": "glaive.jsonl", "hermes-fc": "hermes_fc.jsonl",
           "toolace": "toolace.jsonl", "bfcl": "bfcl.jsonl"}


def read(name: str):
    return read_conversations(str(CORPORA / LAYOUTS[name]))


@pytest.mark.parametrize("name", LAYOUTS)
def test_each_layout_is_detected_and_converts_to_openai_and_back(name, tmp_path):
    r = read(name)
    assert r.formats[str(CORPORA / LAYOUTS[name])] == name and r.conversations
    out = tmp_path / "openai.jsonl"
    done = run_cli("data", "convert", str(CORPORA / LAYOUTS[name]), "--to", "openai", "-o", str(out))
    assert done.returncode == 0, done.stderr
    back = read_conversations(str(out))
    assert back.formats[str(out)] == "openai"
    assert [c.to_dict() for c in back.conversations] == [c.to_dict() for c in r.conversations]


def trained_and_masked(conv, tokenizer) -> tuple[str, str]:
    rendered = HermesTemplate().render(conv)
    ex = encode(rendered, tokenizer)
    trained = "".join(rendered.text[s:e] for (s, e), t in zip(ex.offsets, ex.trained) if t)
    masked = "".join(rendered.text[s:e] for (s, e), t in zip(ex.offsets, ex.trained) if not t)
    return trained, masked


@pytest.mark.parametrize("name,call,result", [
    ("xlam", '"Rome"', None),
    ("glaive", '"EUR"', "converted_amount"),
    ("hermes-fc", '"MSFT"', '"price"'),
    ("toolace", '"Paris"', "sunny"),
    ("bfcl", '"base": 10', None),
])
def test_the_calls_are_trained_and_the_results_are_not(name, call, result, tokenizer):
    trained, masked = trained_and_masked(read(name).conversations[0], tokenizer)
    assert call in trained and "<tool_call>" in trained
    if result is not None:
        assert result in masked and result not in trained


def test_xlam_types_and_optional_parameters():
    conv = read("xlam").conversations[0]
    [weather] = conv.tools
    assert weather.parameters["properties"]["unit"] == {
        "type": "string", "description": "celsius or fahrenheit.", "default": "celsius"}
    assert [c.arguments["city"] for c in conv.messages[1].tool_calls] == ["Paris", "Rome"]
    numbers = read("xlam").conversations[1].tools[0].parameters
    assert numbers["properties"]["numbers"]["type"] == "array"
    assert numbers["properties"]["numbers"]["items"] == {"type": "integer"} and numbers["required"] == ["numbers"]


def test_glaive_single_quoted_arguments_and_no_tools():
    calls, plain = read("glaive").conversations
    call = calls.messages[2].tool_calls[0]
    assert call.name == "convert_currency" and call.arguments == {"amount": 100, "from": "USD", "to": "EUR"}
    assert [t.name for t in calls.tools] == ["convert_currency", "get_time"]
    assert calls.messages[3].role == "tool" and calls.messages[3].name == "convert_currency"
    assert not any("<|endoftext|>" in m.content for m in calls.messages)
    assert not plain.tools and plain.messages[-1].content.startswith("Why did the scarecrow")


def test_hermes_python_literals_and_the_prompts_own_tag_names():
    tools_conv, json_mode = read("hermes-fc").conversations
    assert [t.name for t in tools_conv.tools] == ["get_stock_price"]
    assert "<tools></tools> XML tags" in tools_conv.messages[0].content  # prose kept, list taken out
    assert "'get_stock_price'" not in tools_conv.messages[0].content
    assert [c.arguments for c in tools_conv.messages[2].tool_calls] == [{"symbol": "AAPL"}, {"symbol": "MSFT"}]
    assert json.loads(tools_conv.messages[4].content) == {"symbol": "MSFT", "price": 410.2}
    assert not json_mode.tools and json_mode.messages[-1].content == '{"name": "Biscuit"}'


def test_toolace_python_calls_and_dict_types():
    conv = read("toolace").conversations[0]
    assert [(c.name, c.arguments) for c in conv.messages[2].tool_calls] == [
        ("get_weather", {"city": "Paris", "days": 2}), ("get_time", {"tz": "CET"})]
    assert conv.tools[0].parameters["type"] == "object"
    assert [m.name for m in conv.messages if m.role == "tool"] == ["get_weather", "get_time"]


def test_bfcl_python_type_names_become_json_schema():
    conv = read("bfcl").conversations[0]
    props = conv.tools[0].parameters["properties"]
    assert conv.tools[0].parameters["type"] == "object" and props["height"]["type"] == "number"
    assert props["dims"] == {"type": "array", "items": {"type": "number"}} and props["extra"] == {}
    assert conv.messages[-1].tool_calls[0].arguments == {"base": 10, "height": 5.0, "unit": "units"}
    assert schema_of("List[str]") == {"type": "array", "items": {"type": "string"}}
    assert json_schema({"type": "dict", "properties": {"x": {"type": "Any"}}}) == {
        "type": "object", "properties": {"x": {}}}


def test_bfcl_possible_answers_are_joined_by_id(tmp_path):
    """BFCL keeps gold calls apart, in possible_answer/NAME beside the question file: they are
    joined by id, from the file or its folder (which does not read them as questions)."""
    records = [json.loads(line) for line in (CORPORA / "bfcl.jsonl").read_text().splitlines()]
    (tmp_path / "possible_answer").mkdir()
    (tmp_path / "BFCL_v3_simple.json").write_text(
        "".join(json.dumps({k: v for k, v in r.items() if k != "ground_truth"}) + "\n" for r in records))
    (tmp_path / "possible_answer" / "BFCL_v3_simple.json").write_text(
        "".join(json.dumps({"id": r["id"], "ground_truth": r["ground_truth"]}) + "\n"
                for r in reversed(records) if "ground_truth" in r))
    want = [c.to_dict() for c in read("bfcl").conversations]
    for path in (tmp_path / "BFCL_v3_simple.json", tmp_path):
        assert [c.to_dict() for c in read_conversations(str(path)).conversations] == want
    (tmp_path / "possible_answer" / "BFCL_v3_simple.json").write_text('{"id": "simple_1"}\n')
    with pytest.raises(DataError, match=r"possible_answer/BFCL_v3_simple.json:1: is not a possible answer"):
        read_conversations(str(tmp_path))


@pytest.mark.parametrize("text", ["[get(1)]", "get(city='x')", "[get(city=open('f'))]"])
def test_a_call_list_that_is_not_python_calls_is_refused(text):
    with pytest.raises(DataError, match="Python calls"):
        python_calls(text, "conversations[1].value")


def test_a_broken_record_is_named_by_its_line(tmp_path):
    lines = (CORPORA / "glaive.jsonl").read_text().splitlines()
    broken = json.loads(lines[0])
    broken["chat"] = broken["chat"].replace("<functioncall> {", "<functioncall> {{", 1)
    path = tmp_path / "glaive.jsonl"
    path.write_text(lines[1] + "\n" + json.dumps(broken) + "\n")
    r = run_cli("data", "check", str(path))
    assert r.returncode == 2 and f"{path}:2: chat turn 2:" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
