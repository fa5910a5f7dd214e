"""Shared fixtures: the real default tokenizer, a tool-rendering variant of it, and a CLI runner."""

from __future__ import annotations

import copy
import gc
import subprocess
import sys
from pathlib import Path

import pytest

from agentsft.data.schema import Conversation, Message, Tool, ToolCall
from agentsft.hub import load_tokenizer

FIXTURES = Path(__file__).parent / "fixtures"
ROOT = Path(__file__).parent.parent

# A chat template written for these tests that renders tools and calls in its own
# way (JSON objects with "parameters", no tags), so the native path is exercised
# on something other than ChatML-with-<tool_call>.
TOOL_TEMPLATE = (
    "{% if tools %}<|im_start|>system\nTools:{% for t in tools %} {{ t.function.name }}"
    "{% endfor %}<|im_end|>\n{% endif %}"
    "{% for m in messages %}"
    "{% if m.role == 'assistant' and m.tool_calls %}<|im_start|>assistant\n"
    "{% for c in m.tool_calls %}{{ {'name': c.function.name, 'parameters': c.function.arguments}"
    " | tojson }}\n{% endfor %}<|im_end|>\n"
    "{% else %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture(scope="session")
def tokenizer():
    """The default model's real tokenizer (converted once from the packaged GGUF)."""
    return load_tokenizer()


def make_tiny_model(folder: Path, tokenizer) -> Path:
    """A 2-layer, width-64 Llama with random weights, saved with the real tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=2048, tie_word_embeddings=True,
                      initializer_range=0.2,  # 0.02 caps logits near +-1.3 at width 64
                      bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                      pad_token_id=tokenizer.pad_token_id)
    LlamaForCausalLM(cfg).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model(tokenizer, tmp_path_factory) -> Path:
    """Folder of a tiny random model on the real tokenizer, built once per session."""
    return make_tiny_model(tmp_path_factory.mktemp("tiny-model"), tokenizer)


def lora_model(folder: Path):
    """The tiny model in bf16 with LoRA r4 on every linear layer; B and the norms' weights
    made random, so the adapters and the norms' scales change every result."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16)
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear",
                                            task_type="CAUSAL_LM"))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:  # PEFT starts B at zero: the adapters would add nothing
                torch.nn.init.normal_(p, std=0.5)
            elif "norm" in name:  # the norms start at one
                torch.nn.init.uniform_(p, 0.5, 1.5)
    return model


def loss_and_grads(model, ids, autocast: bool = True):
    """Loss of ``ids`` as their own labels and the gradients of the trained parameters."""
    import torch
    model.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


@pytest.fixture(scope="session")
def tool_tokenizer(tokenizer):
    """The same tokenizer with a chat template that renders tools."""
    tok = copy.deepcopy(tokenizer)
    tok.chat_template = TOOL_TEMPLATE
    return tok


WEATHER = Tool("get_weather", "Weather for a city.",
               {"type": "object", "properties": {"city": {"type": "string"}}})
SEARCH = Tool("search_flights", "Find flights.",
              {"type": "object", "properties": {"route": {"type": "object"}, "limit": {"type": "integer"}}})
PARALLEL_CALLS = [
    ToolCall("get_weather", {"city": "Paris"}, id="call_1"),
    ToolCall("search_flights", {"route": {"from": "CDG", "to": "FCO", "days": [1, 2]},
                                "limit": 3, "filters": {"nonstop": True, "max_price": None}},
             id="call_2"),
]


def tool_conversation() -> Conversation:
    """system, user, assistant with two parallel calls (nested arguments), two results, answer."""
    return Conversation([
        Message("system", "You are Marlo."),
        Message("user", "Weather in Paris, and flights to Rome?"),
        Message("assistant", "", tool_calls=copy.deepcopy(PARALLEL_CALLS)),
        Message("tool", '{"temperature": 14}', tool_call_id="call_1", name="get_weather"),
        Message("tool", '[{"flight": "AF1"}]', tool_call_id="call_2", name="search_flights"),
        Message("assistant", "Paris is 14°C; flight AF1 goes to Rome."),
    ], tools=[WEATHER, SEARCH], source="test:1")


def chat_conversation() -> Conversation:
    """Two user turns, two plain answers."""
    return Conversation([
        Message("system", "Be brief."),
        Message("user", "Hi"),
        Message("assistant", "Hello!"),
        Message("user", "Who are you?"),
        Message("assistant", "I am Marlo."),
    ], source="test:2")


@pytest.fixture(autouse=True)
def collection_restored():
    """CLI verbs run in this process freeze what they loaded (hub.collection_paused);
    each test starts with nothing frozen and collection on."""
    yield
    gc.unfreeze()
    gc.enable()


def run_cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """Run ``agentsft ARGS`` in a fresh process, as a user would."""
    return subprocess.run([sys.executable, "-m", "agentsft", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def pytest_collection_modifyitems(config, items):
    """``gpu`` tests need CUDA; without it they are skipped, saying why."""
    import torch
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (run through the device tool)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
