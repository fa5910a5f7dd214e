"""``agentsft export --to gguf`` and ``--to ollama``: llama.cpp's file format, written in
Python with the ``gguf`` package's writer (no llama.cpp checkout, no compiler).

The merged float32 model is written with llama.cpp's tensor names (the ``gguf`` package's
own name map) and, for Llama-layout models, the query and key rows in the interleaved
rotary order llama.cpp expects; its hyperparameters, the tokenizer (vocabulary, token
kinds, merges, special ids) and the run's chat template go in the metadata. Weights are
f16, bf16 or q8_0 (one-dimensional tensors stay float32, as llama.cpp keeps them).
``ollama`` adds a Modelfile whose TEMPLATE renders plain chat as the run's template does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from agentsft.config import DEFAULT_MODEL
from agentsft.data.schema import conversation_from_dict
from agentsft.errors import AgentsftError
from agentsft.export.card import base_license, model_card
from agentsft.export.hf import refuse_existing, stop_ids, trained
from agentsft.files import replace_folder
from agentsft.hub import say

DTYPES = ("f16", "bf16", "q8_0")
FILE = "model.gguf"
ARCHITECTURES = {"llama": "llama", "mistral": "llama", "qwen2": "qwen2", "qwen3": "qwen3"}
"""transformers model type -> llama.cpp architecture. Mistral without a sliding window is
Llama's computation; llama.cpp writes it as llama too."""
INTERLEAVED = {"llama"}
CONVERT = "Fix: export --to hf and convert that folder with llama.cpp's convert_hf_to_gguf.py"
"""llama.cpp architectures that rotate interleaved pairs: their q and k rows are reordered."""
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def export_gguf(run: str | Path, out: str | Path, dtype: str = "f16", force: bool = False,
                ollama: bool = False) -> Path:
    """Write the run's merged model as ``out``/model.gguf (and a Modelfile for ``ollama``),
    with a model card; returns ``out``."""
    form = "ollama" if ollama else "gguf"
    if dtype not in DTYPES:
        raise AgentsftError(f"--dtype {dtype} is not one of {', '.join(DTYPES)} for --to {form}")
    out = Path(out)
    refuse_existing(out, force)
    t = trained(run, "float32")
    arch = gguf_architecture(t.model.config)
    modelfile = ollama_modelfile(t.template) if ollama else None

    def fill(tmp: Path) -> None:
        write_gguf(t, arch, tmp / FILE, dtype)
        (tmp / "README.md").write_text(model_card(t, form, dtype))
        if modelfile is not None:
            (tmp / "Modelfile").write_text(modelfile)

    return replace_folder(out, fill)


def gguf_architecture(config: Any) -> str:
    """llama.cpp's name for this model's architecture, where this writer computes what the
    model computes; anything else is refused with what is supported."""
    kind = getattr(config, "model_type", None)
    supported = ", ".join(ARCHITECTURES)
    fix = f"--to gguf writes {supported} models. {CONVERT}"
    if kind not in ARCHITECTURES:
        raise AgentsftError(f"this run's model is {kind}. {fix}")
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    if rope.get("rope_type", rope.get("type", "default")) != "default":
        raise AgentsftError(f"this {kind} model scales its rotary positions "
                            f"({rope.get('rope_type') or rope.get('type')}), which this writer does "
                            f"not write yet. {fix}")
    window = getattr(config, "sliding_window", None) if getattr(config, "use_sliding_window", True) else None
    types = set(getattr(config, "layer_types", None) or ["full_attention"])
    if window or types != {"full_attention"}:
        raise AgentsftError(f"this {kind} model uses sliding-window attention, which this writer "
                            f"does not write. {fix}")
    if ARCHITECTURES[kind] == "llama" and (getattr(config, "attention_bias", False)
                                           or getattr(config, "mlp_bias", False)):
        raise AgentsftError(f"this {kind} model has attention or MLP biases, which this writer "
                            f"does not write. {fix}")
    return ARCHITECTURES[kind]


def write_gguf(t: Any, arch: str, path: Path, dtype: str) -> None:
    """The GGUF file of ``t`` (an ``export.hf.Trained``): metadata, then tensors."""
    import gguf
    config = t.model.config
    qtype, ftype = {"f16": (gguf.GGMLQuantizationType.F16, gguf.LlamaFileType.MOSTLY_F16),
                    "bf16": (gguf.GGMLQuantizationType.BF16, gguf.LlamaFileType.MOSTLY_BF16),
                    "q8_0": (gguf.GGMLQuantizationType.Q8_0, gguf.LlamaFileType.MOSTLY_Q8_0)}[dtype]
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_name(t.run_dir.resolve().name)
    writer.add_file_type(ftype)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    if license_ := base_license(t.base):
        writer.add_license(license_)
    add_hyperparameters(writer, config)
    add_tokenizer(writer, t, config.vocab_size)
    for name, data in gguf_tensors(t.model, arch):
        if data.ndim == 1 or qtype == gguf.GGMLQuantizationType.F16 or (
                qtype == gguf.GGMLQuantizationType.Q8_0 and data.shape[-1] % 32):
            # float32 norms and biases; f16 where q8_0's 32-wide blocks do not fit a row
            raw = data if data.ndim == 1 else data.astype(np.float16)
            writer.add_tensor(name, raw)
        else:
            writer.add_tensor(name, gguf.quants.quantize(data, qtype), raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def add_hyperparameters(writer: Any, config: Any) -> None:
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    rope = getattr(config, "rope_parameters", None) or {}
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(heads)
    writer.add_head_count_kv(getattr(config, "num_key_value_heads", None) or heads)
    writer.add_rope_freq_base(float(rope.get("rope_theta") or getattr(config, "rope_theta", 10000.0)))
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(config.vocab_size)
    writer.add_rope_dimension_count(head_dim)
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)


def gguf_tensors(model: Any, arch: str):
    """(llama.cpp name, float32 array) for each weight; a tied output head is left out, as
    llama.cpp reuses the embedding."""
    import gguf
    config = model.config
    names = gguf.get_tensor_name_map(getattr(gguf.MODEL_ARCH, arch.upper()), config.num_hidden_layers)
    tied = getattr(config.get_text_config(), "tie_word_embeddings", False)
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    for name, weight in model.state_dict().items():
        if tied and name == "lm_head.weight":
            continue
        new = names.get_name(name, try_suffixes=(".weight", ".bias"))
        if new is None:
            raise AgentsftError(f"the weight {name} has no place in llama.cpp's {arch} layout. {CONVERT}")
        data = weight.detach().float().cpu().numpy()
        if arch in INTERLEAVED and name.endswith("q_proj.weight"):
            data = interleaved(data, heads)
        elif arch in INTERLEAVED and name.endswith("k_proj.weight"):
            data = interleaved(data, kv_heads)
        yield new, data


def interleaved(w: np.ndarray, heads: int) -> np.ndarray:
    """Rows of each head reordered from transformers' halves (all first coordinates of the
    rotary pairs, then all second ones) to llama.cpp's adjacent pairs."""
    half = w.shape[0] // heads // 2
    return w.reshape(heads, 2, half, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


# ---------------------------------------------------------------------------
# The tokenizer.


def add_tokenizer(writer: Any, t: Any, vocab_size: int) -> None:
    tok = t.tokenizer
    spec = json.loads(tok.backend_tokenizer.to_str()) if getattr(tok, "backend_tokenizer", None) else {}
    model = spec.get("model") or {}
    if model.get("type") != "BPE" or model.get("byte_fallback") or (spec.get("decoder") or {}).get("type") != "ByteLevel":
        raise AgentsftError("--to gguf writes byte-level BPE tokenizers (GPT-2 style: SmolLM, Llama 3, "
                            f"Qwen); this run's tokenizer is another kind. {CONVERT}")
    tokens, kinds = vocabulary(tok, vocab_size)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre_tokenizer(spec, t.base))
    writer.add_token_list(tokens)
    writer.add_token_types(kinds)
    writer.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in model.get("merges") or []])
    for kind in ("bos", "eos", "unk", "pad"):
        if (tid := getattr(tok, f"{kind}_token_id", None)) is not None:
            getattr(writer, f"add_{kind}_token_id")(tid)
    probe = tok("a")["input_ids"]
    writer.add_add_bos_token(bool(probe) and probe[0] == tok.bos_token_id)
    writer.add_add_eos_token(bool(probe) and probe[-1] == tok.eos_token_id and len(probe) > 1)
    ends = [i for i in stop_ids(t.template, tok) if i != tok.eos_token_id]
    if ends:
        writer.add_eot_token_id(ends[0])
    writer.add_chat_template(tok.chat_template)


def vocabulary(tok: Any, size: int) -> tuple[list[str], list[int]]:
    """Token strings by id, padded to the model's embedding rows, and their llama.cpp kinds:
    special added tokens are control, other added tokens user-defined."""
    from gguf import TokenType
    if len(tok) > size:
        raise AgentsftError(f"the tokenizer has {len(tok)} tokens but the model only {size} embedding "
                            f"rows. Fix: export a run whose tokenizer matches its model")
    tokens: list[str | None] = [None] * size
    for text, i in tok.get_vocab().items():
        tokens[i] = text
    added = tok.added_tokens_decoder
    kinds = [TokenType.UNUSED if text is None else
             (TokenType.CONTROL if added[i].special else TokenType.USER_DEFINED) if i in added else
             TokenType.NORMAL for i, text in enumerate(tokens)]
    return [f"[PAD{i}]" if text is None else text for i, text in enumerate(tokens)], [int(k) for k in kinds]


def pre_tokenizer(spec: dict[str, Any], base: str) -> str:
    """llama.cpp's name for how this tokenizer splits text before merging (``default`` and
    one line where none is known: llama.cpp then splits with its own default rule)."""
    if base == DEFAULT_MODEL:
        return "smollm"  # what the packaged SmolLM2 GGUF states
    pre = spec.get("pre_tokenizer") or {}
    parts = pre.get("pretokenizers") if pre.get("type") == "Sequence" else [pre]
    kinds = [p.get("type") for p in parts]
    if kinds == ["Digits", "ByteLevel"] and parts[0].get("individual_digits"):
        return "smollm"
    if kinds == ["ByteLevel"] and parts[0].get("use_regex", True):
        return "gpt-2"
    if kinds[:1] == ["Split"]:
        regex = (parts[0].get("pattern") or {}).get("Regex")
        from transformers.models.qwen2.tokenization_qwen2 import (
            PRETOKENIZE_REGEX as QWEN2_SPLIT,
        )
        known = {LLAMA3_SPLIT: "llama-bpe", QWEN2_SPLIT: "qwen2"}
        if regex in known:
            return known[regex]
    say("note: llama.cpp has no name this writer knows for how this tokenizer splits text; "
        "the GGUF says 'default', and llama.cpp may tokenize some text differently")
    return "default"


# ---------------------------------------------------------------------------
# Ollama.

PROBE = "\x00{}\x00"
"""A sentinel content, to find where the template puts a message's text."""
PLAIN = (["system", "user", "assistant", "user"], ["user", "assistant", "user"], ["user"],
         ["system", "user"], ["user", "assistant", "user", "assistant", "user"])
"""Conversations on which the Modelfile's pieces must compose to the template's render."""


def ollama_modelfile(template: Any) -> str:
    """A Modelfile: the GGUF, a TEMPLATE in Ollama's Go template language rendering plain
    chat exactly as the run's template does, and the template's stop strings."""
    wrappers, generation = role_wrappers(template)
    for roles in PLAIN:
        msgs = [(r, f"{r} {i}") for i, r in enumerate(roles)]
        want = plain_render(template, msgs, True)
        got = "".join(wrappers[r][0] + c + wrappers[r][1] for r, c in msgs) + generation
        if got != want:
            raise AgentsftError(f"the {template.name} template does not write each message on its own "
                                f"(a {'/'.join(roles)} conversation renders differently), so an Ollama "
                                f"TEMPLATE cannot reproduce it. Fix: --to gguf, and run it with "
                                f"llama.cpp's --jinja, which uses the chat template in the file")
    branches = "".join(f'{{{{ {"if" if i == 0 else "else if"} eq .Role "{role}" }}}}'
                       f"{go_text(pre)}{{{{ .Content }}}}{go_text(post)}"
                       for i, (role, (pre, post)) in enumerate(wrappers.items()))
    body = f"{{{{ range .Messages }}}}{branches}{{{{ end }}}}{{{{ end }}}}{go_text(generation)}"
    if '"""' in body:
        raise AgentsftError(f'the {template.name} template writes """, which a Modelfile cannot quote. '
                            f"Fix: --to gguf, and run it with llama.cpp's --jinja")
    stops = "".join(f"PARAMETER stop {json.dumps(s)}\n" for s in template.stop)
    return (f"# Written by agentsft: plain chat in the {template.name} template the model was "
            f"trained on.\n# Tool lists and calls are not in this TEMPLATE; llama.cpp with --jinja "
            f"uses the file's chat template, which has them.\nFROM ./{FILE}\n"
            f'TEMPLATE """{body}"""\n{stops}')


def go_text(text: str) -> str:
    """Literal text for a Go template (``{{`` would open an action)."""
    return text.replace("{{", '{{ "{{" }}')


def plain_render(template: Any, msgs: list[tuple[str, str]], gen: bool = False) -> str:
    conv = conversation_from_dict({"messages": [{"role": r, "content": c} for r, c in msgs]})
    return template.render(conv, add_generation_prompt=gen).text


def role_wrappers(template: Any) -> tuple[dict[str, tuple[str, str]], str]:
    """What the template writes before and after a system, user and assistant message's
    text, and the generation prompt, read off its own renders of sentinel messages."""
    def around(text: str, content: str) -> tuple[str, str]:
        head, _, tail = text.partition(content)
        return head, tail

    s, u, a = (PROBE.format(r) for r in "sua")
    alone = plain_render(template, [("user", u)])
    with_system = plain_render(template, [("system", s), ("user", u)])
    return ({"system": around(with_system[:len(with_system) - len(alone)], s),
             "user": around(alone, u),
             "assistant": around(plain_render(template, [("user", u), ("assistant", a)])[len(alone):], a)},
            plain_render(template, [("user", u)], True)[len(alone):])
