"""Export: the run's agent template as a Jinja chat template that renders exactly as
agentsft does, through transformers' own ``apply_chat_template``."""

from __future__ import annotations

import copy
import glob
import json

import pytest
from conftest import (
    FIXTURES,
    ROOT,
    TOOL_TEMPLATE,
    chat_conversation,
    run_cli,
    tool_conversation,
)
from test_calls import QWEN_STYLE

from agentsft.data.readers import read_conversations
from agentsft.data.templates import get_template
from agentsft.errors import AgentsftError
from agentsft.export.chat_template import chat_template

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


@pytest.mark.parametrize("name", ["hermes", "msagent"])
def test_an_exported_chat_template_names_its_agent_template(tokenizer, name):
    """Rendering alone cannot tell them apart from a native template; reading calls can."""
    tok = copy.deepcopy(tokenizer)
    tok.chat_template = chat_template(get_template(name, tokenizer), tokenizer)
    assert get_template("auto", tok).name == name


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
    assert get_template("auto", tok).name == "hermes"  # the export says which template it is
    end_of_turn = tokenizer.convert_tokens_to_ids("<|im_end|>")
    eos = GenerationConfig.from_pretrained(exported).eos_token_id
    assert end_of_turn in (eos if isinstance(eos, list) else [eos])
    card = (exported / "README.md").read_text()
    assert "hermes" in card and "weather.jsonl`: 2 records" in card and "learning_rate: 0.01" in card


def test_a_runs_files_are_not_private(lora_run):
    """Written through temporary files and folders (mkstemp / mkdtemp make them private)."""
    import os
    umask = os.umask(0)
    os.umask(umask)
    for p in [lora_run / "config.yaml", lora_run / "final", *(lora_run / "final").iterdir()]:
        want = (0o777 if p.is_dir() else 0o666) & ~umask
        assert p.stat().st_mode & 0o777 == want, p


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


# --- agentsft export --to gguf / ollama ------------------------------------------------------

IDS = [[1, 450, 1000, 77, 3000, 42, 9, 2, 31, 7000]]


def rounded(model, dtype: str):
    """``model`` with each matrix rounded as the GGUF stores it (vectors stay float32): what
    the file must compute, exactly."""
    import gguf
    import torch
    model = copy.deepcopy(model)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim < 2:
                continue
            if dtype == "q8_0":
                q = gguf.GGMLQuantizationType.Q8_0
                p.copy_(torch.from_numpy(gguf.quants.dequantize(gguf.quants.quantize(p.numpy(), q), q)))
            else:
                p.copy_(p.to(torch.float16 if dtype == "f16" else torch.bfloat16).float())
    return model


def read_back(folder):
    import torch
    from transformers import AutoModelForCausalLM
    return AutoModelForCausalLM.from_pretrained(folder, gguf_file="model.gguf", dtype=torch.float32)


def logits(model):
    import torch
    with torch.no_grad():
        return model(torch.tensor(IDS)).logits


@pytest.fixture(scope="module")
def evaluated_run(lora_run, data):
    """The run with an eval report where ``agentsft eval`` puts it (RUN_DIR/eval)."""
    r = run_cli("eval", "--data", str(data), "--adapter", str(lora_run), "--max-new-tokens", "16",
                "--dtype", "float32")
    assert r.returncode == 0 and (lora_run / "eval" / "report.json").is_file(), r.stderr[-2000:]
    return lora_run


@pytest.mark.parametrize("dtype,tolerance", [("f16", 0.02), ("bf16", 0.1), ("q8_0", 0.3)])
def test_the_gguf_reads_back_as_the_merged_model(evaluated_run, tiny_model, tokenizer, tmp_path,
                                                 dtype, tolerance):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer
    out = tmp_path / f"weather-{dtype}"
    r = run_cli("export", str(evaluated_run), "-o", str(out), "--to", "gguf", "--dtype", dtype)
    assert r.returncode == 0, r.stderr
    assert {p.name for p in out.iterdir()} == {"model.gguf", "README.md"}
    base = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    merged = PeftModel.from_pretrained(base, str(evaluated_run / "final")).merge_and_unload().eval()
    got, want = logits(read_back(out)), logits(merged)
    # the layout is right: the file computes exactly the merged model with its matrices rounded
    assert (got - logits(rounded(merged, dtype))).abs().max() < 1e-4
    # and the rounding costs little (stated tolerance, relative to the logits' spread)
    assert (got - want).abs().max() / want.std() < tolerance, ((got - want).abs().max(), want.std())
    tok = AutoTokenizer.from_pretrained(out, gguf_file="model.gguf")
    text = "<|im_start|>user\nWeather in Paris, 12345? ünïcode 日本\t tabs<|im_end|>\n"
    assert tok(text)["input_ids"] == tokenizer(text)["input_ids"]
    assert tok.chat_template == chat_template(get_template("hermes", tokenizer), tokenizer)
    card = (out / "README.md").read_text()
    assert "## Evaluation" in card and "| name_accuracy |" in card and "llama-server" in card


@pytest.mark.parametrize("name", ["llama-untied", "qwen2-sliding", "qwen3", "mistral-sliding"])
def test_gguf_writes_each_supported_architecture(name, tokenizer, tmp_path):
    """Qwen computes its rotations on halves (no reordering); Llama's q and k rows are
    reordered for llama.cpp and back by transformers' reader; an untied head is written."""
    import torch
    import zoo
    from transformers import AutoModelForCausalLM

    from agentsft.export.gguf import gguf_architecture, write_gguf
    from agentsft.export.hf import Trained
    arch = name.removesuffix("-untied")
    config = zoo.config_of(arch, tokenizer, features=False)
    config.tie_word_embeddings = not name.endswith("untied")
    if arch == "qwen3":  # transformers' reader takes Qwen3's head size from its default, 128
        config.head_dim = 128
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
    (tmp_path / "out").mkdir()
    t = Trained(tmp_path, tmp_path, {}, model, str(tmp_path), tokenizer, get_template("hermes", tokenizer))
    write_gguf(t, gguf_architecture(config), tmp_path / "out" / "model.gguf", "f16")
    back = read_back(tmp_path / "out")
    assert back.config.tie_word_embeddings == config.tie_word_embeddings
    assert (logits(back) - logits(rounded(model, "f16"))).abs().max() < 1e-4


@pytest.mark.parametrize("name", ["gemma", "qwen2-sliding", "phi3"])
def test_gguf_refuses_what_it_does_not_write(name, tokenizer):
    import zoo

    from agentsft.export.gguf import gguf_architecture
    with pytest.raises(AgentsftError, match="llama, mistral, qwen2, qwen3") as e:
        gguf_architecture(zoo.config_of(name, tokenizer))
    assert ("sliding" in str(e.value)) == name.endswith("sliding")


def test_ollama_gets_the_gguf_and_a_modelfile(lora_run, tmp_path):
    out = tmp_path / "weather-ollama"
    r = run_cli("export", str(lora_run), "-o", str(out), "--to", "ollama", "--dtype", "q8_0")
    assert r.returncode == 0, r.stderr
    assert {p.name for p in out.iterdir()} == {"model.gguf", "Modelfile", "README.md"}
    modelfile = (out / "Modelfile").read_text()
    assert "FROM ./model.gguf\n" in modelfile and 'PARAMETER stop "<|im_end|>"\n' in modelfile
    assert ('TEMPLATE """{{ range .Messages }}{{ if eq .Role "system" }}<|im_start|>system\n'
            '{{ .Content }}<|im_end|>\n{{ else if eq .Role "user" }}<|im_start|>user\n{{ .Content }}'
            '<|im_end|>\n{{ else if eq .Role "assistant" }}<|im_start|>assistant\n{{ .Content }}'
            '<|im_end|>\n{{ end }}{{ end }}<|im_start|>assistant\n"""') in modelfile
    assert "ollama create" in (out / "README.md").read_text()
    wrong = run_cli("export", str(lora_run), "-o", str(tmp_path / "x"), "--to", "ollama",
                    "--dtype", "float32")
    assert wrong.returncode == 2 and "f16, bf16, q8_0" in wrong.stderr


@pytest.mark.parametrize("name", ["hermes", "msagent"])
def test_the_modelfile_pieces_render_every_plain_conversation(tokenizer, name):
    """Each message wrapped in its role's pieces, then the generation prompt: the template's
    own render, for every example conversation without tools."""
    from agentsft.export.gguf import role_wrappers
    template = get_template(name, tokenizer)
    wrappers, generation = role_wrappers(template)
    plain = [c for c in conversations() if not c.tools and all(
        m.role in wrappers and not m.tool_calls for m in c.messages)]
    assert len(plain) > 20
    for conv in plain:
        got = "".join(wrappers[m.role][0] + m.content + wrappers[m.role][1] for m in conv.messages)
        assert got + generation == template.render(conv, add_generation_prompt=True).text


def test_ollama_refuses_a_template_that_is_not_per_message(tokenizer):
    from agentsft.export.gguf import ollama_modelfile
    native = get_template("native", tokenizer)  # SmolLM2's adds a system turn where none is given
    with pytest.raises(AgentsftError, match="--jinja"):
        ollama_modelfile(native)


def test_the_default_models_facts_match_its_packaged_gguf():
    """The card's license and the GGUF's pre-tokenizer name for the default model are
    constants (reading them from the 100 MB file takes seconds): they must be what it says."""
    from gguf import GGUFReader

    from agentsft.config import DEFAULT_MODEL
    from agentsft.export.card import DEFAULT_LICENSE
    from agentsft.export.gguf import pre_tokenizer
    from agentsft.hub import default_gguf
    fields = GGUFReader(default_gguf()).fields

    def text(key):
        return bytes(fields[key].parts[fields[key].data[0]]).decode()
    assert text("general.license") == DEFAULT_LICENSE
    assert text("tokenizer.ggml.pre") == pre_tokenizer({}, DEFAULT_MODEL)


def test_the_card_states_a_local_bases_license(tmp_path):
    from agentsft.export.card import base_license
    (tmp_path / "README.md").write_text("---\nlicense: mit\ntags: [x]\n---\n# A model\n")
    assert base_license(str(tmp_path)) == "mit"
    assert base_license(str(tmp_path / "nowhere")) is None


def test_the_gguf_names_how_the_tokenizer_splits_text(capsys):
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    from agentsft.export.gguf import LLAMA3_SPLIT, pre_tokenizer

    def split(regex):
        return {"pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": regex}}, {"type": "ByteLevel", "use_regex": False}]}}
    assert pre_tokenizer(split(PRETOKENIZE_REGEX), "Qwen/Qwen2.5-0.5B") == "qwen2"
    assert pre_tokenizer(split(LLAMA3_SPLIT), "meta-llama/Llama-3.2-1B") == "llama-bpe"
    digits = {"pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": True}, {"type": "ByteLevel"}]}}
    assert pre_tokenizer(digits, "HuggingFaceTB/SmolLM2-360M") == "smollm"
    assert capsys.readouterr().err == ""
    assert pre_tokenizer(split(r"\w+"), "someone/else") == "default"
    assert "may tokenize some text differently" in capsys.readouterr().err


def test_an_adapter_whose_base_is_gone_is_one_line(lora_run, tmp_path):
    import shutil
    moved = tmp_path / "run"
    shutil.copytree(lora_run / "final", moved / "final")
    info = json.loads((moved / "final" / "agentsft.json").read_text())
    info["base_model"] = str(tmp_path / "deleted-base")
    (moved / "final" / "agentsft.json").write_text(json.dumps(info))
    for form in ("hf", "gguf"):
        r = run_cli("export", str(moved), "-o", str(tmp_path / form), "--to", form)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert "deleted-base" in r.stderr and "Fix:" in r.stderr


def test_a_full_fine_tune_exports_to_gguf(tiny_model, data, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    from agentsft import config
    from agentsft.training import train
    run = tmp_path / "full"
    train(config.load(flags={"model.name": str(tiny_model), "data.train": [str(data)],
                             "data.val_fraction": 0, "data.template": "hermes",
                             "training.method": "full", "training.output": str(run),
                             "training.max_steps": 3, "training.batch_size": 2,
                             "training.learning_rate": 0.01}))
    r = run_cli("export", str(run), "-o", str(tmp_path / "out"), "--to", "gguf")
    assert r.returncode == 0, r.stderr
    tuned = AutoModelForCausalLM.from_pretrained(run / "final", dtype=torch.float32).eval()
    base = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    assert (logits(tuned) - logits(base)).abs().max() > 1e-3  # the step changed the model
    assert (logits(read_back(tmp_path / "out")) - logits(rounded(tuned, "f16"))).abs().max() < 1e-4
    assert "method: full" in (tmp_path / "out" / "README.md").read_text()


def test_a_bfloat16_export_computes_as_the_run_in_bfloat16(lora_run, tmp_path):
    """The same rounded weights, and the rotary frequencies left in float32 on both sides
    (casting the merged run with ``model.to`` rounded them: logits 0.98 apart on the demo)."""
    import torch

    from agentsft.inference.loading import load_generator
    out = tmp_path / "bf16"
    assert run_cli("export", str(lora_run), "-o", str(out)).returncode == 0
    run = load_generator(adapter=str(lora_run), device="cpu", dtype="bfloat16")
    export = load_generator(model=str(out), device="cpu", dtype="bfloat16")
    assert run.model.model.rotary_emb.inv_freq.dtype == torch.float32
    assert next(run.model.parameters()).dtype == torch.bfloat16
    with torch.no_grad():
        assert torch.equal(run.model(torch.tensor(IDS)).logits, export.model(torch.tensor(IDS)).logits)


def test_the_card_lists_a_weighted_mix(tmp_path):
    from agentsft.export.card import data_line
    (tmp_path / "a.jsonl").write_text('{"messages": []}\n{"messages": []}\n')
    assert data_line(str(tmp_path / "a.jsonl")) == f"- `{tmp_path / 'a.jsonl'}`: 2 records"
    assert data_line({"path": str(tmp_path / "a.jsonl"), "weight": 2, "split": "train"}) == \
        f"- `{tmp_path / 'a.jsonl'}` (weight 2, split train): 2 records"
