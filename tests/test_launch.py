"""Launching beyond one process: the accelerate configs that ship, and what a sharded run
(FSDP, DeepSpeed) refuses or changes before the model loads. Data parallel's equal losses
are tests/test_train.py::test_two_processes_follow_the_same_loss_curve_as_one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, run_cli

from agentsft import config
from agentsft.errors import AgentsftError
from agentsft.training.launch import check_launch, sharding

CONFIGS = ROOT / "configs" / "accelerate"


def test_each_config_is_one_accelerate_reads():
    from accelerate.commands.config.config_args import load_config_from_file
    loaded = {p.stem: load_config_from_file(str(p)) for p in sorted(CONFIGS.glob("*.yaml"))}
    assert sorted(loaded) == ["ddp", "fsdp2", "zero2", "zero3", "zero3_offload"]
    assert loaded["ddp"].distributed_type == "MULTI_GPU"
    fsdp = loaded["fsdp2"].fsdp_config
    assert loaded["fsdp2"].distributed_type == "FSDP" and fsdp["fsdp_version"] == 2
    assert fsdp["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    assert fsdp["fsdp_state_dict_type"] == "SHARDED_STATE_DICT"
    stages = {n: (c.deepspeed_config["zero_stage"], c.deepspeed_config["offload_param_device"])
              for n, c in loaded.items() if c.distributed_type == "DEEPSPEED"}
    assert stages == {"zero2": (2, "none"), "zero3": (3, "none"), "zero3_offload": (3, "cpu")}
    assert loaded["zero3"].deepspeed_config["zero3_save_16bit_model"] is True


def launched(monkeypatch, kind: str | None) -> None:
    """The environment ``accelerate launch`` gives its processes for ``kind``."""
    for name in ("ACCELERATE_USE_FSDP", "FSDP_VERSION", "ACCELERATE_USE_DEEPSPEED",
                 "ACCELERATE_DEEPSPEED_ZERO_STAGE"):
        monkeypatch.delenv(name, raising=False)
    if kind and kind.startswith("fsdp"):
        monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
        monkeypatch.setenv("FSDP_VERSION", kind[-1])
    elif kind:
        monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
        monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO_STAGE", kind[-1])


@pytest.mark.parametrize("kind, name", [(None, None), ("fsdp2", "FSDP2"), ("fsdp1", "FSDP1"),
                                        ("zero2", "DeepSpeed ZeRO-2"), ("zero3", "DeepSpeed ZeRO-3")])
def test_sharding_is_read_from_the_launch(monkeypatch, kind, name):
    launched(monkeypatch, kind)
    assert sharding() == name


def test_sharding_on_cpu_is_refused_with_the_data_parallel_config(monkeypatch):
    launched(monkeypatch, "fsdp2")
    with pytest.raises(AgentsftError, match="CUDA only.*configs/accelerate/ddp.yaml"):
        check_launch(config.load(), "cpu")


def test_sharding_turns_the_fast_paths_off_and_packs_qlora_for_sharding(monkeypatch, capsys):
    launched(monkeypatch, "fsdp2")
    cfg = config.load(flags={"training.method": "qlora"})
    check_launch(cfg, "cuda:0")
    assert cfg.training.fast_path == "off" and cfg.quantization.quant_storage == "bfloat16"
    err = capsys.readouterr().err
    assert "fast paths off under FSDP2" in err and "bnb_4bit_quant_storage" in err
    launched(monkeypatch, "zero2")  # ZeRO-2 keeps whole weights: 4-bit storage as it was
    cfg = config.load(flags={"training.method": "qlora"})
    if sys.modules.get("deepspeed") is None:
        monkeypatch.setattr("importlib.util.find_spec", lambda name: object())
    check_launch(cfg, "cuda:0")
    assert cfg.quantization.quant_storage is None and cfg.training.fast_path == "off"


@pytest.mark.parametrize("kind, flags, message", [
    ("zero3", {"training.method": "qlora", "quantization.quant_storage": "float16"},
     r"quant_storage=float16 under DeepSpeed ZeRO-3.*quantization.quant_storage=bfloat16"),
    ("fsdp2", {"training.method": "qlora", "quantization.bits": 8}, "8-bit weights cannot be sharded under FSDP2"),
    ("fsdp1", {}, "fsdp_version: 2"),
])
def test_what_sharding_cannot_take_is_refused(monkeypatch, kind, flags, message):
    launched(monkeypatch, kind)
    monkeypatch.setattr("importlib.util.find_spec", lambda name: object())  # deepspeed "installed"
    with pytest.raises(AgentsftError, match=message):
        check_launch(config.load(flags=flags), "cuda:0")


def test_deepspeed_missing_is_one_line(monkeypatch):
    launched(monkeypatch, "zero3")
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(AgentsftError, match="pip install deepspeed"):
        check_launch(config.load(), "cuda:0")


def launched_train(config_name: str, *args: str, processes: int = 1,
                   program: tuple[str, ...] = ("-m", "agentsft")) -> subprocess.CompletedProcess:
    """``accelerate launch --config_file configs/accelerate/NAME.yaml -m agentsft train ARGS``,
    one process unless told."""
    return subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                           str(CONFIGS / f"{config_name}.yaml"), "--num_processes", str(processes),
                           *program, "train", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)


def launch_train(config_name: str, tiny_model, out, *more: str) -> subprocess.CompletedProcess:
    return launched_train(config_name, "--model", str(tiny_model),
                          "--data", str(ROOT / "examples" / "persona.jsonl"), "--output", str(out),
                          "--set", "training.log_every=1", "--set", "lora.dropout=0",
                          "--set", "data.val_fraction=0", *more)


def test_the_fsdp2_config_on_cpu_stops_before_anything_loads(tiny_model, tmp_path):
    out = tmp_path / "run"
    r = launch_train("fsdp2", tiny_model, out, "--max-steps", "1")
    assert r.returncode != 0
    first = r.stderr.strip().splitlines()[0]
    assert first.startswith("agentsft: error: FSDP") and "(accelerate launch)" in first, r.stderr
    assert "ddp.yaml" in first
    assert not out.exists()


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["zero2", "zero3", "fsdp2"])
def test_a_sharded_lora_run_saves_a_whole_adapter_that_merges(name, tiny_model, tmp_path):
    """The adapter a sharded run saves is not ZeRO-3's empty shards: every tensor has its
    LoRA shape, the final one equals the last checkpoint's, and it merges into the base."""
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM
    if name.startswith("zero"):
        pytest.importorskip("deepspeed")
    out = tmp_path / name
    r = launch_train(name, tiny_model, out, "--max-steps", "4", "--set", "training.save_every=4")
    assert r.returncode == 0, r.stderr[-3000:]
    final = load_file(out / "final" / "adapter_model.safetensors")
    assert final and all(t.numel() > 0 for t in final.values())
    r_ = config.load().lora.r
    for key, t in final.items():  # A: (r, in), B: (out, r)
        assert t.ndim == 2 and t.shape[0 if "lora_A" in key else 1] == r_, (key, t.shape)
    saved = load_file(out / "checkpoints" / "checkpoint-4" / "adapter_model.safetensors")
    assert saved.keys() == final.keys()
    for key in final:
        torch.testing.assert_close(saved[key].float(), final[key].float(), rtol=0, atol=1e-2)
    base = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    model = PeftModel.from_pretrained(base, str(out / "final")).eval()
    ids = torch.tensor([[1, 2, 3, 4, 5, 6]])
    with torch.no_grad():
        want = model(ids).logits
        merged = model.merge_and_unload()(ids).logits
    torch.testing.assert_close(merged, want, rtol=1e-4, atol=1e-4)


# A run stopped at step 2 and resumed to 4 must follow one run of 4 steps: a constant
# learning rate, since a schedule over 2 steps ends at 0 and the resumed run restores it.
CONSTANT = ("--set", "training.scheduler=constant", "--set", "training.warmup_steps=0")


def losses(run: Path, key: str = "loss") -> list[float]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r[key] for r in rows if key in r]


@pytest.mark.gpu
def test_a_zero3_run_resumed_continues_its_loss_curve(tiny_model, tmp_path):
    pytest.importorskip("deepspeed")
    whole = launch_train("zero3", tiny_model, tmp_path / "whole", "--max-steps", "4", *CONSTANT)
    assert whole.returncode == 0, whole.stderr[-3000:]
    half = launch_train("zero3", tiny_model, tmp_path / "half", "--max-steps", "2",
                        "--set", "training.save_every=2", *CONSTANT)
    assert half.returncode == 0, half.stderr[-3000:]
    resumed = launched_train("zero3", "--resume", str(tmp_path / "half"),
                             "--set", "training.max_steps=4")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert losses(tmp_path / "half") == pytest.approx(losses(tmp_path / "whole"), rel=2e-3)


FSDP_ON_CPU = ("tests/fsdp_on_cpu.py",)
"""agentsft under accelerate's FSDP2 on CPU: accelerate's CUDA-only gate lifted, nothing else
(see the file)."""


@pytest.fixture(scope="module")
def fsdp_runs(tiny_model, tmp_path_factory):
    """One process with batch 4, and FSDP2 over two gloo processes with batch 2 each: 4 steps,
    validation and a checkpoint every 2."""
    pytest.importorskip("accelerate", minversion="1.6")  # FSDP2 in accelerate
    root = tmp_path_factory.mktemp("fsdp")
    common = ["--model", str(tiny_model), "--data", str(ROOT / "examples" / "persona.jsonl"),
              "--max-steps", "4", "--set", "training.log_every=1", "--set", "lora.dropout=0",
              "--set", "data.val_fraction=0.2", "--set", "training.eval_every=2",
              "--set", "training.save_every=2", "--set", "training.precision=fp32",
              "--set", "training.learning_rate=1e-2", "--set", "training.fast_path=off", *CONSTANT]
    one = run_cli("train", *common, "--output", str(root / "one"), "--set", "training.batch_size=4")
    assert one.returncode == 0, one.stderr[-3000:]
    two = launched_train("fsdp2", *common, "--output", str(root / "two"),
                         "--set", "training.batch_size=2", processes=2, program=FSDP_ON_CPU)
    assert two.returncode == 0, two.stderr[-3000:]
    return root, common


def test_fsdp2_on_two_cpu_processes_trains_and_saves_as_one_process(fsdp_runs, tiny_model):
    """The issue's CPU check of FSDP2 with LoRA: same losses as one process with the same
    global batch, and an adapter saved whole (not shards) that reloads to the same logits and
    merges; every sharded checkpoint carries the whole adapter too, so best/ loads."""
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM
    root, _ = fsdp_runs
    one, two = root / "one", root / "two"
    assert len(losses(two)) == 4
    assert losses(two) == pytest.approx(losses(one), rel=2e-3)
    assert losses(two, "val_loss") == pytest.approx(losses(one, "val_loss"), rel=2e-3)
    a, b = (load_file(run / "final" / "adapter_model.safetensors") for run in (one, two))
    assert a.keys() == b.keys() and all(t.numel() > 0 for t in b.values())
    for key in a:
        assert b[key].shape == a[key].shape
        torch.testing.assert_close(b[key], a[key], rtol=1e-3, atol=1e-5)
    for checkpoint in (two / "checkpoints").iterdir():  # sharded weights, and the whole adapter
        assert (checkpoint / "pytorch_model_fsdp_0").is_dir()
        assert (checkpoint / "adapter_model.safetensors").is_file()
    assert (two / "best" / "adapter_model.safetensors").is_file()
    ids = torch.tensor([[1, 2, 3, 4, 5, 6]])
    logits = []
    for run in (one, two):
        base = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
        model = PeftModel.from_pretrained(base, str(run / "final")).eval()
        with torch.no_grad():
            logits.append(model(ids).logits)
            merged = model.merge_and_unload()(ids).logits
        torch.testing.assert_close(merged, logits[-1], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(logits[1], logits[0], rtol=1e-3, atol=1e-4)


def test_fsdp2_on_cpu_resumed_from_its_sharded_checkpoint_continues(fsdp_runs, tmp_path):
    root, common = fsdp_runs
    half = tmp_path / "half"
    first = launched_train("fsdp2", *common, "--output", str(half), "--set", "training.batch_size=2",
                           "--set", "training.max_steps=2", processes=2, program=FSDP_ON_CPU)
    assert first.returncode == 0, first.stderr[-3000:]
    resumed = launched_train("fsdp2", "--resume", str(half), "--set", "training.max_steps=4",
                             processes=2, program=FSDP_ON_CPU)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stderr
    assert losses(half) == pytest.approx(losses(root / "two"), rel=1e-5)
