"""Export: the run's agent template as a Jinja chat template that renders exactly as
agentsft does, through transformers' own ``apply_chat_template``."""

from __future__ import annotations

import copy
import glob
import json

import pytest

from agentsft.data.readers import read_conversations
from agentsft.data.templates import get_template
from agentsft.errors import AgentsftError
from agentsft.export.chat_template import chat_template
from conftest import FIXTURES, ROOT, TOOL_TEMPLATE, chat_conversation, run_cli, tool_conversation
from test_calls import QWEN_STYLE

SOURCES = sorted(glob.glob(str(ROOT / "examples" / "*.jsonl"))) + sorted(
    str(p) for p in FIXTURES.iterdir() if p.suffix in (".json", ".jsonl"))


def conversations():
    convs = [tool_conversation(), chat_conversation()]
    for path in SOURCES:
        convs += read_conversations(path, skip_invalid=True).conversations
    return convs


def renders_alike(tok, template, convs) -> int:
    """How many renders were compared; fails at the first that differs."""
    exported = copy.deepcopy(tok)
    exported.chat_template = chat_template(template, tok)
    n = 0
    for conv in convs:
        d = conv.to_dict()
        for gen in (False, True):
            want = template.render(conv, add_generation_prompt=gen).text
            got = exported.apply_chat_template(d["messages"], tools=d.get("tools"), tokenize=False,
                                               add_generation_prompt=gen)
            assert got == want, (conv.source, gen)
            n += 1
    return n


@pytest.mark.parametrize("name", ["hermes", "msagent"])
def test_the_chat_template_renders_every_example_exactly(tokenizer, name):
    convs = conversations()
    assert len(convs) > 500 and any(c.tools for c in convs)
    assert any(c.extra for conv in convs for m in conv.messages for c in m.tool_calls)  # msagent's url
    assert renders_alike(tokenizer, get_template(name, tokenizer), convs) == 2 * len(convs)


@pytest.mark.parametrize("jinja", [TOOL_TEMPLATE, QWEN_STYLE], ids=["untagged", "qwen-style"])
def test_a_native_run_keeps_its_tokenizers_template(tokenizer, jinja):
    tok = copy.deepcopy(tokenizer)
    tok.chat_template = jinja
    assert chat_template(get_template("native", tok), tok) == jinja
    renders_alike(tok, get_template("native", tok), [tool_conversation(), chat_conversation()])


def test_arguments_keep_the_schema_order_in_nested_objects(tokenizer):
    conv = tool_conversation()  # search_flights: "filters" is not in the schema, "route" is
    calls = conv.messages[2].tool_calls
    calls[1].arguments = dict(reversed(list(calls[1].arguments.items())))
    renders_alike(tokenizer, get_template("hermes", tokenizer), [conv])


def test_a_template_without_a_chat_template_is_refused_with_the_fix(tokenizer):
    from agentsft.data.templates.hermes import HermesTemplate

    class Homemade(HermesTemplate):
        name = "homemade"
    with pytest.raises(AgentsftError, match="--template hermes"):
        chat_template(Homemade(), tokenizer)


# --- agentsft export --to hf ------------------------------------------------------------------

@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from test_evaluate import weather
    path = tmp_path_factory.mktemp("export-data") / "weather.jsonl"
    path.write_text("".join(json.dumps(weather(i, c, True)) + "\n" for i, c in enumerate(["Paris", "Rome"])))
    return path


@pytest.fixture(scope="module")
def lora_run(tiny_model, data, tmp_path_factory):
    """A tiny LoRA run (hermes), trained hard enough that its adapter changes every logit."""
    from agentsft import config
    from agentsft.training import train
    out = tmp_path_factory.mktemp("export-runs") / "weather"
    train(config.load(flags={"model.name": str(tiny_model), "data.train": [str(data)],
                             "data.val_fraction": 0, "data.template": "hermes",
                             "training.output": str(out), "training.max_steps": 3,
                             "training.batch_size": 2, "training.learning_rate": 0.01}))
    return out


@pytest.fixture(scope="module")
def exported(lora_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("exports") / "weather-hf"
    result = run_cli("export", str(lora_run), "-o", str(out), "--dtype", "float32")
    assert result.returncode == 0, result.stderr
    assert "exported" in result.stderr and "MB" in result.stderr
    return out


def test_the_export_is_self_contained(exported, tokenizer):
    from transformers import AutoTokenizer, GenerationConfig
    names = {p.name for p in exported.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja",
            "generation_config.json", "README.md"} <= names
    assert not any(n.startswith("adapter") for n in names)
    import os
    umask = os.umask(0)
    os.umask(umask)
    assert all(p.stat().st_mode & 0o777 == 0o666 & ~umask for p in exported.iterdir())  # not private
    tok = AutoTokenizer.from_pretrained(exported)
    conv = tool_conversation()
    d = conv.to_dict()
    assert tok.apply_chat_template(d["messages"], tools=d["tools"], tokenize=False) == \
        get_template("hermes", tokenizer).render(conv).text
    end_of_turn = tokenizer.convert_tokens_to_ids("<|im_end|>")
    eos = GenerationConfig.from_pretrained(exported).eos_token_id
    assert end_of_turn in (eos if isinstance(eos, list) else [eos])
    card = (exported / "README.md").read_text()
    assert "hermes" in card and "weather.jsonl`: 2 records" in card and "learning_rate: 0.01" in card


def test_the_exported_logits_equal_base_plus_adapter(exported, lora_run, tiny_model):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM
    ids = torch.tensor([[1, 450, 1000, 77, 3000, 42, 9]])
    with torch.no_grad():
        merged = AutoModelForCausalLM.from_pretrained(exported, dtype=torch.float32)(ids).logits
        base = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
        plain = base(ids).logits
        adapted = PeftModel.from_pretrained(base, str(lora_run / "final"))(ids).logits
    assert (adapted - plain).abs().max() > 1e-2  # the adapter matters
    assert torch.allclose(merged, adapted, atol=1e-4), (merged - adapted).abs().max()


def test_chat_on_the_export_answers_as_the_run(exported, lora_run):
    ask = ("chat", "--prompt", "Weather in Paris?", "--max-new-tokens", "20", "--dtype", "float32")
    on_export = run_cli(*ask, "--model", str(exported))
    on_run = run_cli(*ask, "--adapter", str(lora_run))
    assert on_export.returncode == 0 and on_run.returncode == 0, on_export.stderr + on_run.stderr
    assert on_export.stdout == on_run.stdout


def test_eval_on_the_export_scores_as_the_run(exported, lora_run, data, tmp_path):
    reports = []
    for name, which in [("export", ("--model", str(exported))), ("run", ("--adapter", str(lora_run)))]:
        r = run_cli("eval", "--data", str(data), *which, "-o", str(tmp_path / name),
                    "--max-new-tokens", "16", "--dtype", "float32")
        assert r.returncode == 0, r.stderr[-2000:]
        reports.append(json.loads((tmp_path / name / "report.json").read_text())["overall"])
        reports[-1]["predictions"] = [json.loads(line)["raw_output"] for line in
                                      (tmp_path / name / "predictions.jsonl").read_text().splitlines()]
    assert reports[0] == reports[1] and reports[0]["steps"] == 4


def test_an_existing_output_needs_force(exported, lora_run):
    again = run_cli("export", str(lora_run), "-o", str(exported))
    assert again.returncode == 2 and "--force" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1
    forced = run_cli("export", str(lora_run), "-o", str(exported), "--force")
    assert forced.returncode == 0 and (exported / "model.safetensors").is_file()
    assert not any(p.name.startswith(".") for p in exported.parent.iterdir())  # no leftovers
    missing = run_cli("export", str(exported.parent / "nope"), "-o", str(exported.parent / "x"))
    assert missing.returncode == 2 and "no trained adapter or model" in missing.stderr
