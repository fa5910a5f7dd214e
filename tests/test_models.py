"""The packaged default model's tokenizer: converted from GGUF once, atomically, then reused."""

from __future__ import annotations

import pytest

from agentsft import hub
from agentsft.files import write_folder_atomically
from agentsft.errors import AgentsftError


def test_default_tokenizer_converts_once_into_an_empty_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("AGENTSFT_CACHE", str(tmp_path))
    tok = hub.load_tokenizer()
    folder = tmp_path / hub.DEFAULT_MODEL / "tokenizer"
    assert (folder / "tokenizer.json").is_file()
    assert [p.name for p in tmp_path.joinpath(hub.DEFAULT_MODEL).iterdir()] == ["tokenizer"]  # not the model
    assert len(tok) == 49152 and tok.is_fast
    assert tok.eos_token == "<|im_end|>" and tok.convert_tokens_to_ids("<|im_end|>") == 2
    assert tok.pad_token is not None
    stamp = (folder / "tokenizer.json").stat().st_mtime_ns
    hub.load_tokenizer()  # second load reads the cache, does not convert again
    assert (folder / "tokenizer.json").stat().st_mtime_ns == stamp


def test_a_failed_conversion_leaves_nothing_that_looks_complete(tmp_path):
    target = tmp_path / "thing"

    def fill(tmp):
        (tmp / "half.json").write_text("{")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        write_folder_atomically(target, fill)
    assert not target.exists() and list(tmp_path.iterdir()) == []


def test_hf_token_from_environment_or_dotenv_or_hub_login(tmp_path, monkeypatch):
    from huggingface_hub import constants
    for var in hub.TOKEN_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "hub-token"))
    monkeypatch.chdir(tmp_path)
    assert hub.hf_token() is None
    (tmp_path / "hub-token").write_text("hf_from_hub_login\n")  # what `hf auth login` saves
    assert hub.hf_token() == "hf_from_hub_login"
    (tmp_path / ".env").write_text("# secrets\nexport HUGGINGFACE_TOKEN='hf_from_dotenv'\n")
    assert hub.hf_token() == "hf_from_dotenv"
    monkeypatch.setenv("HF_TOKEN", "hf_from_env")
    assert hub.hf_token() == "hf_from_env"


def test_unknown_model_is_a_one_line_error(tmp_path):
    with pytest.raises(AgentsftError, match=r"cannot load a tokenizer for .*nothing.*Fix: "):
        hub.load_tokenizer(str(tmp_path / "nothing"))


def test_a_run_is_served_on_the_base_it_recorded_unless_a_model_is_named(tmp_path):
    from agentsft.inference.loading import model_options
    info = {"base_model": "org/base", "revision": "v2", "trust_remote_code": False}
    recorded = model_options(None, None, info, None, False)
    assert (recorded.name, recorded.revision) == ("org/base", "v2")
    named = model_options("org/other", None, info, "cpu", False)
    assert (named.name, named.revision, named.device) == ("org/other", None, "cpu")
    full = model_options(None, tmp_path, info, None, False)  # a full fine-tune's own folder
    assert (full.name, full.revision) == (str(tmp_path), None)


def test_a_qlora_run_reloads_quantized_on_cuda_and_says_so_elsewhere(capsys):
    from agentsft.inference.loading import recorded_quantization
    info = {"quantization_bits": 4, "quantization": {
        "bits": 4, "quant_type": "fp4", "double_quant": False, "compute_dtype": "float16"}}
    q = recorded_quantization(info, "cuda:0")
    assert (q.bits, q.quant_type, q.double_quant, q.compute_dtype) == (4, "fp4", False, "float16")
    assert recorded_quantization({"quantization_bits": 4}, "cuda").quant_type == "nf4"  # older runs
    assert recorded_quantization(info, "cpu") is None
    assert "trained on a 4-bit base, which needs a CUDA GPU; loading the base unquantized on cpu" \
        in capsys.readouterr().err
    assert recorded_quantization({"quantization_bits": None}, "cpu") is None


def test_a_qlora_run_records_its_quantization():
    from agentsft.config import Config
    from agentsft.training.outputs import run_info
    cfg = Config()
    cfg.training.method = "qlora"
    info = run_info(cfg, "hermes")
    assert info["quantization_bits"] == 4 and info["quantization"]["quant_type"] == "nf4"
    cfg.training.method = "lora"
    assert run_info(cfg, "hermes")["quantization"] is None
