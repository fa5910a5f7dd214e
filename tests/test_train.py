"""Training on a tiny random model with the real tokenizer: real steps, real files."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import ROOT, run_cli
from safetensors.torch import load_file

from agentsft import config
from agentsft.errors import AgentsftError
from agentsft.training import AgentTrainer, TrainingStopped, train
from agentsft.training.data import split_validation

WORDS = ["falcon", "river", "copper", "maple", "orbit", "lantern", "quartz", "meadow"]


def chat(i: int, word: str) -> dict:
    return {"messages": [{"role": "user", "content": f"Codeword {i}?"},
                         {"role": "assistant", "content": f"The codeword is {word}."}]}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("data")
    files = {"train": d / "train.jsonl", "val": d / "val.jsonl"}
    files["train"].write_text("".join(json.dumps(chat(i, w)) + "\n" for i, w in enumerate(WORDS)))
    files["val"].write_text("".join(json.dumps(chat(i + 8, w)) + "\n" for i, w in enumerate(WORDS[:2])))
    return files


def settings(model: Path, data: dict, out: Path, **extra) -> config.Config:
    flags = {"model.name": str(model), "data.train": [str(data["train"])],
             "data.val": [str(data["val"])], "training.output": str(out),
             "training.batch_size": 8, "training.learning_rate": 3e-2, "training.warmup_ratio": 0,
             "training.log_every": 1, "training.eval_every": 10, "training.save_every": 10,
             "lora.dropout": 0.0}
    flags.update(extra)
    return config.load(flags=flags)


def metrics(run_root: Path) -> list[dict]:
    return [json.loads(line) for line in (run_root / "metrics.jsonl").read_text().splitlines()]


def logits(model, ids=None) -> torch.Tensor:
    ids = ids if ids is not None else torch.tensor([[1, 2, 3, 500, 600, 700, 2]])
    model.eval()
    with torch.no_grad():
        return model(input_ids=ids).logits


@pytest.fixture(scope="module")
def lora_run(tiny_model, data, tmp_path_factory):
    return train(settings(tiny_model, data, tmp_path_factory.mktemp("runs") / "lora",
                          **{"training.max_steps": 40}))


def test_lora_memorises_the_set(lora_run):
    losses = [r["loss"] for r in metrics(lora_run.run.root) if "loss" in r]
    assert len(losses) == 40
    assert losses[-1] < losses[0] / 3, (losses[0], losses[-1])  # measured: 11.6 -> 2.8
    vals = [r["val_ppl"] for r in metrics(lora_run.run.root) if "val_ppl" in r]
    assert len(vals) == 4 and all(v > 0 for v in vals)


def test_lora_changes_adapters_and_leaves_the_base_frozen(lora_run, tiny_model):
    base = load_file(tiny_model / "model.safetensors")
    seen_frozen = seen_lora = 0
    for name, p in lora_run.model.named_parameters():
        if "lora_" in name:
            assert p.requires_grad and p.dtype == torch.float32  # full-precision masters
            if "lora_B" in name:  # initialised to zero: any value is learned
                assert p.abs().sum() > 0, name
                seen_lora += 1
            continue
        assert not p.requires_grad, name
        key = name.removeprefix("base_model.model.").replace(".base_layer", "")
        # the frozen base may be held in bf16 (training in bf16): the same values, rounded
        assert torch.equal(p.detach().cpu(), base[key].to(p.dtype)), name
        seen_frozen += 1
    assert seen_lora == 14 and seen_frozen == len(base)  # 7 linear layers x 2 blocks


def test_saved_adapter_reloads_to_identical_logits(lora_run, tiny_model):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM
    base = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=lora_run.model.dtype)
    reloaded = PeftModel.from_pretrained(base, lora_run.run.final)
    assert torch.equal(logits(reloaded), logits(lora_run.model))
    plain = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=lora_run.model.dtype)
    assert not torch.allclose(logits(plain), logits(lora_run.model), atol=1e-3)


def test_run_directory_holds_everything(lora_run):
    run = lora_run.run.root
    assert (run / "config.yaml").is_file() and "learning_rate: 0.03" in (run / "config.yaml").read_text()
    rows = metrics(run)
    train_rows = [r for r in rows if "loss" in r]
    assert set(train_rows[0]) >= {"step", "loss", "lr", "tokens_per_s", "grad_norm"}
    assert [r["step"] for r in train_rows] == list(range(1, 41))
    assert [r["step"] for r in rows if "val_loss" in r] == [10, 20, 30, 40]
    assert (run / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    for folder in ("final", "best"):
        names = {p.name for p in (run / folder).iterdir()}
        assert {"adapter_model.safetensors", "adapter_config.json", "tokenizer.json",
                "agentsft.json"} <= names, folder
        info = json.loads((run / folder / "agentsft.json").read_text())
        assert info["template"] == "hermes" and info["method"] == "lora"
    best = json.loads((run / "best.json").read_text())
    kept = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert f"checkpoint-{best['step']}" in kept and len(kept) <= 3  # keep_last 2 + best
    assert "checkpoint-40" in kept and "checkpoint-30" in kept


def test_continuing_an_adapter_starts_where_it_stopped(lora_run, tiny_model, data, tmp_path):
    more = train(settings(tiny_model, data, tmp_path / "more",
                          **{"training.max_steps": 3, "training.adapter": str(lora_run.run.root),
                             "training.learning_rate": 1e-3}))
    first = metrics(lora_run.run.root)[0]["loss"]
    again = metrics(more.run.root)[0]["loss"]
    assert again < first / 3  # it starts from the trained adapter, not from scratch
    before = load_file(lora_run.run.final / "adapter_model.safetensors")
    after = load_file(more.run.final / "adapter_model.safetensors")
    assert before.keys() == after.keys()
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_full_fine_tune_updates_and_reloads(tiny_model, data, tmp_path):
    from transformers import AutoModelForCausalLM
    result = train(settings(tiny_model, data, tmp_path / "full",
                            **{"training.method": "full", "training.max_steps": 3,
                               "training.learning_rate": 1e-3}))
    final = result.run.final
    assert (final / "model.safetensors").is_file() and not (final / "adapter_config.json").exists()
    base = load_file(tiny_model / "model.safetensors")
    tuned = load_file(final / "model.safetensors")
    assert not torch.equal(base["model.layers.0.mlp.up_proj.weight"],
                           tuned["model.layers.0.mlp.up_proj.weight"])
    reloaded = AutoModelForCausalLM.from_pretrained(final)
    assert torch.equal(logits(reloaded), logits(result.model))


def test_validation_split_is_seeded_disjoint_and_never_the_training_set():
    tr, va = (a.tolist() for a in split_validation(50, 0.2, seed=7))
    assert len(va) == 10 and not set(tr) & set(va) and sorted(tr + va) == list(range(50))
    assert [a.tolist() for a in split_validation(50, 0.2, seed=7)] == [tr, va]
    assert split_validation(50, 0.2, seed=8)[1].tolist() != va
    assert [a.tolist() for a in split_validation(1, 0.5, seed=0)] == [[0], []]  # too few to spare


def test_nothing_to_train_is_refused_before_the_model_loads(tiny_model, tmp_path, monkeypatch):
    monkeypatch.setattr("agentsft.training.model.load_model", lambda *a, **k: pytest.fail("model loaded"))
    masked = tmp_path / "masked.jsonl"
    rec = chat(0, "x")
    rec["messages"][1]["train"] = False
    masked.write_text(json.dumps(rec) + "\n")
    cfg = settings(tiny_model, {"train": masked, "val": masked}, tmp_path / "r",
                   **{"data.skip_invalid": True})
    with pytest.raises(AgentsftError, match="nothing to train on"):
        train(cfg)


def test_max_length_above_the_context_is_refused(tiny_model, data, tmp_path, monkeypatch):
    monkeypatch.setattr("agentsft.training.model.load_model", lambda *a, **k: pytest.fail("model loaded"))
    with pytest.raises(AgentsftError, match=r"data.max_length=4096 is above the model's context "
                                            r"\(2048 tokens\)"):
        train(settings(tiny_model, data, tmp_path / "r", **{"data.max_length": 4096}))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU message")
def test_qlora_without_cuda_is_a_clear_error(tiny_model, data, tmp_path):
    with pytest.raises(AgentsftError, match=r"4-bit loading \(QLoRA\) needs a CUDA GPU.*--method lora"):
        train(settings(tiny_model, data, tmp_path / "q", **{"training.method": "qlora"}))


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tiny_model, data, tmp_path,
                                                                    monkeypatch):
    calls = {"n": 0}
    real = AgentTrainer.compute_loss

    def poisoned(self, *args, **kwargs):
        calls["n"] += 1
        loss = real(self, *args, **kwargs)
        return loss * float("nan") if calls["n"] > 5 else loss

    monkeypatch.setattr(AgentTrainer, "compute_loss", poisoned)
    cfg = settings(tiny_model, data, tmp_path / "nan",
                   **{"training.max_steps": 20, "training.save_every": 2, "training.eval_every": 0})
    with pytest.raises(TrainingStopped, match=r"loss became nan at step 6.*Last good checkpoint: "
                                              r".*checkpoint-4.*--resume"):
        train(cfg)
    kept = sorted(p.name for p in (tmp_path / "nan" / "checkpoints").iterdir())
    assert kept == ["checkpoint-2", "checkpoint-4"]
    weights = load_file(tmp_path / "nan" / "checkpoints" / "checkpoint-4" / "adapter_model.safetensors")
    assert all(torch.isfinite(w).all() for w in weights.values())


def test_loss_is_averaged_over_trained_tokens_of_the_whole_accumulated_batch(tiny_model, data,
                                                                            tmp_path):
    # Rows carry different numbers of trained tokens; a per-micro-batch mean would weight
    # them differently from one big batch. Averaged over the accumulated batch's tokens,
    # 2 x 4 accumulated equals 8 at once.
    common = {"training.max_steps": 4, "training.precision": "fp32", "training.eval_every": 0,
              "data.val": [], "data.val_fraction": 0}
    uneven = tmp_path / "uneven.jsonl"
    uneven.write_text("".join(json.dumps(chat(i, " ".join([w] * (1 + 6 * (i % 2))))) + "\n"
                              for i, w in enumerate(WORDS)))
    data = {"train": uneven, "val": uneven}
    one = train(settings(tiny_model, data, tmp_path / "b8", **common, **{"training.batch_size": 8}))
    acc = train(settings(tiny_model, data, tmp_path / "b4x2", **common,
                         **{"training.batch_size": 4, "training.gradient_accumulation": 2}))
    a = [r["loss"] for r in metrics(one.run.root)]
    b = [r["loss"] for r in metrics(acc.run.root)]
    torch.testing.assert_close(torch.tensor(b), torch.tensor(a), rtol=1e-4, atol=0)


def test_a_shared_system_prompt_is_computed_once_with_the_same_losses(tiny_model, data,
                                                                      tmp_path, monkeypatch,
                                                                      capsys):
    """Two system prompts, four chats each, batches of 4 grouped by prompt: each batch
    holds its prompt once. The loss curve (float32) and the token count equal those of
    the same batches with every prompt held once per example."""
    prompts = ["You are Quill, a terse librarian. Answer with the codeword only, no "
               "greeting, no explanation, nothing else.",
               "You are Brook, a cheerful guide. Say the codeword in one short sentence and "
               "stop there."]
    chats = tmp_path / "prompted.jsonl"
    chats.write_text("".join(json.dumps({"messages": [{"role": "system", "content": prompts[i % 2]},
                                                      *chat(i, w)["messages"]]}) + "\n"
                             for i, w in enumerate(WORDS)))
    common = {"training.max_steps": 4, "training.precision": "fp32", "training.eval_every": 0,
              "data.val": [], "data.val_fraction": 0, "training.batch_size": 4,
              "training.group_by_prefix": True}
    data = {"train": chats, "val": chats}
    shared = train(settings(tiny_model, data, tmp_path / "shared", **common))
    assert "hold them once" in capsys.readouterr().err
    from agentsft.data.collate import PackedCollator
    monkeypatch.setattr("agentsft.training.trainer.PackedCollator", lambda share: PackedCollator(False))
    held = train(settings(tiny_model, data, tmp_path / "each", **common))
    assert shared.tokens == held.tokens == held.computed_tokens
    assert shared.computed_tokens < 0.8 * shared.tokens  # each batch held one prompt once
    a = [r["loss"] for r in metrics(shared.run.root) if "loss" in r]
    b = [r["loss"] for r in metrics(held.run.root) if "loss" in r]
    assert len(a) == 4
    torch.testing.assert_close(torch.tensor(a), torch.tensor(b), rtol=1e-4, atol=0)


def test_neftune_noise_is_scaled_by_each_examples_own_length(tiny_model):
    """Packed rows of a 10-token and a 90-token example: each token's noise stays within
    alpha/sqrt(L*d) for its own example's L and fills that range; none in eval mode."""
    from transformers import AutoModelForCausalLM

    from agentsft.training.trainer import EmbeddingNoise, example_lengths
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    embed = model.get_input_embeddings()
    noise = EmbeddingNoise(model, alpha=5.0)
    ids = torch.randint(0, 1000, (1, 100))
    packed = {"input_ids": ids, "cu_seq_lens_q": torch.tensor([0, 10, 100], dtype=torch.int32)}
    noise.lengths = example_lengths(packed)
    assert noise.lengths.view(-1).tolist() == [10] * 10 + [90] * 90
    model.train()
    torch.manual_seed(0)
    delta = (embed(ids) - embed.weight[ids]).abs().detach()[0]
    d = delta.shape[-1]
    for rows, length in ((slice(0, 10), 10), (slice(10, 100), 90)):
        bound = 5.0 / (length * d) ** 0.5
        assert delta[rows].max() <= bound * (1 + 1e-5) and delta[rows].max() > 0.9 * bound
    model.eval()
    assert torch.equal(embed(ids), embed.weight[ids])
    padded = {"input_ids": torch.zeros(2, 6, dtype=torch.long),
              "attention_mask": torch.tensor([[1] * 6, [1, 1, 1, 0, 0, 0]])}
    assert example_lengths(padded).view(-1).tolist() == [6, 3]
    noise.handle.remove()


def test_neftune_trains_without_shared_prompts_and_leaves_the_model_clean(tiny_model, data,
                                                                         tmp_path, capsys):
    result = train(settings(tiny_model, data, tmp_path / "noisy",
                            **{"training.max_steps": 3, "training.neftune_alpha": 5.0,
                               "training.eval_every": 0}))
    assert "each example's prompt its own" in capsys.readouterr().err
    assert result.tokens == result.computed_tokens
    embed = result.model.get_input_embeddings()
    result.model.train()  # the hook is gone: no noise even in training mode
    ids = torch.tensor([[1, 2, 3, 500, 600]])
    assert torch.equal(embed(ids), embed.weight[ids])
    with pytest.raises(AgentsftError, match="training.neftune_alpha"):
        settings(tiny_model, data, tmp_path / "x", **{"training.neftune_alpha": -1})


def test_head_on_trained_positions_gives_the_standard_loss_and_gradients(tiny_model, tokenizer):
    from conftest import chat_conversation, tool_conversation
    from transformers import AutoModelForCausalLM, TrainingArguments

    from agentsft.data.collate import PadCollator
    from agentsft.data.templates import HermesTemplate
    from agentsft.data.tokenize import encode_conversations
    from agentsft.training import RunDir
    rows = encode_conversations([tool_conversation(), chat_conversation()], tokenizer,
                                HermesTemplate()).examples
    batch = PadCollator(tokenizer.pad_token_id)([{"input_ids": r.input_ids, "labels": r.labels}
                                                 for r in rows])
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    trainer = AgentTrainer(model=model, args=TrainingArguments(output_dir="/tmp/unused", use_cpu=True,
                                                              report_to="none"),
                           run=RunDir(Path("/tmp/unused")), keep_last=1, best_metric="ppl")
    ours = trainer.compute_loss(model, dict(batch))
    ours.backward()
    ours_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    standard = model(**batch).loss  # logits at every position, mean over trained tokens
    standard.backward()
    torch.testing.assert_close(ours, standard, rtol=1e-5, atol=1e-6)
    for a, b in zip(ours_grads, (p.grad for p in model.parameters())):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)


def test_gradient_checkpointing_gives_the_same_losses(tiny_model, data, tmp_path):
    common = {"training.max_steps": 3, "training.precision": "fp32", "training.eval_every": 0}
    plain = train(settings(tiny_model, data, tmp_path / "plain", **common))
    ckpt = train(settings(tiny_model, data, tmp_path / "ckpt", **common,
                          **{"training.gradient_checkpointing": True}))
    a = [r["loss"] for r in metrics(plain.run.root) if "loss" in r]
    b = [r["loss"] for r in metrics(ckpt.run.root) if "loss" in r]
    torch.testing.assert_close(torch.tensor(b), torch.tensor(a), rtol=1e-5, atol=0)


def test_bf16_fast_path_follows_the_fp32_loss_curve(tiny_model, data, tmp_path):
    """The CPU fast path (bf16 base, bf16 autocast, float32 adapter masters) against fp32 on
    a 12-step run: every step's loss within 6%, the last three within 3% on average."""
    common = {"training.max_steps": 12, "training.eval_every": 0, "training.batch_size": 4}
    fp32 = train(settings(tiny_model, data, tmp_path / "fp32", **common,
                          **{"training.precision": "fp32"}))
    bf16 = train(settings(tiny_model, data, tmp_path / "bf16", **common,
                          **{"training.precision": "bf16"}))
    assert bf16.model.dtype == torch.bfloat16 and fp32.model.dtype == torch.float32
    a = torch.tensor([r["loss"] for r in metrics(fp32.run.root) if "loss" in r])
    b = torch.tensor([r["loss"] for r in metrics(bf16.run.root) if "loss" in r])
    assert len(a) == 12 and a[-1] < a[0] / 2
    # measured: largest step difference 3.1%, last three steps 1.0% (learning rate 3e-2)
    torch.testing.assert_close(b, a, rtol=0.06, atol=0)
    assert abs(b[-3:].mean() - a[-3:].mean()) < 0.03 * a[-3:].mean()


def test_continuing_an_adapter_finds_its_base_model(lora_run, tiny_model):
    from agentsft.training.model import use_adapter_base
    cfg = config.load(flags={"training.adapter": str(lora_run.run.root)})
    assert cfg.model.name == config.DEFAULT_MODEL
    use_adapter_base(cfg)
    assert cfg.model.name == str(tiny_model)


def test_resume_forgets_what_came_after_the_checkpoint(tmp_path):
    from agentsft.training.rundir import RunDir, clean_for_resume
    run = RunDir(tmp_path)
    (tmp_path / "metrics.jsonl").write_text(
        '{"step": 5, "loss": 1.0}\n{"step": 6, "val_loss": 1.0}\n{"step": 7, "loss": 0.9}\n{"ste')
    (tmp_path / "best.json").write_text('{"step": 7, "metric": "ppl", "value": 2.0}')
    (tmp_path / ".final.abc123").mkdir()
    (tmp_path / ".loss.png.xyz").write_text("half")
    clean_for_resume(run, 6)
    assert [json.loads(x)["step"] for x in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [5, 6]
    assert not (tmp_path / "best.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.jsonl"]


# --- resume after SIGKILL -------------------------------------------------------------------


def train_args(model: Path, out: Path, steps: int) -> list[str]:
    # Long examples (tool conversations) so each step takes long enough to be interrupted.
    return ["train", "--model", str(model), "--data", str(ROOT / "examples/tools.jsonl"),
            "--output", str(out), "--max-steps", str(steps), "--set", "training.save_every=3",
            "--set", "training.log_every=1", "--set", "training.eval_every=0",
            "--set", "data.val_fraction=0", "--set", "lora.dropout=0", "--set", "training.batch_size=2"]


def test_resume_after_sigkill_finishes_like_an_uninterrupted_run(tiny_model, tmp_path):
    steps = 12
    reference = run_cli(*train_args(tiny_model, tmp_path / "ref", steps))
    assert reference.returncode == 0, reference.stderr

    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "agentsft", *train_args(tiny_model, out, steps)],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while not (out / "checkpoints" / "checkpoint-6").exists():
        assert proc.poll() is None and time.time() < deadline, "run ended before it could be killed"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    # What a kill during a checkpoint write leaves behind: a partial folder under the temporary name.
    partial = out / "checkpoints" / ".tmp-checkpoint-9" / "checkpoint-9"
    partial.mkdir(parents=True)
    (partial / "adapter_model.safetensors").write_bytes(b"\0" * 10)
    assert not (out / "final").exists()

    resumed = run_cli("train", "--resume", str(out))
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from" in resumed.stderr and "checkpoint-" in resumed.stderr
    assert "tokenized rows reused" in resumed.stderr  # not tokenized again
    assert not (out / "checkpoints" / ".tmp-checkpoint-9").exists()
    steps_logged = [r["step"] for r in metrics(out) if "loss" in r]
    assert steps_logged == list(range(1, steps + 1))  # every step once, none lost or repeated
    ref_rows, got_rows = metrics(tmp_path / "ref"), metrics(out)
    assert [round(r["loss"], 4) for r in got_rows] == [round(r["loss"], 4) for r in ref_rows]
    ref_w = load_file(tmp_path / "ref" / "final" / "adapter_model.safetensors")
    got_w = load_file(out / "final" / "adapter_model.safetensors")
    for k in ref_w:
        torch.testing.assert_close(got_w[k], ref_w[k], rtol=1e-4, atol=1e-6)


# --- CLI and data parallel ------------------------------------------------------------------


def test_cli_train_writes_the_run_and_refuses_to_overwrite_it(tiny_model, data, tmp_path):
    args = ["train", "--model", str(tiny_model), "--data", str(data["train"]),
            "--output", str(tmp_path / "cli"), "--max-steps", "2"]
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr
    assert "trained 2 steps" in r.stderr and (tmp_path / "cli" / "final" / "adapter_config.json").is_file()
    again = run_cli(*args)
    assert again.returncode == 2 and "already holds a run" in again.stderr and "--resume" in again.stderr
    bad = run_cli("train", "--model", str(tiny_model), "--data", str(data["train"]),
                  "--output", str(tmp_path / "x"), "--set", "training.learnig_rate=1")
    assert bad.returncode == 2 and "did you mean 'training.learning_rate'" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_a_failed_start_leaves_the_folder_free_and_method_flag_wins(tiny_model, data, tmp_path):
    out = str(tmp_path / "run")
    common = ["--model", str(tiny_model), "--data", str(data["train"]), "--output", out]
    if not torch.cuda.is_available():
        failed = run_cli("train", *common, "--method", "qlora")
        assert failed.returncode == 2 and "needs a CUDA GPU" in failed.stderr
    # The agent-framework QLoRA entry, run as plain LoRA on this machine, in the same folder.
    ok = run_cli("train", str(ROOT / "configs/model_configs.json"), "--config-name", "marlo_qlora",
                 "--method", "lora", *common, "--max-steps", "1", "--set", "model.device=auto")
    assert ok.returncode == 0, ok.stderr
    saved = config.load(Path(out) / "config.yaml")
    assert saved.training.method == "lora" and saved.quantization.bits is None


def test_two_processes_follow_the_same_loss_curve_as_one(tiny_model, data, tmp_path):
    """Data parallel launched as the README says, ``accelerate launch`` with
    configs/accelerate/ddp.yaml (two processes; gloo on CPU): same global batch, same losses."""
    # Validation every 2 steps and saves far apart: a new best forces a save between the
    # save steps, which every rank must enter together.
    base = ["--model", str(tiny_model), "--data", str(data["train"]), "--max-steps", "6",
            "--val", str(data["val"]), "--set", "training.log_every=1",
            "--set", "training.eval_every=2", "--set", "training.save_every=100",
            "--set", "lora.dropout=0",
            "--set", "training.precision=fp32", "--set", "training.learning_rate=1e-2"]
    one = run_cli("train", *base, "--output", str(tmp_path / "one"), "--set", "training.batch_size=4")
    assert one.returncode == 0, one.stderr
    two = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                          str(ROOT / "configs" / "accelerate" / "ddp.yaml"), "--num_processes", "2",
                          "-m", "agentsft", "train", *base,
                          "--output", str(tmp_path / "two"), "--set", "training.batch_size=2"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    a = [r["loss"] for r in metrics(tmp_path / "one") if "loss" in r]
    b = [r["loss"] for r in metrics(tmp_path / "two") if "loss" in r]
    assert len(a) == len(b) == 6
    va = [r["val_loss"] for r in metrics(tmp_path / "one") if "val_loss" in r]
    vb = [r["val_loss"] for r in metrics(tmp_path / "two") if "val_loss" in r]
    assert len(va) == len(vb) == 3
    torch.testing.assert_close(torch.tensor(vb), torch.tensor(va), rtol=2e-3, atol=0)
    assert (tmp_path / "two" / "best").is_dir()
    assert a[-1] < a[0]
    torch.testing.assert_close(torch.tensor(b), torch.tensor(a), rtol=2e-3, atol=0)
    shown = [float(x) for x in re.findall(r"loss=([0-9.]+)", two.stderr)]  # the progress bar
    assert shown and shown[-1] == pytest.approx(b[-1], abs=2e-3)  # not 2x: one loss, not a sum


@pytest.mark.gpu
def test_qlora_trains_on_cuda(tiny_model, data, tmp_path):
    result = train(settings(tiny_model, data, tmp_path / "qlora",
                            **{"training.method": "qlora", "training.max_steps": 5}))
    assert result.steps == 5 and (result.run.final / "adapter_model.safetensors").is_file()
    assert torch.cuda.max_memory_allocated() > 0


@pytest.mark.slow
def test_default_model_trains_on_the_persona_set(tmp_path):
    result = train(config.load(flags={
        "data.train": [str(ROOT / "examples/persona.jsonl")], "training.output": str(tmp_path / "p"),
        "training.max_steps": 2, "training.eval_every": 0, "data.val_fraction": 0}))
    assert result.steps == 2 and 0 < result.train_loss < 10
    assert (result.run.final / "adapter_model.safetensors").is_file()
