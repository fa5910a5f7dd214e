"""End-to-end runs of ``agentsft data ...``: exit codes, one-line errors, JSON output."""

from __future__ import annotations

import json

import pytest
from conftest import FIXTURES, ROOT, run_cli

from agentsft.cli import main
from agentsft.data.readers import read_conversations

BROKEN = {
    "invalid_json.jsonl": "invalid JSON",
    "unknown_role.jsonl": "messages[1].role: unknown role 'robot'",
    "empty.jsonl": "conversation is empty",
    "no_assistant.jsonl": "no assistant turn",
    "orphan_tool.jsonl": "messages[1]: tool result with no tool call before it",
    "args_not_object.jsonl": "arguments must be a JSON object",
    "wrong_type.jsonl": "messages[0].content: expected a string, got a number 42",
    "train_string.jsonl": "messages[1].train: expected true/false",
    "msagent_unclosed.jsonl": "unmatched <|startofthink|>",
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_each_validation_error_is_one_line_with_file_and_line(name):
    path = f"tests/fixtures/broken/{name}"
    r = run_cli("data", "check", path)
    assert r.returncode == 2
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith(f"agentsft: error: {path}:2: ")
    assert BROKEN[name] in lines[0] and "Fix: " in lines[0]
    assert "Traceback" not in r.stderr


def test_unlisted_tool_is_a_warning_not_an_error():
    r = run_cli("data", "check", "tests/fixtures/broken/unlisted_tool.jsonl")
    assert r.returncode == 0
    assert "warning: tests/fixtures/broken/unlisted_tool.jsonl:2: messages[1].tool_calls[0]: " \
           "calls 'nuke', which is not in tools (listed: calculate)" in r.stdout
    assert "1 warning, no errors" in r.stdout


def test_check_with_skip_invalid_lists_the_skipped_records():
    files = [f"tests/fixtures/broken/{n}" for n in sorted(BROKEN)]
    r = run_cli("data", "check", "--skip-invalid", *files)
    assert r.returncode == 0, r.stderr
    assert "total: 9 conversations" in r.stdout  # the valid first line of each file
    assert f"skipped {len(BROKEN)} invalid records:" in r.stdout
    for n in BROKEN:
        assert f"tests/fixtures/broken/{n}:2:" in r.stdout


def test_check_examples_is_clean():
    # `agentsft data check examples/*`: the shell also passes the README and the scripts
    files = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "examples").iterdir())
    assert len(files) > 3
    r = run_cli("data", "check", *files)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith("0 warnings, no errors")
    assert "(msagent)" in r.stdout and "(openai)" in r.stdout and "total: 800 conversations" in r.stdout
    others = [f for f in files if not f.endswith((".json", ".jsonl"))]
    assert len(others) >= 3  # README.md, the generators, the tools (and __init__.py, __pycache__)
    assert r.stderr.startswith(f"ignored {len(others)} paths holding no data (.json, .jsonl, "
                               f".parquet, .arrow, .csv, .tsv): ")


def test_check_takes_a_folder():
    r = run_cli("data", "check", "examples")
    assert r.returncode == 0 and "total: 800 conversations" in r.stdout and r.stderr == ""


CRASHERS = {  # inputs that once raised a traceback
    "from_list.jsonl": '{"conversations": [{"from": ["human"], "value": "hi"}, {"from": "gpt", "value": "x"}]}',
    "deep.jsonl": "[" * 100000 + "]" * 100000,
    "tool_calls_object.jsonl": '{"messages": [{"role": "user", "content": "hi"}, '
                               '{"role": "assistant", "content": "x", "tool_calls": {}}]}',
    "untrainable.jsonl": '{"messages": [{"role": "user", "content": "hi"}, '
                         '{"role": "assistant", "content": "x", "train": false}]}',
}


@pytest.mark.parametrize("name", sorted(CRASHERS))
def test_bad_inputs_give_one_line_not_a_traceback(name, tmp_path):
    p = tmp_path / name
    p.write_text(CRASHERS[name] + "\n")
    r = run_cli("data", "check", str(p))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and f"{p}:1" in r.stderr


def test_convert_to_a_folder_is_a_clean_error(tmp_path):
    r = run_cli("data", "convert", "tests/fixtures/lima.jsonl", "-o", str(tmp_path))
    assert r.returncode == 2 and "is a folder" in r.stderr and "Traceback" not in r.stderr


def test_data_without_an_action_prints_help_and_fails():
    r = run_cli("data")
    assert r.returncode == 2 and "check" in r.stderr and "preview" in r.stderr


def test_preview_json_masks_tool_results_and_trains_calls(capsys):
    assert main(["data", "preview", str(ROOT / "examples/tools.jsonl"), "-n", "0", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 150
    seen_call = seen_result = 0
    for row in rows:
        assert set(row) >= {"tokens", "ids", "trained"}
        assert len(row["tokens"]) == len(row["ids"]) == len(row["trained"])
        text = "".join(row["tokens"])
        pos = 0
        for tok, t in zip(row["tokens"], row["trained"]):
            inside_result = text.rfind("<tool_response>", 0, pos) > text.rfind("</tool_response>", 0, pos)
            inside_call = text.rfind("<tool_call>", 0, pos + 1) > text.rfind("</tool_call>", 0, pos) \
                and text.rfind("<|im_start|>assistant", 0, pos) > text.rfind("<|im_start|>system", 0, pos)
            if inside_result:
                assert t == 0, (row["source"], tok)
                seen_result += 1
            if inside_call:
                assert t == 1, (row["source"], tok)
                seen_call += 1
            pos += len(tok)
    assert seen_call > 1000 and seen_result > 1000


def test_preview_text_marks_trained_runs(capsys):
    assert main(["data", "preview", str(FIXTURES / "openai.jsonl"), "-n", "1"]) == 0
    out = capsys.readouterr().out
    assert "[[trained]] masked" in out
    assert '[[<tool_call>\n{"name": "calculate", "arguments": {"expression": "6*7"}}\n</tool_call><|im_end|>]]' in out
    assert "[[42.<|im_end|>]]" in out
    assert "[[" not in out.split("<|im_start|>assistant")[0].split("──", 2)[-1]


def test_preview_colours_on_request(capsys):
    assert main(["data", "preview", str(FIXTURES / "lima.jsonl"), "--color", "always"]) == 0
    out = capsys.readouterr().out
    assert "\x1b[1;32mFirst answer.<|im_end|>\x1b[2m" in out


def test_stats_percentiles_histogram_and_max_length(capsys):
    assert main(["data", "stats", str(ROOT / "examples/tools.jsonl"), "--max-length", "800"]) == 0
    out = capsys.readouterr().out
    assert "150 examples" in out and "p50=" in out and "p99=" in out
    over = int(out.split("at --max-length 800: ")[1].split(" ")[0])
    assert 0 < over < 150
    assert "<- max length" in out and out.count("#") > 40


def test_convert_msagent_to_openai_round_trips(tmp_path):
    out = tmp_path / "converted.jsonl"
    r = run_cli("data", "convert", "tests/fixtures/msagent.jsonl", "--to", "openai", "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert "wrote 3 conversations" in r.stdout
    original = read_conversations(FIXTURES / "msagent.jsonl").conversations
    again = read_conversations(out)
    assert again.formats[str(out)] == "openai"
    assert [c.to_dict() for c in again.conversations] == [c.to_dict() for c in original]
    call = json.loads(out.read_text().splitlines()[0])["messages"][2]["tool_calls"][0]
    assert call["function"] == {"name": "get_weather", "arguments": {"city": "Hangzhou"}}
    assert call["url"] == "http://localhost/weather"


def test_help_and_usage_errors():
    r = run_cli("data", "preview", "--help")
    assert r.returncode == 0 and "--template" in r.stdout and "--json" in r.stdout
    r = run_cli("data", "stats", "x.jsonl", "--max-length", "-3")
    assert r.returncode == 2 and "expected a number >= 1, got -3" in r.stderr


def test_missing_default_model_tokenizer_source_is_a_clean_error(tmp_path):
    r = run_cli("data", "preview", str(FIXTURES / "lima.jsonl"), "--model", str(tmp_path / "nope"))
    assert r.returncode == 2
    assert r.stderr.startswith("agentsft: error: cannot load a tokenizer for")
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_preview_and_stats_load_the_tokenizer_with_the_collector_paused(tokenizer, monkeypatch):
    """The data verbs wait on transformers' imports: collection is off while the tokenizer
    loads (about 1 s of ``data stats`` here), then on, with what loading made frozen."""
    import gc
    from types import SimpleNamespace

    from agentsft import hub
    from agentsft.cli import data as cli_data
    during = []
    monkeypatch.setattr(hub, "load_tokenizer",
                        lambda *a, **k: during.append(gc.isenabled()) or tokenizer)
    tok, template = cli_data.tokenizer_and_template(
        SimpleNamespace(model="x", trust_remote_code=False, template="hermes"))
    assert tok is tokenizer and template.name == "hermes"
    assert during == [False] and gc.isenabled() and gc.get_freeze_count() > 0
