"""Each reader on a small fixture written for it, format detection, and skip-invalid reporting."""

from __future__ import annotations

import json

import pytest
from conftest import FIXTURES

from agentsft.data.readers import read_conversations
from agentsft.data.schema import DataError


def roles(conv) -> list[str]:
    return [m.role for m in conv.messages]


def read(name: str, **kw):
    report = read_conversations(FIXTURES / name, **kw)
    assert not report.skipped
    return report


def test_openai_arguments_as_string_or_object_and_content_parts():
    report = read("openai.jsonl")
    assert report.formats[str(FIXTURES / "openai.jsonl")] == "openai"
    a, b = report.conversations
    assert roles(a) == ["system", "user", "assistant", "tool", "assistant"]
    (call,) = a.messages[2].tool_calls
    assert (call.name, call.arguments, call.id) == ("calculate", {"expression": "6*7"}, "c1")
    assert a.messages[2].content == ""  # null content
    assert a.messages[3].tool_call_id == "c1" and a.messages[3].content == "42"
    assert [t.name for t in a.tools] == ["calculate"]
    assert a.source.endswith("openai.jsonl:1")
    assert b.source.endswith("openai.jsonl:3")  # the blank line 2 is not a record
    assert b.messages[0].content == "Hello there"
    assert b.messages[1].train is False and b.tools is None


def test_sharegpt_function_calls_observations_and_tools_string():
    (a, b) = read("sharegpt.json").conversations
    assert roles(a) == ["system", "user", "assistant", "tool", "tool", "assistant"]
    assert a.messages[0].content == "You help with the weather."
    calls = a.messages[2].tool_calls
    assert [(c.name, c.arguments) for c in calls] == [
        ("get_weather", {"city": "Oslo"}), ("get_weather", {"city": "Lima"})]
    assert [m.name for m in a.messages[3:5]] == ["get_weather", "get_weather"]
    assert a.messages[4].content == '{"condition": "sun"}'
    assert [t.name for t in a.tools] == ["get_weather"]
    assert roles(b) == ["user", "assistant"]
    assert a.source.endswith("sharegpt.json:2") and b.source.endswith("sharegpt.json:13")


def test_alpaca_history_input_and_system():
    (a, b) = read("alpaca.json").conversations
    assert [(m.role, m.content) for m in a.messages] == [
        ("system", "You translate."),
        ("user", "Translate to French: cat"), ("assistant", "chat"),
        ("user", "And dog?"), ("assistant", "chien"),
        ("user", "Translate to French.\n\nGood morning"), ("assistant", "Bonjour"),
    ]
    assert [(m.role, m.content) for m in b.messages] == [("user", "Say hi."), ("assistant", "Hi!")]


def test_lima_keeps_every_turn():
    (a,) = read("lima.jsonl").conversations
    assert roles(a) == ["user", "assistant"] * 3
    assert a.messages[-1].content == "Third answer."


def test_msagent_two_rounds():
    convs = read("msagent.jsonl").conversations
    a = convs[0]
    assert roles(a) == ["system", "user", "assistant", "tool", "assistant",
                        "user", "assistant", "tool", "assistant"]
    first = a.messages[2]
    assert first.content == "Let me check."
    (call,) = first.tool_calls
    assert (call.name, call.arguments) == ("get_weather", {"city": "Hangzhou"})
    assert call.extra == {"url": "http://localhost/weather"}  # extra fields kept
    assert a.messages[3].content == '{"temperature": 21, "unit": "C"}'  # fence stripped
    assert a.messages[4].content == "It is 21°C in Hangzhou."
    assert a.messages[6].tool_calls[0].arguments == {"value": 21, "from_unit": "C", "to_unit": "F"}
    assert a.messages[7].content == "69.8"
    assert a.messages[8].content == "杭州现在约69.8华氏度。"


def test_msagent_two_calls_in_one_turn_and_plain_turns():
    _, b, c = read("msagent.jsonl").conversations
    assert roles(b) == ["system", "user", "assistant", "tool", "assistant", "tool", "assistant"]
    assert b.messages[4].tool_calls[0].arguments["options"] == {"precision": 2, "steps": [1, 2]}
    assert b.messages[6].content == "Paris is at 14°C, which is 287.15 K."
    assert [(m.role, m.content) for m in c.messages] == [
        ("user", "Hi"), ("assistant", "Hello! How can I help?")]


def test_format_can_be_forced_and_wrong_format_is_a_clear_error():
    with pytest.raises(DataError, match=r"alpaca.json:2: instruction.*|record has no messages"):
        read_conversations(FIXTURES / "alpaca.json", format="openai")
    with pytest.raises(DataError, match="unknown format"):
        read_conversations(FIXTURES / "alpaca.json", format="yaml")


def test_undetectable_format_suggests_format_flag(tmp_path):
    p = tmp_path / "odd.jsonl"
    p.write_text('{"prompt": "a", "completion": "b"}\n')
    with pytest.raises(DataError, match=r"cannot tell the data format.*--format"):
        read_conversations(p)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="nothere.jsonl: file not found"):
        read_conversations(tmp_path / "nothere.jsonl")


def test_json_array_errors_name_the_line(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text('[\n  {"messages": [{"role": "user", "content": "hi"},\n'
                 '                {"role": "assistant", "content": "yo"}]},\n'
                 '  {"messages": [{"role": "user", "content": "hi"}]}\n]\n')
    with pytest.raises(DataError, match=r"bad.json:4: messages: conversation has no assistant turn"):
        read_conversations(p)


def test_skip_invalid_keeps_every_valid_record_and_lists_the_rest(tmp_path):
    lines = []
    for f in sorted((FIXTURES / "broken").glob("*.jsonl")):
        if "msagent" not in f.name:
            lines += f.read_text().splitlines()
    p = tmp_path / "mixed.jsonl"
    p.write_text("\n".join(lines) + "\n")
    report = read_conversations(p, skip_invalid=True)
    valid = [json.loads(x) for x in lines if x.startswith('{"messages": [{"role": "user", "content": "hi"}, '
                                                          '{"role": "assistant", "content": "hello"}]}')]
    # 9 files: 9 valid first lines, 1 valid-with-warning second line, 8 invalid second lines
    assert len(report.conversations) == len(valid) + 1 == 10
    assert len(report.skipped) == 8
    assert sorted(int(e.where.rsplit(":", 1)[1]) for e in report.skipped) == [2, 4, 6, 8, 10, 12, 14, 18]
    assert len(report.warnings) == 1 and "'nuke'" in report.warnings[0]


# --- cases found in review: each once let data through wrongly ------------------------------


def write(tmp_path, name: str, text: str):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_msagent_is_detected_from_a_think_block_anywhere_in_the_file(tmp_path):
    plain = {"conversations": [{"from": "user", "value": "hi"}, {"from": "assistant", "value": "yo"}]}
    tool = {"conversations": [{"from": "user", "value": "x"}, {"from": "assistant", "value":
            '<|startofthink|>```JSON\n{"api_name": "f", "parameters": {}}\n```<|endofthink|>\n\n'
            '<|startofexec|>```JSON\n{"r": 1}\n```<|endofexec|>\ndone'}]}
    p = write(tmp_path, "late.jsonl", "".join(json.dumps(r) + "\n" for r in [plain] * 300 + [tool]))
    report = read_conversations(p)
    assert report.formats[str(p)] == "msagent"
    assert roles(report.conversations[-1]) == ["user", "assistant", "tool", "assistant"]
    with pytest.raises(DataError, match=r"late.jsonl:301: conversations\[1\].value: holds "
                                        r".*Fix: pass --format msagent"):
        read_conversations(p, format="sharegpt")


def test_records_sharing_a_line_get_their_own_source(tmp_path):
    rec = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}
    p = write(tmp_path, "compact.json", json.dumps([rec, rec, rec]))
    sources = [c.source for c in read_conversations(p).conversations]
    assert sources == [f"{p}:1", f"{p}:1 (record 2)", f"{p}:1 (record 3)"]


def test_text_after_a_json_list_is_an_error(tmp_path):
    rec = json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]})
    with pytest.raises(DataError, match=r"lists.jsonl:2: invalid JSON: text after the closing \]"):
        read_conversations(write(tmp_path, "lists.jsonl", f"[{rec}]\n[{rec}]\n"))


def test_a_unicode_line_separator_inside_a_string_is_not_a_new_line(tmp_path):
    rec = {"messages": [{"role": "user", "content": "a\u2028b"}, {"role": "assistant", "content": "c\u2029d"}]}
    p = write(tmp_path, "ls.jsonl", json.dumps(rec, ensure_ascii=False) + "\n" + json.dumps(rec) + "\n")
    convs = read_conversations(p).conversations
    assert [c.source for c in convs] == [f"{p}:1", f"{p}:2"]
    assert convs[0].messages[0].content == "a\u2028b"


def test_nan_and_infinity_are_not_json(tmp_path):
    p = write(tmp_path, "nan.jsonl", '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", '
                                     '"content": "", "tool_calls": [{"function": {"name": "f", "arguments": '
                                     '{"x": NaN}}}]}]}\n')
    with pytest.raises(DataError, match=r"nan.jsonl:1: invalid JSON: NaN is not valid JSON"):
        read_conversations(p)


def test_a_pretty_printed_record_reads_and_its_errors_name_the_right_line(tmp_path):
    rec = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}
    p = write(tmp_path, "pretty.json", json.dumps(rec, indent=2))
    (conv,) = read_conversations(p).conversations
    assert conv.messages[1].content == "yo"
    broken = json.dumps(rec, indent=2).splitlines()
    broken[4] = broken[4] + " oops"
    with pytest.raises(DataError, match=r"pretty.json:5: invalid JSON"):
        read_conversations(write(tmp_path, "pretty.json", "\n".join(broken)))


def test_a_bad_first_jsonl_line_is_skippable(tmp_path):
    good = json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]})
    p = write(tmp_path, "first.jsonl", '{"messages": [\n' + good + "\n")
    report = read_conversations(p, skip_invalid=True)
    assert len(report.conversations) == 1 and report.skipped[0].where == f"{p}:1"


def test_an_empty_file_is_an_error_for_every_verb(tmp_path, tiny_model, capsys):
    """Before: ``data check`` passed it with a warning and ``train`` said "no training
    example has a trained token"; now both stop at once, naming the file."""
    from agentsft.cli import main
    empty = write(tmp_path, "empty.jsonl", "\n")
    with pytest.raises(DataError, match=r"empty.jsonl: holds no records. Fix: add conversations"):
        read_conversations(empty)
    assert main(["data", "check", str(empty)]) == 2
    assert main(["train", "--model", str(tiny_model), "--data", str(empty),
                 "--output", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert [line.count("empty.jsonl: holds no records") for line in err[-2:]] == [1, 1]
    assert not (tmp_path / "run").exists()
    skipped = write(tmp_path, "bad.jsonl", "{not json\n")  # all invalid and skipped: counted
    assert len(read_conversations(skipped, skip_invalid=True).skipped) == 1
