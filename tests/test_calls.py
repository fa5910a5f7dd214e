"""Schema-constrained tool calls: the layout read from each template, calls that always
parse and validate, and a constraint that changes nothing a valid call would have said."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from agentsft.data.arguments import fits_schema
from agentsft.data.schema import Conversation, Message, Tool, ToolCall
from agentsft.data.templates import CallParseError, get_template
from agentsft.data.tokenize import encode
from agentsft.inference import Generator, Sampling
from agentsft.inference.calls import CallLayout, call_layout

QWEN_STYLE = (  # a native template in the hermes style (Qwen 2.5 writes calls this way)
    "{% if tools %}<|im_start|>system\n{% for t in tools %}{{ t.function.name }} {% endfor %}"
    "<|im_end|>\n{% endif %}{% for m in messages %}<|im_start|>{{ m.role }}\n"
    "{% if m.tool_calls %}{% for c in m.tool_calls %}<tool_call>\n"
    '{{ {"name": c.function.name, "arguments": c.function.arguments} | tojson }}\n'
    "</tool_call>{% endfor %}{% else %}{{ m.content }}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")

WEATHER = Tool("get_weather", "Weather for a city.", {
    "type": "object", "properties": {"city": {"type": "string"}, "unit": {"enum": ["C", "F"]}},
    "required": ["city"]})
ADD = Tool("add", "The sum of two integers.", {
    "type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
    "required": ["a", "b"]})
TOOLS = [WEATHER, ADD]


def test_each_template_says_how_it_writes_a_call(tokenizer):
    assert call_layout(get_template("hermes", tokenizer)) == CallLayout(
        "<tool_call>", "\n", "\n</tool_call>", "name", "arguments", ", ", ": ")
    assert call_layout(get_template("msagent", tokenizer)) == CallLayout(
        "<|startofthink|>", "```JSON\n", "\n```<|endofthink|>", "api_name", "parameters", ", ", ": ")
    native = get_template("native", with_template(tokenizer, QWEN_STYLE))
    assert call_layout(native) == CallLayout(
        "<tool_call>", "\n", "\n</tool_call>", "name", "arguments", ", ", ": ")


def test_a_template_without_call_tags_is_decoded_freely(tokenizer, capsys):
    from tests.conftest import TOOL_TEMPLATE
    native = get_template("native", with_template(tokenizer, TOOL_TEMPLATE))
    reason = call_layout(native)
    assert isinstance(reason, str) and "without an opening and a closing tag" in reason


def with_template(tokenizer, template: str):
    import copy
    tok = copy.deepcopy(tokenizer)
    tok.chat_template = template
    return tok


# --- the property: constrained calls always parse and validate ----------------------------

NAMES = st.text("abcdefgh_", min_size=1, max_size=6)
LEAVES = st.one_of(
    st.sampled_from([{"type": "string"}, {"type": "integer"}, {"type": "number"},
                     {"type": "boolean"}, {"type": ["string", "null"]}]),
    st.lists(st.text("xyz ", min_size=1, max_size=5), min_size=1, max_size=4, unique=True)
    .map(lambda values: {"enum": values}),
    st.lists(st.integers(-5, 500), min_size=1, max_size=3, unique=True)
    .map(lambda values: {"type": "integer", "enum": values}),
)


def objects(children):
    """Objects with some properties required. Nested ones are closed: an open object takes
    any key, and a random model then writes keys without end."""
    return st.dictionaries(NAMES, children, min_size=1, max_size=3).flatmap(
        lambda props: st.tuples(st.just(props), st.lists(st.sampled_from(sorted(props)), unique=True))
    ).map(lambda t: {"type": "object", "properties": t[0], "required": t[1],
                     "additionalProperties": False})


SCHEMAS = st.recursive(LEAVES, lambda children: st.one_of(
    st.builds(lambda items, n: {"type": "array", "items": items, **({"maxItems": n} if n else {})},
              children, st.integers(0, 3)),
    objects(children)), max_leaves=6)
TOOL_SETS = st.lists(st.tuples(NAMES, objects(SCHEMAS)), min_size=1, max_size=3,
                     unique_by=lambda t: t[0]).map(
    lambda tools: [Tool(f"tool_{name}", "", schema) for name, schema in tools])


@pytest.fixture(scope="module")
def random_generator(tiny_model, tokenizer) -> Generator:
    """The tiny random model, made to like tokens that close a string, an array or an
    object (their output rows scaled up), so that its calls end within the token budget."""
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).eval()
    with torch.no_grad():
        rows = [i for t, i in tokenizer.get_vocab().items()
                if any(c in tokenizer.convert_tokens_to_string([t]) for c in '"]}')]
        model.get_output_embeddings().weight[rows] *= 3
    return Generator(model, tokenizer, get_template("hermes", tokenizer))


@settings(max_examples=30, deadline=None, derandomize=True, phases=[Phase.generate],
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(tools=TOOL_SETS, pick=st.integers(0, 2), sample=st.booleans())
def test_constrained_calls_always_parse_and_validate(random_generator, tools, pick, sample):
    gen = random_generator
    choice = tools[pick % len(tools)].name if pick else "required"
    conv = Conversation([Message("user", "go")], tools=tools)
    torch.manual_seed(pick)
    out = gen.reply(conv, Sampling(160, temperature=1.0 if sample else 0.0), tool_choice=choice)
    assert out.text.startswith("<tool_call>\n")
    assert "\n</tool_call>" in out.text, f"call not closed in 160 tokens: {out.text!r}"
    [call] = gen.template.parse_calls(out.text.split("</tool_call>")[0] + "</tool_call>")
    assert choice in ("required", call.name)
    assert fits_schema(call.name, call.arguments, tools), (call, [t.parameters for t in tools])


@pytest.mark.parametrize("name", ["msagent", "native"])
def test_calls_in_each_templates_own_layout_parse_and_validate(random_generator, tokenizer, name):
    tok = with_template(tokenizer, QWEN_STYLE) if name == "native" else tokenizer
    gen = Generator(random_generator.model, tok, get_template(name, tok))
    small = {"type": "integer", "minimum": -99, "maximum": 999}  # a random model's digits end
    tools = [WEATHER, Tool("add", "", {**ADD.parameters, "properties": {"a": small, "b": small}})]
    for choice in ("required", "add"):
        out = gen.reply(Conversation([Message("user", "go")], tools=tools), Sampling(160),
                        tool_choice=choice)
        assert out.text.startswith(gen.call_layout.marker)
        [call] = gen.template.parse_calls(out.text)
        assert choice in ("required", call.name) and fits_schema(call.name, call.arguments, tools)


def test_a_schema_the_engine_cannot_compile_keeps_the_name_and_says_so(random_generator, capsys):
    odd = Tool("odd", "", {"type": "object", "properties": {"when": {"type": "string",
                                                                        "format": "no-such-format"}}})
    rules = random_generator.call_rules([odd, ADD], "odd")
    assert any("'odd'" in line and "any JSON object" in line for line in rules.notes)
    out = random_generator.reply(Conversation([Message("user", "go")], tools=[odd, ADD]),
                                 Sampling(160), tool_choice="odd")
    [call] = random_generator.template.parse_calls(out.text)
    assert call.name == "odd" and isinstance(call.arguments, dict)
    assert "'odd'" in capsys.readouterr().err


def test_compiled_constraints_are_kept_for_the_latest_tool_sets_only(random_generator):
    from agentsft.inference.engine import RULES_KEPT
    sets = [[Tool(f"tool_{i}", "", {"type": "object", "properties": {"x": {"type": "integer"}}})]
            for i in range(RULES_KEPT + 6)]
    first = random_generator.call_rules(sets[0])
    for tools in sets[1:]:
        random_generator.call_rules(tools)
    assert len(random_generator._rules) == RULES_KEPT  # a server meets endless tool sets
    last = random_generator.call_rules(sets[-1])
    assert random_generator.call_rules(sets[-1]) is last  # reused while recent
    assert random_generator.call_rules(sets[0]) is not first  # compiled again


def test_a_tool_choice_that_is_not_offered_is_an_error(random_generator):
    from agentsft.errors import AgentsftError
    with pytest.raises(AgentsftError, match="not an offered tool"):
        random_generator.call_rules(TOOLS, "get_time")


# --- a constraint that changes nothing a valid call would say -------------------------------

def conv_with(question: str, call: ToolCall | None = None, answer: str = "") -> Conversation:
    reply = Message("assistant", answer, tool_calls=[call] if call else [])
    return Conversation([Message("user", question), reply], tools=TOOLS)


TRAINED = [conv_with(f"Weather in {c}?", ToolCall("get_weather", {"city": c, "unit": u}))
           for c, u in [("Paris", "C"), ("Oslo", "F"), ("Rome", "C"), ("Lima", "F")]] + [
    conv_with(f"Add {a} and {b}", ToolCall("add", {"a": a, "b": b}))
    for a, b in [(2, 3), (10, 7), (4, 40)]] + [conv_with("Hi there", answer="Hello! How can I help?")]
QUESTIONS = [c.messages[0].content for c in TRAINED] + [
    "Weather in Cairo?", "Add 5 and 6", "Weather in Add?", "Hi", "Add Paris and 3"]


@pytest.fixture(scope="module")
def caller(tiny_model, tokenizer) -> Generator:
    """The tiny model taught (overfitted, 150 steps) to call on the questions above: it
    writes valid calls on some prompts and broken ones on others."""
    return Generator(taught(tiny_model, tokenizer, TRAINED), tokenizer, get_template("hermes", tokenizer))


def taught(tiny_model, tokenizer, convs: list[Conversation], steps: int = 150):
    """The tiny model overfitted to ``convs`` (rendered by hermes), in eval mode."""
    from transformers import AutoModelForCausalLM
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    template = get_template("hermes", tokenizer)
    examples = [encode(template.render(c), tokenizer) for c in convs]
    width = max(len(e.input_ids) for e in examples)
    ids = torch.tensor([e.input_ids + [0] * (width - len(e.input_ids)) for e in examples])
    labels = torch.tensor([e.labels
                           + [-100] * (width - len(e.input_ids)) for e in examples])
    mask = torch.arange(width) < torch.tensor([len(e.input_ids) for e in examples])[:, None]
    keep = labels[:, 1:] != -100  # the head only where the next token is trained
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(steps):
        hidden = model.model(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        logits = model.lm_head(hidden[:, :-1][keep])
        torch.nn.functional.cross_entropy(logits, labels[:, 1:][keep]).backward()
        opt.step()
        opt.zero_grad()
    return model.eval()


def prompts_of(gen: Generator) -> list[str]:
    return [gen.template.prompt(Conversation([Message("user", q)], tools=TOOLS)) for q in QUESTIONS]


def valid_call(gen: Generator, text: str) -> bool:
    """Calls that parse, fit their schemas and are closed as the template closes them."""
    if text.count("<tool_call>\n") != text.count("\n</tool_call>"):
        return False
    try:
        calls = gen.template.parse_calls(text)
    except CallParseError:
        return False
    return bool(calls) and all(fits_schema(c.name, c.arguments, TOOLS) for c in calls)


def test_greedy_with_the_constraint_equals_free_decoding_where_the_free_call_was_valid(caller):
    prompts = prompts_of(caller)
    caller.constrain = False
    free = caller.complete_batch(prompts, Sampling(60), 8, tools=[TOOLS] * len(prompts))
    caller.constrain = True
    bound = caller.complete_batch(prompts, Sampling(60), 8, tools=[TOOLS] * len(prompts))
    valid = [valid_call(caller, f.text) for f in free]
    assert sum(valid) >= 7, [f.text for f in free]  # the model learnt its calls
    for f, b, ok in zip(free, bound, valid):
        if ok or "<tool_call>" not in f.text:  # a valid call, or no call at all: the same
            assert b.text == f.text
        assert "<tool_call>" not in b.text or valid_call(caller, b.text.split("</tool_call>")[0] + "</tool_call>")
    assert any(not ok and "<tool_call>" in f.text for f, ok in zip(free, valid)), \
        "no prompt where the free call was broken: the constraint is not tested"


def test_batched_constrained_generation_equals_one_at_a_time(caller):
    prompts = prompts_of(caller)
    tools = [TOOLS] * len(prompts)
    batched = caller.complete_batch(prompts, Sampling(60), 8, tools=tools)
    alone = caller.complete_batch(prompts, Sampling(60), 1, tools=tools)  # model.generate
    assert [g.text for g in batched] == [g.text for g in alone]


def test_constrain_off_leaves_calls_free(caller):
    caller.constrain = False
    try:
        assert caller.call_rules(TOOLS) is None
    finally:
        caller.constrain = True
    assert caller.call_rules(None) is None and caller.call_rules(TOOLS) is not None


def test_calls_are_rendered_with_arguments_in_schema_order(tokenizer):
    """The order constrained decoding allows is the order training shows."""
    nested = Tool("book", "", {"type": "object", "properties": {
        "when": {"type": "string"},
        "guests": {"type": "array", "items": {"type": "object", "properties": {
            "name": {"type": "string"}, "age": {"type": "integer"}}}}}})
    call = ToolCall("book", {"guests": [{"age": 3, "name": "Ada", "pet": "cat"}], "extra": 1,
                             "when": "noon"})
    conv = Conversation([Message("user", "Book"), Message("assistant", "", tool_calls=[call])],
                        tools=[nested])
    text = get_template("hermes", tokenizer).render(conv).text
    assert ('{"when": "noon", "guests": [{"name": "Ada", "age": 3, "pet": "cat"}], "extra": 1}'
            in text)
    assert list(call.arguments) == ["guests", "extra", "when"]  # the data is left as it was
