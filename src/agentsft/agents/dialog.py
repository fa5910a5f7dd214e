"""Agents you talk to: a dialog agent with memory, one that fine-tunes itself, a user.

    agent = DialogAgent("Marlo", "You are Marlo.", adapter="runs/persona")
    converse(UserAgent(), agent)          # type; `exit`, `quit` or end of input ends it
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentsft.config import DEFAULT_MODEL
from agentsft.data.schema import Conversation, Message, Tool, ToolCall
from agentsft.errors import AgentsftError
from agentsft.hub import model_config
from agentsft.inference import Generator, Sampling, load_generator


@dataclass
class Msg:
    """A message between agents."""

    role: str
    content: str = ""
    name: str | None = None
    tool_calls: list[ToolCall] | None = None


class DialogAgent:
    """A model that answers in turn and remembers the conversation.

    Memory is trimmed to fit the model's context: the oldest turns go first; the
    system prompt is always kept.
    """

    def __init__(self, name: str, sys_prompt: str | None = None, model: str = DEFAULT_MODEL,
                 adapter: str | Path | None = None, device: str | None = None,
                 max_new_tokens: int = 256, temperature: float = 0.0, top_p: float = 1.0,
                 generator: Generator | None = None, constrain: bool = True):
        self.name, self.sys_prompt = name, sys_prompt
        self.constrain = constrain
        """Tool calls constrained to the offered tools' schemas (ignored with ``generator``)."""
        self.model_name, self.adapter, self.device = model, adapter, device
        self.sampling = Sampling(max_new_tokens, temperature, top_p)
        self._generator = generator
        self.memory: list[Message] = []

    @property
    def generator(self) -> Generator:
        if self._generator is None:  # loaded on first use, so construction is cheap
            self._generator = load_generator(self.model_name, self.adapter, self.device,
                                             constrain=self.constrain)
        return self._generator

    @property
    def tools(self) -> list[Tool] | None:
        return None

    def reset(self) -> None:
        """Forget the conversation (the system prompt stays)."""
        self.memory.clear()

    def conversation(self) -> Conversation:
        """System prompt + memory, with the oldest turns dropped until the prompt and the
        reply fit the model's context."""
        system = [Message("system", self.sys_prompt)] if self.sys_prompt else []
        budget = self.generator.context - self.sampling.max_new_tokens
        while True:
            conv = Conversation(system + self.memory, tools=self.tools)
            if self.generator.prompt_tokens(conv) <= budget:
                return conv
            users = [i for i, m in enumerate(self.memory) if m.role == "user"]
            if len(users) < 2:
                raise AgentsftError(f"the latest message does not fit the model's context "
                                    f"({self.generator.context} tokens, {self.sampling.max_new_tokens} "
                                    f"kept for the reply). Fix: send a shorter message or lower "
                                    f"max_new_tokens")
            del self.memory[:users[1]]  # the oldest turn: its user message and all replies to it

    def __call__(self, msg: Msg | str | None = None,
                 on_text: Callable[[str], None] | None = None) -> Msg:
        if msg is not None:
            self.memory.append(Message("user", msg if isinstance(msg, str) else msg.content))
        gen = self.generator.reply(self.conversation(), self.sampling, on_text)
        reply = Message("assistant", gen.text.strip())
        self.memory.append(reply)
        return Msg("assistant", reply.content, name=self.name)


class FinetuneDialogAgent(DialogAgent):
    """A dialog agent that fine-tunes its own model (LoRA by default).

    ``fine_tune_config`` has the agent-framework shape: ``lora_config``,
    ``training_args``, ``bnb_config``, ``continue_lora_finetuning``,
    ``max_seq_length``. After fine-tuning the agent answers with the tuned model
    at once, with the template it was trained with.
    """

    def __init__(self, name: str, sys_prompt: str | None = None,
                 pretrained_model_name_or_path: str = DEFAULT_MODEL,
                 local_model_path: str | None = None, data_path: str | list[str] | None = None,
                 device: str | None = None, fine_tune_config: dict[str, Any] | None = None,
                 **generation: Any):
        super().__init__(name, sys_prompt, device=device, **generation)
        self.load_model(pretrained_model_name_or_path, local_model_path)
        self.last_run = None
        if data_path is not None:
            self.fine_tune(data_path, fine_tune_config)

    def load_model(self, pretrained_model_name_or_path: str, local_model_path: str | None = None) -> None:
        """Use a hub model, a local copy of it (a plain model folder: that is what answers
        and what fine-tuning trains), or a run / adapter saved by agentsft on top of the hub
        model. Checked now: a missing folder or a model that cannot be found is an error
        here, not at the first reply."""
        local = Path(local_model_path) if local_model_path else None
        if local is not None and not local.exists():
            raise AgentsftError(f"local_model_path {local} does not exist. Fix: give a model "
                                f"folder, a run directory, or leave it out to use "
                                f"{pretrained_model_name_or_path!r}")
        trained = local is not None and ((local / "final").is_dir()
                                         or (local / "adapter_config.json").is_file())
        self.base_model = str(local) if local is not None and not trained else pretrained_model_name_or_path
        self.model_name = self.base_model
        self.adapter = str(local) if trained else None
        if self.base_model != DEFAULT_MODEL:  # packaged: always there
            model_config(self.base_model)
        self._generator = None

    def fine_tune(self, data_path: str | list[str], fine_tune_config: dict[str, Any] | None = None):
        """Fine-tune on ``data_path``; returns the TrainResult. Reuses agentsft's training."""
        from agentsft import config
        # Imported here, not at the top: transformers' Trainer, accelerate and PEFT take
        # about a second to import, and chat (which builds agents) never trains.
        from agentsft.training import train
        ft = dict(fine_tune_config or {})
        continuing = config.convert(ft.get("continue_lora_finetuning", False), bool,
                                    "fine_tune_config.continue_lora_finetuning")
        if continuing and self.adapter is None:
            raise AgentsftError("continue_lora_finetuning needs an adapter to continue. Fix: fine-tune "
                                "once first, or load_model(..., local_model_path=RUN_DIR)")
        args = dict(ft.get("training_args") or {})
        args.setdefault("output_dir", f"runs/{self.name}-{time.strftime('%Y%m%d-%H%M%S')}")
        ft["training_args"] = args
        entry = {"model_type": "huggingface", "pretrained_model_name_or_path": self.base_model,
                 "local_model_path": str(self.adapter) if continuing else None,
                 "data_path": None, "fine_tune_config": ft}
        if self.device:
            entry["device"] = self.device
        raw = config.from_agent_framework(entry, None)
        raw.setdefault("data", {})["train"] = [data_path] if isinstance(data_path, str) else list(data_path)
        result = train(config.from_dict(raw))
        self.adapter, self.last_run = result.run.final, result
        self._generator = Generator(result.model, result.tokenizer, result.template,
                                    constrain=self.constrain)
        return result


class UserAgent:
    """A person at the keyboard. ``exit``, ``quit`` or end of input ends the conversation."""

    def __init__(self, name: str = "User", input_fn: Callable[[str], str] = input,
                 prompt: str = "User: "):
        self.name, self.input_fn, self.prompt = name, input_fn, prompt

    def __call__(self, msg: Msg | None = None) -> Msg | None:
        try:
            text = self.input_fn(self.prompt)
        except (EOFError, KeyboardInterrupt):
            return None
        if text.strip().lower() in ("exit", "quit"):
            return None
        return Msg("user", text, name=self.name)


def converse(user: UserAgent, agent: DialogAgent, max_turns: int | None = None,
             show: Callable[[Msg], None] | None = None) -> list[Msg]:
    """Alternate user and agent until the user leaves (or ``max_turns``); the transcript."""
    transcript: list[Msg] = []
    reply: Msg | None = None
    while max_turns is None or len(transcript) < 2 * max_turns:
        msg = user(reply)
        if msg is None:
            break
        reply = agent(msg)
        transcript += [msg, reply]
        if show is not None:
            show(reply)
    return transcript
