"""Config: typed groups, conversions, unknown keys with suggestions, the agent-framework layout."""

from __future__ import annotations

import json

import pytest
import yaml

from agentsft import config
from agentsft.config import ConfigError

# The shape the agent-framework example shipped, string booleans and dtype names included.
AGENT_FRAMEWORK = [{
    "config_name": "my_custom_model",
    "model_type": "huggingface",
    "pretrained_model_name_or_path": "google/gemma-7b",
    "max_length": 128,
    "device": "cuda",
    "data_path": "GAIR/lima",
    "fine_tune_config": {
        "continue_lora_finetuning": "False",
        "max_seq_length": 4096,
        "lora_config": {"r": 16, "lora_alpha": 32, "lora_dropout": 0.05, "bias": "none",
                        "task_type": "CAUSAL_LM"},
        "training_args": {"num_train_epochs": 5, "gradient_accumulation_steps": 1,
                          "learning_rate": "0.0001", "per_device_train_batch_size": 1,
                          "output_dir": "runs/gemma", "bf16": "True", "gradient_checkpointing": "True"},
        "bnb_config": {"load_in_4bit": "True", "bnb_4bit_use_double_quant": "True",
                       "bnb_4bit_quant_type": "nf4", "bnb_4bit_compute_dtype": "torch.bfloat16"},
    },
}]


def test_defaults_follow_the_qlora_recipe():
    cfg = config.load(flags={"training.method": "qlora"})
    q, lo = cfg.quantization, cfg.lora
    assert (q.bits, q.quant_type, q.double_quant, q.compute_dtype) == (4, "nf4", True, "bfloat16")
    # The recipe's rank, scale and targets; dropout 0 (not its 0.05): see LoraOptions.dropout.
    assert (lo.r, lo.alpha, lo.dropout, lo.target_modules) == (16, 32, 0.0, "all-linear")
    assert cfg.training.method == "qlora" and cfg.model.name == config.DEFAULT_MODEL


def test_agent_framework_config_with_string_booleans_loads(tmp_path):
    p = tmp_path / "model_configs.json"
    p.write_text(json.dumps(AGENT_FRAMEWORK))
    cfg = config.load(p)
    assert cfg.model.name == "google/gemma-7b" and cfg.model.device == "cuda"
    assert cfg.data.train == ["GAIR/lima"] and cfg.data.max_length == 4096
    assert cfg.eval.max_new_tokens == 128
    assert (cfg.lora.r, cfg.lora.alpha, cfg.lora.dropout) == (16, 32, 0.05)
    t = cfg.training
    assert (t.epochs, t.learning_rate, t.batch_size, t.output) == (5.0, 1e-4, 1, "runs/gemma")
    assert t.precision == "bf16" and t.gradient_checkpointing is True and t.method == "qlora"
    q = cfg.quantization
    assert (q.bits, q.double_quant, q.quant_type, q.compute_dtype) == (4, True, "nf4", "bfloat16")
    assert t.adapter is None


def test_agent_framework_continue_lora_uses_the_saved_adapter(tmp_path):
    entry = json.loads(json.dumps(AGENT_FRAMEWORK[0]))
    entry["local_model_path"] = "runs/earlier"
    entry["fine_tune_config"]["continue_lora_finetuning"] = "true"
    del entry["fine_tune_config"]["lora_config"]
    p = tmp_path / "c.json"
    p.write_text(json.dumps([entry, dict(entry, config_name="other")]))
    cfg = config.load(p, config_name="my_custom_model")
    assert cfg.training.adapter == "runs/earlier" and cfg.model.name == "google/gemma-7b"
    with pytest.raises(ConfigError, match="holds 2 model configs.*--config-name"):
        config.load(p)
    entry["fine_tune_config"]["lora_config"] = {"r": 8}
    p.write_text(json.dumps(entry))
    with pytest.raises(ConfigError, match="lora_config.*ignored when continuing"):
        config.load(p)


def test_unknown_keys_are_named_with_the_closest_valid_one(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("training:\n  learnig_rate: 0.001\n")
    with pytest.raises(ConfigError, match=r"c.yaml: config key 'training.learnig_rate' is unknown\. "
                                          r"Fix: did you mean 'training.learning_rate'\?"):
        config.load(p)
    with pytest.raises(ConfigError, match=r"'trainig' is unknown\. Fix: did you mean 'training'"):
        config.load(overrides=["trainig.epochs=2"])
    bad = json.loads(json.dumps(AGENT_FRAMEWORK))
    bad[0]["fine_tune_config"]["training_args"]["num_train_epoch"] = 1
    p = tmp_path / "af.json"
    p.write_text(json.dumps(bad))
    with pytest.raises(ConfigError, match="training_args.num_train_epoch' is unknown.*num_train_epochs"):
        config.load(p)


def test_hugging_face_names_are_aliases_or_name_the_right_key():
    """``--set training.save_steps=2`` answered "did you mean 'training.max_steps'?"."""
    cfg = config.load(overrides=[
        "training.save_steps=2", "training.logging_steps=3", "training.eval_steps=4",
        "training.num_train_epochs=1", "training.per_device_train_batch_size=2",
        "training.gradient_accumulation_steps=5", "training.save_total_limit=6",
        "training.warmup_ratio=0.1", "training.lr_scheduler_type=linear", "training.optim=sgd",
        "lora.lora_alpha=8", "lora.lora_dropout=0.1", "quantization.bnb_4bit_quant_type=fp4"])
    t = cfg.training
    assert (t.save_every, t.log_every, t.eval_every, t.epochs, t.batch_size) == (2, 3, 4, 1.0, 2)
    assert (t.gradient_accumulation, t.keep_last, t.warmup_ratio, t.scheduler, t.optimizer) == \
        (5, 6, 0.1, "linear", "sgd")
    assert (cfg.lora.alpha, cfg.lora.dropout, cfg.quantization.quant_type) == (8, 0.1, "fp4")
    with pytest.raises(ConfigError, match=r"'training.fp16': is Hugging Face's name for something "
                                          r"agentsft sets another way\. Fix: use training.precision=fp16"):
        config.load(overrides=["training.fp16=true"])
    with pytest.raises(ConfigError, match="Fix: use eval.batch_size"):
        config.load(overrides=["training.per_device_eval_batch_size=2"])
    with pytest.raises(ConfigError, match=r"'training.save_every': sets the same option as "
                                          r"training.save_steps\. Fix: give only one of them"):
        config.load(overrides=["training.save_steps=2", "training.save_every=3"])


def test_values_are_converted_or_rejected_with_the_key():
    cfg = config.load(overrides=["training.gradient_checkpointing=True", "model.dtype=torch.float16",
                                 "training.learning_rate=5e-5", "training.max_steps=10",
                                 "lora.target_modules=q_proj,v_proj", "data.train=a.jsonl"])
    t = cfg.training
    assert t.gradient_checkpointing is True and t.learning_rate == 5e-5 and t.max_steps == 10
    assert cfg.model.dtype == "float16" and cfg.lora.target_modules == ["q_proj", "v_proj"]
    assert cfg.data.train == ["a.jsonl"]
    with pytest.raises(ConfigError, match=r"'training.batch_size': 'four' is not a whole number"):
        config.load(overrides=["training.batch_size=four"])
    with pytest.raises(ConfigError, match=r"'training.gradient_checkpointing': 'maybe' is not auto, true or false"):
        config.load(overrides=["training.gradient_checkpointing=maybe"])
    assert config.load(overrides=["training.packing=off"]).training.packing is False
    assert config.load().training.packing == "auto"
    with pytest.raises(ConfigError, match=r"'training.packing': 'sometimes' is not auto, true or false"):
        config.load(overrides=["training.packing=sometimes"])
    with pytest.raises(ConfigError, match=r"'training.method': 'dora' is not one of lora, qlora, full"):
        config.load(overrides=["training.method=dora"])
    with pytest.raises(ConfigError, match=r"'lora.dropout': must be in \[0, 1\)"):
        config.load(overrides=["lora.dropout=1.5"])
    with pytest.raises(ConfigError, match="expected group.key=value"):
        config.load(overrides=["epochs=3"])


def test_saved_config_round_trips_and_redacts_tokens(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "my-private-token-value")
    token_shaped = "hf_" + "a1B2c3D4e5" * 3 + "f6G7"
    cfg = config.load(flags={"model.name": "org/model", "data.train": ["hf_datasets/x.jsonl"],
                             "training.output": f"runs/{token_shaped}",
                             "training.adapter": "runs/my-private-token-value"})
    config.save(cfg, tmp_path / "config.yaml")
    text = (tmp_path / "config.yaml").read_text()
    assert token_shaped not in text and "runs/hf_***" in text
    assert "my-private-token-value" not in text and "runs/***" in text
    again = config.load(tmp_path / "config.yaml")
    assert again.model.name == "org/model" and again.data.train == ["hf_datasets/x.jsonl"]
    assert yaml.safe_load(text)["training"]["learning_rate"] == 2e-4


def test_method_and_quantization_must_agree():
    with pytest.raises(ConfigError, match=r"lora loads the model unquantized, but quantization.bits "
                                          r"is 4.*quantization.bits=null"):
        config.load(overrides=["quantization.bits=4"])
    assert config.load(overrides=["training.method=qlora", "quantization.bits=8"]).quantization.bits == 8


def test_numbers_must_be_finite_and_in_range():
    for item, message in (("training.batch_size=inf", "is not a whole number"),
                          ("training.learning_rate=.nan", "is not a number"),
                          ("training.epochs=.inf", "is not a number"),
                          ("training.eval_every=-1", "cannot be negative"),
                          ("training.max_grad_norm=-1", "cannot be negative"),
                          ("lora.alpha=0", "must be positive"),
                          ("eval.batch_size=0", "must be at least 1")):
        with pytest.raises(ConfigError, match=message):
            config.load(overrides=[item])
    assert config.load(overrides=["data.train=torch.jsonl"]).data.train == ["torch.jsonl"]


def test_invalid_yaml_names_the_line(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("training:\n  epochs: 3\n bad: [\n")
    with pytest.raises(ConfigError, match=r"c.yaml:\d+: invalid YAML"):
        config.load(p)


def test_the_example_configs_load():
    from conftest import ROOT
    cfg = config.load(ROOT / "configs/persona.yaml")
    assert cfg.training.output == "runs/persona" and cfg.data.train == ["examples/persona.jsonl"]
    q = config.load(ROOT / "configs/model_configs.json", config_name="marlo_qlora")
    assert q.training.method == "qlora" and q.quantization.bits == 4 and q.training.precision == "bf16"
    assert q.model.name == config.DEFAULT_MODEL and q.eval.max_new_tokens == 128
    cpu = config.load(ROOT / "configs/model_configs.json", config_name="marlo_lora_cpu")
    assert cpu.training.method == "lora" and cpu.model.device == "cpu"


def test_off_stays_a_word_where_a_key_takes_words(tmp_path):
    """YAML 1.1 reads ``off`` as false; ``training.fast_path: off`` must mean off, in a file
    and in --set, while true/false keys still take yes/no/on/off."""
    path = tmp_path / "run.yaml"
    path.write_text("training:\n  fast_path: off\n  packing: off\n  gradient_checkpointing: yes\n")
    for cfg in (config.load(path), config.load(overrides=[
            "training.fast_path=off", "training.packing=off", "training.gradient_checkpointing=yes"])):
        t = cfg.training
        assert (t.fast_path, t.packing, t.gradient_checkpointing) == ("off", False, True)
