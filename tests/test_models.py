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


def test_hf_token_from_environment_or_dotenv(tmp_path, monkeypatch):
    for var in hub.TOKEN_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    assert hub.hf_token() is None
    (tmp_path / ".env").write_text("# secrets\nexport HUGGINGFACE_TOKEN='hf_from_dotenv'\n")
    assert hub.hf_token() == "hf_from_dotenv"
    monkeypatch.setenv("HF_TOKEN", "hf_from_env")
    assert hub.hf_token() == "hf_from_env"


def test_unknown_model_is_a_one_line_error(tmp_path):
    with pytest.raises(AgentsftError, match=r"cannot load a tokenizer for .*nothing.*Fix: "):
        hub.load_tokenizer(str(tmp_path / "nothing"))
