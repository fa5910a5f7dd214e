"""The architecture matrix: for each model family users bring (tests/zoo.py), agentsft's
training path, perplexity and generation compute what plain transformers computes, on our
fast paths where they fit and on transformers' own where they step aside (which, is
checked against PATHS, the README's table). Float32 throughout, so that "equal" means
equal up to the order of float sums."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import zoo
from conftest import ROOT

from agentsft.accel.training import fast_training
from agentsft.config import Config
from agentsft.data.tokenize import IGNORE_INDEX, encode

# architecture: (training attention, training batches, fused layers besides LoRA,
#                eval/chat attention, cache reuse); the README's table
BOTH, NORM, NONE = "RMSNorm, SwiGLU", "RMSNorm", "-"
PATHS = {
    "llama": ("agentsft", "packed, prompts shared", BOTH, "agentsft", True),
    "qwen2-sliding": ("sdpa", "packed", BOTH, "sdpa", False),
    "qwen3": ("agentsft", "packed, prompts shared", BOTH, "agentsft", True),
    "mistral-sliding": ("sdpa", "packed", BOTH, "sdpa", False),
    "gemma": ("agentsft", "packed, prompts shared", NONE, "agentsft", True),
    "gemma2": ("eager", "packed", NONE, "eager", False),
    "gemma3-text": ("sdpa", "packed", NONE, "sdpa", False),
    "granite": ("agentsft", "packed, prompts shared", BOTH, "agentsft", True),
    "phi3": ("agentsft", "packed, prompts shared", NORM, "agentsft", True),
    "smollm3": ("agentsft", "packed, prompts shared", BOTH, "agentsft", True),
    "gpt-oss": ("eager", "padded", NORM, "eager", False),
}
ARCHS = list(zoo.ARCHITECTURES)
LOSS_TOL = 1e-5
"""Relative, float32: packed rows and one-by-one runs differ only in the order of sums."""
GRAD_TOL = 2e-3
"""Per tensor, ||ours - eager|| / ||eager||. Granite's multipliers make attention nearly
one-hot, and its float32 gradients ill-conditioned: eager float32 itself lies 1e-3 from a
float64 run there (ours 7e-4); elsewhere both agree to about 1e-5."""


@pytest.fixture(scope="module")
def folders(tokenizer, tmp_path_factory) -> dict[str, Path]:
    return zoo.Folders(tmp_path_factory.mktemp("zoo"), tokenizer)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """Eight tool conversations of examples/tools.jsonl: several share a system prompt with
    its tool schemas, and all run past the sliding windows."""
    path = tmp_path_factory.mktemp("zoo-data") / "tools.jsonl"
    lines = (ROOT / "examples" / "tools.jsonl").read_text().splitlines()[:8]
    path.write_text("\n".join(lines) + "\n")
    return path


def config(folder: Path, data: Path, output: Path) -> Config:
    cfg = Config()
    cfg.model.name, cfg.model.dtype, cfg.model.device = str(folder), "float32", "cpu"
    cfg.training.precision, cfg.training.output = "fp32", str(output)
    cfg.data.train, cfg.data.val_fraction, cfg.lora.r = [str(data)], 0.0, 4
    return cfg


def summed_nll(model, examples: list[dict]) -> tuple[torch.Tensor, int]:
    """Cross-entropy summed over the trained tokens, each example run alone."""
    total, count = torch.zeros(()), 0
    for ex in examples:
        logits = model(input_ids=torch.tensor([ex["input_ids"]])).logits[0, :-1]
        labels = torch.tensor(ex["labels"][1:])
        total = total + F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX, reduction="sum")
        count += int((labels != IGNORE_INDEX).sum())
    return total, count


def loss_and_grads(model, examples: list[dict]) -> tuple[float, dict[str, torch.Tensor]]:
    model.zero_grad()
    total, count = summed_nll(model, examples)
    (total / count).backward()
    return (total / count).item(), {n: p.grad.clone() for n, p in model.named_parameters()
                                    if p.requires_grad}


def lora_models(cfg: Config, features: bool = True):
    """agentsft's LoRA model of the run (B random, so adapters count) and the same
    weights in plain transformers, eager, float32; ``features=False``: the reference with
    the architecture's features off."""
    from agentsft.training.model import build_model
    model = build_model(cfg)
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                torch.nn.init.normal_(p, std=0.5)
    reference = copy.deepcopy(model)
    reference.base_model.model.set_attn_implementation("eager")
    return model, reference


def reference_without_features(name: str, folder: Path, tokenizer, reference):
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM
    base = AutoModelForCausalLM.from_pretrained(
        folder, config=zoo.config_of(name, tokenizer, features=False), dtype=torch.float32,
        attn_implementation="eager")
    off = get_peft_model(base, copy.deepcopy(reference.peft_config["default"]))
    off.load_state_dict(reference.state_dict())
    return off


def run_inputs(cfg: Config):
    """What agentsft's train() prepares before the trainer: tokenizer, template, rows and
    the run directory."""
    from agentsft.training import rundir
    from agentsft.training.data import prepare_data, tokenizer_and_template
    tokenizer, template = tokenizer_and_template(cfg)
    rows = prepare_data(cfg, tokenizer, template)
    run, _ = rundir.open_run(cfg.training.output, False)
    return tokenizer, template, rows, run


def relative(got: torch.Tensor, want: torch.Tensor) -> float:
    return ((got - want).norm() / want.norm().clamp_min(1e-30)).item()


@pytest.mark.parametrize("name", ARCHS)
def test_training_path_equals_transformers(name, folders, data, tmp_path, tokenizer, capsys):
    """A packed batch through agentsft's training path as this device runs it by default
    (packing, shared prompts, prompt grouping, fused layers and LoRA), float32: the loss and
    every LoRA gradient of eager transformers run on the batch's examples one by one."""
    from agentsft.training.trainer import build_trainer
    cfg = config(folders[name], data, tmp_path / "run")
    tok, template, rows, run = run_inputs(cfg)
    model, reference = lora_models(cfg)
    trainer = build_trainer(cfg, run, model, tok, template, rows, "cpu")
    order = list(trainer._get_train_sampler(trainer.train_dataset))[:cfg.training.batch_size]
    examples = [trainer.train_dataset[i] for i in order]
    batch = trainer.data_collator(examples)
    with fast_training(model, None):
        loss = trainer.compute_loss(model, batch)
        loss.backward()
    said = "".join(capsys.readouterr())
    want, want_grads = loss_and_grads(reference, examples)
    assert loss.item() == pytest.approx(want, rel=LOSS_TOL)
    for key, grad in want_grads.items():
        assert relative(dict(model.named_parameters())[key].grad, grad) < GRAD_TOL, key
    assert_training_paths(name, model, batch, said)
    if name in zoo.FEATURED:  # the comparison notices the features: off, it fails
        off = reference_without_features(name, folders[name], tokenizer, reference)
        off_loss, off_grads = loss_and_grads(off, examples)
        assert (abs(off_loss - want) > 100 * LOSS_TOL * want
                or max(relative(g, want_grads[k]) for k, g in off_grads.items()) > 10 * GRAD_TOL)


def assert_training_paths(name: str, model, batch: dict, said: str) -> None:
    attention, batches, fused, _, _ = PATHS[name]
    implementation = model.config._attn_implementation
    assert implementation == ("agentsft_segments" if attention == "agentsft" else attention)
    assert ("position_ids" in batch and batch["input_ids"].shape[0] == 1) == batches.startswith("packed")
    assert ("segment_context" in batch) == batches.endswith("shared")
    if attention != "agentsft":  # the fallback is said, with its reason
        assert f"attention: transformers' {attention} (" in said
    layers = next(line for line in said.splitlines() if line.startswith("layers: fused"))
    assert "LoRA layers" in layers and "kept" not in layers
    assert ("RMSNorm" in layers, "MLP" in layers) == (fused != NONE, fused == BOTH), layers


@pytest.mark.parametrize("name", ARCHS)
def test_perplexity_and_generation_equal_transformers(name, folders, data):
    """Eval perplexity of the gold tokens equals eager transformers' one by one; batched,
    cached, prefix-shared greedy decoding gives ``generate``'s tokens, each prompt alone."""
    from transformers import AutoModelForCausalLM

    from agentsft.data.readers import read_conversations
    from agentsft.evaluation.evaluate import gold_perplexity
    from agentsft.evaluation.steps import stepwise_steps
    from agentsft.inference import Sampling, load_generator
    gen = load_generator(model=str(folders[name]), device="cpu", dtype="float32")
    *_, attention, reuse = PATHS[name]
    assert gen.model.config._attn_implementation == (
        "agentsft_segments" if attention == "agentsft" else attention)
    assert gen.caches_are_plain() == reuse
    convs = read_conversations([str(data)]).conversations
    plain = AutoModelForCausalLM.from_pretrained(folders[name], dtype=torch.float32).eval()
    assert gold_perplexity(gen, convs, 4)["perplexity"] == pytest.approx(
        reference_perplexity(gen, convs, folders[name]), rel=1e-5)
    prompts = [gen.template.prompt(s.history) for s in stepwise_steps(convs)[:8]]
    got = gen.complete_batch(prompts, Sampling(max_new_tokens=10), batch_size=4)
    for prompt, generation in zip(prompts, got):
        ids = gen.encode(prompt)
        with torch.no_grad():
            out = plain.generate(torch.tensor([ids]), max_new_tokens=10, do_sample=False,
                                 pad_token_id=gen.tokenizer.pad_token_id)
        assert generation == gen.cut(out[0, len(ids):].tolist())


def reference_perplexity(gen, convs, folder: Path) -> float:
    from transformers import AutoModelForCausalLM
    eager = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32,
                                                 attn_implementation="eager").eval()
    rows = []
    for conv in convs:
        ex = encode(gen.template.render(conv), gen.tokenizer)
        rows.append({"input_ids": ex.input_ids, "labels": ex.labels})
    with torch.no_grad():
        total, count = summed_nll(eager, rows)
    return math.exp(total.item() / count)


@pytest.mark.parametrize("name", ARCHS)
def test_cli_verbs_run(name, folders, data, tmp_path, capsys):
    """data preview, train, eval and chat --prompt on each architecture, in this process."""
    from agentsft.cli import main
    folder, run = str(folders[name]), str(tmp_path / "run")
    assert main(["data", "preview", str(data), "--model", folder, "-n", "1"]) == 0
    assert main(["train", "--model", folder, "--data", str(data), "--output", run,
                 "--max-steps", "2", "--set", "training.batch_size=2",
                 "--set", "lora.r=4"]) == 0
    assert main(["eval", "--adapter", run, "--data", str(data), "--limit", "2",
                 "--max-new-tokens", "6", "-o", str(tmp_path / "eval")]) == 0
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert report["overall"]["perplexity"] > 1
    assert main(["chat", "--adapter", run, "--prompt", "Hi", "--max-new-tokens", "4"]) == 0
    said = "".join(capsys.readouterr())
    if PATHS[name][0] != "agentsft":
        assert "attention: transformers'" in said


def test_fast_path_off_is_transformers_throughout(folders, data, tmp_path, capsys):
    """``training.fast_path: off`` (and ``fast_path="off"`` for chat and eval): SDPA, no
    fused layer, no shared prompt, no cache reuse; the same loss, said in one line each."""
    from agentsft.inference import load_generator
    from agentsft.training.trainer import build_trainer
    cfg = config(folders["llama"], data, tmp_path / "run")
    cfg.training.fast_path = "off"
    tok, template, rows, run = run_inputs(cfg)
    model, reference = lora_models(cfg)
    trainer = build_trainer(cfg, run, model, tok, template, rows, "cpu")
    examples = [trainer.train_dataset[i] for i in range(cfg.training.batch_size)]
    batch = trainer.data_collator(examples)
    with fast_training(model, None, trainer.fast):
        assert not any("forward" in m.__dict__ for m in model.modules())
        loss = trainer.compute_loss(model, batch)
    assert model.config._attn_implementation == "sdpa" and "segment_context" not in batch
    assert loss.item() == pytest.approx(loss_and_grads(reference, examples)[0], rel=LOSS_TOL)
    gen = load_generator(model=str(folders["llama"]), device="cpu", fast_path="off")
    assert gen.model.config._attn_implementation == "sdpa" and not gen.caches_are_plain()
    said = "".join(capsys.readouterr())
    assert "layers: transformers' and PEFT's own (training.fast_path=off)" in said
    assert said.count("attention: transformers' sdpa (fast_path is off)") == 2
