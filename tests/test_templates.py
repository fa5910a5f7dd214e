"""Token-exact loss masks and call round-trips for every agent template, on the real tokenizer."""

from __future__ import annotations

import json

import pytest
from conftest import PARALLEL_CALLS, chat_conversation, tool_conversation

from agentsft.data.readers import read_conversations
from agentsft.data.schema import Conversation, DataError, Message
from agentsft.data.templates import (
    CallParseError, HermesTemplate, MsAgentTemplate, NativeTemplate, get_template,
)
from agentsft.data.tokenize import encode

IM_END = "<|im_end|>"


def trained_runs(ex, text: str) -> list[str]:
    """The text of each maximal run of consecutive trained tokens."""
    runs, current = [], None
    for (s, e), t in zip(ex.offsets, ex.trained):
        if t:
            current = (current[0], e) if current else (s, e)
        elif current:
            runs.append(text[current[0]:current[1]])
            current = None
    if current:
        runs.append(text[current[0]:current[1]])
    return runs


def assert_token_exact(ex, text: str, expected: list[str], tokenizer) -> None:
    """Trained runs are exactly ``expected``, token for token, each ending in the end-of-turn token."""
    assert trained_runs(ex, text) == expected
    trained_ids = [i for i, t in zip(ex.input_ids, ex.trained) if t]
    want_ids = [i for run in expected for i in tokenizer(run, add_special_tokens=False)["input_ids"]]
    assert trained_ids == want_ids


def calls_json(calls) -> list[tuple[str, dict]]:
    return [(c.name, c.arguments) for c in calls]


# --- hermes ---------------------------------------------------------------------------------


def hermes_calls_text() -> str:
    return "\n".join("<tool_call>\n" + json.dumps({"name": c.name, "arguments": c.arguments})
                     + "\n</tool_call>" for c in PARALLEL_CALLS)


def test_hermes_trains_calls_and_answer_masks_system_user_tool(tokenizer):
    conv = tool_conversation()
    r = HermesTemplate().render(conv)
    ex = encode(r, tokenizer)
    assert_token_exact(ex, r.text, [hermes_calls_text() + IM_END,
                                    "Paris is 14°C; flight AF1 goes to Rome." + IM_END], tokenizer)
    # every end-of-turn token of the assistant is trained, none of the others
    im_end = tokenizer.convert_tokens_to_ids(IM_END)
    ends = [t for i, t in zip(ex.input_ids, ex.trained) if i == im_end]
    assert ends == [0, 0, 1, 0, 1]  # system, user, assistant, tool, assistant
    assert "get_weather" in r.text.split(IM_END)[0]  # tools listed in the system turn
    assert r.text.count("<tool_response>\n") == 2 and r.text.count("<|im_start|>tool") == 1


def test_hermes_policy_last_and_all(tokenizer):
    conv = chat_conversation()
    t = HermesTemplate()
    r = t.render(conv, "last")
    assert_token_exact(encode(r, tokenizer), r.text, ["I am Marlo." + IM_END], tokenizer)
    r = t.render(conv, "assistant")
    assert trained_runs(encode(r, tokenizer), r.text) == ["Hello!" + IM_END, "I am Marlo." + IM_END]
    r = t.render(conv, "all")
    ex = encode(r, tokenizer)
    assert all(ex.trained) and len(ex) > 20


def test_last_policy_keeps_the_whole_final_turn_but_not_tool_results(tokenizer):
    conv = tool_conversation()
    conv.messages.insert(1, Message("user", "Earlier question"))
    conv.messages.insert(2, Message("assistant", "Earlier answer"))
    r = HermesTemplate().render(conv, "last")
    runs = trained_runs(encode(r, tokenizer), r.text)
    assert runs == [hermes_calls_text() + IM_END, "Paris is 14°C; flight AF1 goes to Rome." + IM_END]


def test_train_flag_overrides_policy(tokenizer):
    conv = chat_conversation()
    conv.messages[2].train = False   # first answer masked
    conv.messages[1].train = True    # a user turn trained
    for policy in ("assistant", "all"):
        r = HermesTemplate().render(conv, policy)
        ex = encode(r, tokenizer)
        runs = trained_runs(ex, r.text)
        assert not any("Hello!" in run for run in runs)
        assert any("Hi" + IM_END in run for run in runs)
    r = HermesTemplate().render(conv, "assistant")
    assert trained_runs(encode(r, tokenizer), r.text) == ["Hi" + IM_END, "I am Marlo." + IM_END]


# --- msagent --------------------------------------------------------------------------------


def test_msagent_trains_thinks_and_summary_masks_exec(tokenizer):
    convs = read_conversations("tests/fixtures/msagent.jsonl").conversations
    t = get_template("msagent", tokenizer)
    r = t.render(convs[0])  # two rounds: each a call, its result, a summary
    ex = encode(r, tokenizer)
    think1 = ('<|startofthink|>```JSON\n{"api_name": "get_weather", "url": "http://localhost/weather", '
              '"parameters": {"city": "Hangzhou"}}\n```<|endofthink|>')
    think2 = ('<|startofthink|>```JSON\n{"api_name": "convert_units", "url": "http://localhost/convert", '
              '"parameters": {"value": 21, "from_unit": "C", "to_unit": "F"}}\n```<|endofthink|>')
    assert_token_exact(ex, r.text, [
        "Let me check.\n" + think1 + "\n\n<|startofexec|>",
        "It is 21°C in Hangzhou." + IM_END,
        think2 + "\n\n<|startofexec|>",
        "杭州现在约69.8华氏度。" + IM_END,
    ], tokenizer)
    assert '```JSON\n{"temperature": 21, "unit": "C"}\n```<|endofexec|>' in r.text
    assert r.text.startswith("<|system|>:You can use these tools:")


# --- native ---------------------------------------------------------------------------------


def test_native_masks_from_prefix_rendering(tool_tokenizer, tokenizer):
    conv = tool_conversation()
    t = get_template("auto", tool_tokenizer)
    assert isinstance(t, NativeTemplate)
    r = t.render(conv)
    calls = "".join(json.dumps({"name": c.name, "parameters": c.arguments}) + "\n"
                    for c in PARALLEL_CALLS)
    assert_token_exact(encode(r, tool_tokenizer), r.text,
                       [calls + IM_END, "Paris is 14°C; flight AF1 goes to Rome." + IM_END], tokenizer)


def test_native_on_default_tokenizer_without_tools(tokenizer):
    t = NativeTemplate(tokenizer)
    r = t.render(chat_conversation())
    assert_token_exact(encode(r, tokenizer), r.text,
                       ["Hello!" + IM_END, "I am Marlo." + IM_END], tokenizer)
    assert r.text == tokenizer.apply_chat_template(
        [{"role": m.role, "content": m.content} for m in chat_conversation().messages], tokenize=False)


def test_auto_is_hermes_when_the_chat_template_ignores_tools(tokenizer):
    # SmolLM2's own template drops tools, so calls would vanish from training text.
    assert isinstance(get_template("auto", tokenizer), HermesTemplate)
    with pytest.raises(DataError, match="does not render tools"):
        NativeTemplate(tokenizer).render(tool_conversation())


def test_native_refuses_a_template_that_is_not_prefix_stable(tokenizer):
    import copy
    tok = copy.deepcopy(tokenizer)
    tok.chat_template = ("{{ messages | length }} turns\n{% for m in messages %}"
                         "{{ m.role }}: {{ m.content }}\n{% endfor %}")
    with pytest.raises(DataError, match=r"not prefix-stable at message 2 \(assistant\)"):
        NativeTemplate(tok).render(chat_conversation())


def test_unknown_template_and_policy_are_errors(tokenizer):
    with pytest.raises(DataError, match="unknown template 'chatml'"):
        get_template("chatml", tokenizer)
    with pytest.raises(DataError, match="unknown loss policy"):
        HermesTemplate().render(chat_conversation(), "everything")


# --- round trips ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["hermes", "msagent", "native"])
def test_round_trip_parallel_and_nested_calls(name, tokenizer, tool_tokenizer):
    tok = tool_tokenizer if name == "native" else tokenizer
    t = get_template(name, tok)
    conv = tool_conversation()
    r = t.render(conv)
    (seg,) = [s for s in r.segments if s.message == 2]  # the assistant message with the calls
    parsed = t.parse_calls(r.text[seg.start:seg.end])
    assert calls_json(parsed) == calls_json(PARALLEL_CALLS)
    # and the text holding no call parses to none
    (final,) = [s for s in r.segments if s.message == 5]
    assert t.parse_calls(r.text[final.start:final.end]) == []


def test_hermes_parses_an_unclosed_call_and_rejects_bad_json():
    t = HermesTemplate()
    (call,) = t.parse_calls('Sure.\n<tool_call>\n{"name": "f", "arguments": "{\\"x\\": 1}"}\n')
    assert (call.name, call.arguments) == ("f", {"x": 1})
    with pytest.raises(CallParseError, match="not valid JSON"):
        t.parse_calls("<tool_call>{name: f}</tool_call>")
    with pytest.raises(CallParseError, match="must be a JSON object"):
        t.parse_calls('<tool_call>{"name": "f", "arguments": [1]}</tool_call>')


def test_generation_prompt_is_the_trained_text_prefix(tokenizer):
    # What the model sees at inference is exactly the masked prefix it was trained after.
    conv = chat_conversation()
    for t in (HermesTemplate(), MsAgentTemplate(IM_END)):
        full = t.render(conv)
        prompt = t.prompt(Conversation(conv.messages[:-1]))
        assert full.text.startswith(prompt)
        assert full.text[len(prompt):].startswith("I am Marlo." + IM_END)


# --- cases found in review ------------------------------------------------------------------

# Renders a run of tool results as one user turn closed only after the last result (as
# Qwen2.5's template does), so prefixes ending inside the run are not prefixes of the whole.
GROUPED_RESULTS_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m.role == 'tool' %}"
    "{% if loop.first or messages[loop.index0 - 1].role != 'tool' %}<|im_start|>user\n{% endif %}"
    "<tool_response>\n{{ m.content }}\n</tool_response>"
    "{% if loop.last or messages[loop.index0 + 1].role != 'tool' %}<|im_end|>\n{% else %}\n{% endif %}"
    "{% elif m.role == 'assistant' and m.tool_calls %}<|im_start|>assistant\n"
    "{% for c in m.tool_calls %}<tool_call>\n{{ {'name': c.function.name, 'arguments': "
    "c.function.arguments} | tojson }}\n</tool_call>{% endfor %}<|im_end|>\n"
    "{% else %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endif %}"
    "{% endfor %}"
    "{% if tools %}{% endif %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def test_native_handles_a_template_that_groups_tool_results(tokenizer):
    import copy
    tok = copy.deepcopy(tokenizer)
    tok.chat_template = GROUPED_RESULTS_TEMPLATE.replace("{% if tools %}{% endif %}",
                                                         "{% if tools %}{{ '' }}{% endif %}")
    tok.chat_template = tok.chat_template.replace(
        "{% for m in messages %}", "{% if tools %}<|im_start|>system\ntools{% for t in tools %} "
        "{{ t.function.name }}{% endfor %}<|im_end|>\n{% endif %}{% for m in messages %}", 1)
    t = get_template("auto", tok)
    assert isinstance(t, NativeTemplate)
    r = t.render(tool_conversation())
    calls = "".join("<tool_call>\n" + json.dumps({"name": c.name, "arguments": c.arguments})
                    + "\n</tool_call>" for c in PARALLEL_CALLS)
    assert_token_exact(encode(r, tok), r.text,
                       [calls + IM_END, "Paris is 14°C; flight AF1 goes to Rome." + IM_END], tokenizer)


def test_native_never_trains_an_injected_system_prompt(tokenizer):
    # SmolLM2's template adds a default system turn when the first message is not one; an
    # assistant-first conversation must not get that text trained as the reply.
    conv = Conversation([Message("assistant", "Hi, I am Bob."), Message("user", "Who made you?"),
                         Message("assistant", "Acme.")])
    with pytest.raises(DataError, match=r"starts with an assistant message"):
        NativeTemplate(tokenizer).render(conv)


def test_msagent_lists_the_tools_and_ends_a_finished_answer_turn(tokenizer):
    conv = tool_conversation()
    conv.messages.append(Message("assistant", "Anything else?"))
    t = get_template("msagent", tokenizer)
    r = t.render(conv)
    system = r.text.split("\n<|user|>:")[0]
    assert system.startswith("<|system|>:You are Marlo.\n\nYou can call these tools:\n")
    assert '"name": "get_weather"' in system and '"name": "search_flights"' in system
    assert r.text.endswith("Rome." + IM_END + "\n<|assistant|>:Anything else?" + IM_END + "\n")
    no_system = Conversation(conv.messages[1:], tools=conv.tools)
    assert t.render(no_system).text.startswith("<|system|>:You can call these tools:\n")


@pytest.mark.parametrize("name", ["hermes", "msagent", "native"])
def test_closing_markers_inside_arguments_survive_the_round_trip(name, tokenizer, tool_tokenizer):
    t = get_template(name, tool_tokenizer if name == "native" else tokenizer)
    tricky = {"code": "print('</tool_call>')", "note": "```<|endofthink|> and <|startofexec|>"}
    conv = tool_conversation()
    conv.messages[2].tool_calls[0].arguments = tricky
    r = t.render(conv)
    (seg,) = [s for s in r.segments if s.message == 2]
    assert [c.arguments for c in t.parse_calls(r.text[seg.start:seg.end])][0] == tricky
