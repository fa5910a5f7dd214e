"""Export: the run's agent template as a Jinja chat template that renders exactly as
agentsft does, through transformers' own ``apply_chat_template``."""

from __future__ import annotations

import copy
import glob

import pytest

from agentsft.data.readers import read_conversations
from agentsft.data.templates import get_template
from agentsft.errors import AgentsftError
from agentsft.export.chat_template import chat_template
from conftest import FIXTURES, ROOT, TOOL_TEMPLATE, chat_conversation, tool_conversation
from test_calls import QWEN_STYLE

SOURCES = sorted(glob.glob(str(ROOT / "examples" / "*.jsonl"))) + sorted(
    str(p) for p in FIXTURES.iterdir() if p.suffix in (".json", ".jsonl"))


def conversations():
    convs = [tool_conversation(), chat_conversation()]
    for path in SOURCES:
        convs += read_conversations(path, skip_invalid=True).conversations
    return convs


def renders_alike(tok, template, convs) -> int:
    """How many renders were compared; fails at the first that differs."""
    exported = copy.deepcopy(tok)
    exported.chat_template = chat_template(template, tok)
    n = 0
    for conv in convs:
        d = conv.to_dict()
        for gen in (False, True):
            want = template.render(conv, add_generation_prompt=gen).text
            got = exported.apply_chat_template(d["messages"], tools=d.get("tools"), tokenize=False,
                                               add_generation_prompt=gen)
            assert got == want, (conv.source, gen)
            n += 1
    return n


@pytest.mark.parametrize("name", ["hermes", "msagent"])
def test_the_chat_template_renders_every_example_exactly(tokenizer, name):
    convs = conversations()
    assert len(convs) > 500 and any(c.tools for c in convs)
    assert any(c.extra for conv in convs for m in conv.messages for c in m.tool_calls)  # msagent's url
    assert renders_alike(tokenizer, get_template(name, tokenizer), convs) == 2 * len(convs)


@pytest.mark.parametrize("jinja", [TOOL_TEMPLATE, QWEN_STYLE], ids=["untagged", "qwen-style"])
def test_a_native_run_keeps_its_tokenizers_template(tokenizer, jinja):
    tok = copy.deepcopy(tokenizer)
    tok.chat_template = jinja
    assert chat_template(get_template("native", tok), tok) == jinja
    renders_alike(tok, get_template("native", tok), [tool_conversation(), chat_conversation()])


def test_arguments_keep_the_schema_order_in_nested_objects(tokenizer):
    conv = tool_conversation()  # search_flights: "filters" is not in the schema, "route" is
    calls = conv.messages[2].tool_calls
    calls[1].arguments = dict(reversed(list(calls[1].arguments.items())))
    renders_alike(tokenizer, get_template("hermes", tokenizer), [conv])


def test_a_template_without_a_chat_template_is_refused_with_the_fix(tokenizer):
    from agentsft.data.templates.hermes import HermesTemplate

    class Homemade(HermesTemplate):
        name = "homemade"
    with pytest.raises(AgentsftError, match="--template hermes"):
        chat_template(Homemade(), tokenizer)
