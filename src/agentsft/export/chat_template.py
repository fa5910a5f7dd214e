"""The run's agent template as a Jinja chat template, so that any engine that applies a
model's chat template (transformers, vLLM, TGI, llama.cpp) gives the exported model the
text it was trained on, character for character.

Written here for ``hermes`` and ``msagent``; a ``native`` run already uses the tokenizer's
own template.
Call arguments are written in the order their tool's schema lists the properties, nested
objects and arrays too (as agentsft renders them for training: ``in_schema_order``).
The template has no line breaks outside its string literals, so transformers'
``trim_blocks`` / ``lstrip_blocks`` have nothing to strip.
"""

from __future__ import annotations

from agentsft.data.templates import EXPORTED, AgentTemplate
from agentsft.data.templates.hermes import TOOLS_PREAMBLE
from agentsft.errors import AgentsftError

ORDERED_JSON = [  # value v as JSON, objects' keys in the order of schema s
    "{%- macro ordered(v, s) -%}",
    "{%- if v is mapping -%}",
    "{%- set props = s['properties'] if s is mapping and s['properties'] is mapping else {} -%}",
    "{%- set ns = namespace(first=true) -%}{{- '{' -}}",
    "{%- for k in props if k in v -%}{%- if not ns.first %}, {% endif -%}{%- set ns.first = false -%}"
    "{{- k|tojson }}: {{ ordered(v[k], props[k]) -}}{%- endfor -%}",
    "{%- for k in v if k not in props -%}{%- if not ns.first %}, {% endif -%}{%- set ns.first = false -%}"
    "{{- k|tojson }}: {{ ordered(v[k], none) -}}{%- endfor -%}{{- '}' -}}",
    "{%- elif v is string -%}{{- v|tojson -}}",
    "{%- elif v is sequence -%}{{- '[' -}}{%- for x in v -%}{%- if not loop.first %}, {% endif -%}"
    "{{- ordered(x, s['items'] if s is mapping else none) -}}{%- endfor -%}{{- ']' -}}",
    "{%- else -%}{{- v|tojson -}}{%- endif -%}",
    "{%- endmacro -%}",
]

TEXT = [  # a message's content as text: a string, null, or a list of text parts
    "{%- macro text(c) -%}",
    "{%- if c is string -%}{{- c -}}{%- elif c -%}{%- for p in c -%}{{- p['text'] -}}{%- endfor -%}{%- endif -%}",
    "{%- endmacro -%}",
]
TOOL_LINES = [  # the offered tools, one JSON object a line (data/templates/base.py: tools_json)
    "{%- macro tool_lines(tools) -%}",
    "{%- for t in tools -%}{%- set f = t['function'] if t['function'] is defined else t -%}",
    '{%- if not loop.first -%}{{- "\\n" -}}{%- endif -%}',
    '{{- {"type": "function", "function": {"name": f["name"], "description": f["description"] or "", '
    '"parameters": f["parameters"] if f["parameters"] is defined else {"type": "object", '
    '"properties": {}}}}|tojson -}}',
    "{%- endfor -%}",
    "{%- endmacro -%}",
]
ARGUMENTS = [  # a call's arguments, in its tool's schema order (a string is written as given)
    "{%- macro arguments(f, tools) -%}",
    "{%- set found = namespace(schema=none) -%}",
    "{%- for t in tools -%}{%- set g = t['function'] if t['function'] is defined else t -%}"
    "{%- if g['name'] == f['name'] and g['parameters'] is defined -%}"
    "{%- set found.schema = g['parameters'] -%}{%- endif -%}{%- endfor -%}",
    "{%- if f['arguments'] is string -%}{{- f['arguments'] -}}"
    "{%- else -%}{{- ordered(f['arguments'], found.schema) -}}{%- endif -%}",
    "{%- endmacro -%}",
]
MACROS = ORDERED_JSON + TEXT + TOOL_LINES + ARGUMENTS


def jinja_string(text: str) -> str:
    """``text`` as a Jinja string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def hermes_jinja() -> str:
    head, tail = TOOLS_PREAMBLE.split("{tools}")
    head, tail = head.replace("{{", "{").replace("}}", "}"), tail.replace("{{", "{").replace("}}", "}")
    nl = '{{- "\\n" -}}'
    parts = MACROS + [
        "{%- set tools = tools or [] -%}",
        "{%- set has_system = messages and messages[0]['role'] == 'system' -%}",
        "{%- if has_system or tools -%}",
        '{{- "<|im_start|>system\\n" -}}',
        "{%- if has_system -%}{{- text(messages[0]['content']) -}}{%- endif -%}",
        "{%- if tools -%}",
        "{%- if has_system and text(messages[0]['content']) -%}" + nl + nl + "{%- endif -%}",
        "{{- " + jinja_string(head) + " + tool_lines(tools) + " + jinja_string(tail) + " -}}",
        "{%- endif -%}",
        '{{- "<|im_end|>\\n" -}}',
        "{%- endif -%}",
        "{%- for m in messages -%}",
        "{%- if m['role'] == 'tool' -%}",
        "{%- if loop.first or loop.previtem['role'] != 'tool' -%}"
        '{{- "<|im_start|>tool\\n" -}}{%- else -%}' + nl + "{%- endif -%}",
        '{{- "<tool_response>\\n" + text(m["content"]) + "\\n</tool_response>" -}}',
        "{%- if loop.last or loop.nextitem['role'] != 'tool' -%}"
        '{{- "<|im_end|>\\n" -}}{%- endif -%}',
        "{%- elif m['role'] != 'system' -%}",
        '{{- "<|im_start|>" + m["role"] + "\\n" + text(m["content"]) -}}',
        "{%- if m['tool_calls'] is defined and m['tool_calls'] -%}",
        "{%- if text(m['content']) -%}" + nl + "{%- endif -%}",
        "{%- for c in m['tool_calls'] -%}{%- set f = c['function'] if c['function'] is defined else c -%}",
        "{%- if not loop.first -%}" + nl + "{%- endif -%}",
        '{{- "<tool_call>\\n{\\"name\\": " + f["name"]|tojson + ", \\"arguments\\": " -}}',
        '{{- arguments(f, tools) + "}\\n</tool_call>" -}}',
        "{%- endfor -%}",
        "{%- endif -%}",
        '{{- "<|im_end|>\\n" -}}',
        "{%- endif -%}",
        "{%- endfor -%}",
        '{%- if add_generation_prompt -%}{{- "<|im_start|>assistant\\n" -}}{%- endif -%}',
    ]
    return "".join(parts)


def msagent_jinja() -> str:
    """``msagent``: calls in think blocks, results in exec blocks, one assistant turn."""
    tools_text = '"You can call these tools:\\n" + tool_lines(tools)'
    think = ('"<|startofthink|>```JSON\\n{\\"api_name\\": " + f["name"]|tojson')
    parts = MACROS + [
        "{%- set tools = tools or [] -%}",
        "{%- if tools and not (messages and messages[0]['role'] == 'system') -%}",
        '{{- "<|system|>:" + ' + tools_text + ' + "\\n" -}}',
        "{%- endif -%}",
        "{%- for m in messages -%}",
        "{%- set prev = none if loop.first else loop.previtem -%}",
        "{%- if m['role'] in ['system', 'user'] -%}",
        "{%- set body = text(m['content']) -%}",
        "{%- if m['role'] == 'system' and tools -%}",
        '{%- set body = (body + "\\n\\n" if body else "") + ' + tools_text + " -%}",
        "{%- endif -%}",
        '{{- "<|" + m["role"] + "|>:" + body + "\\n" -}}',
        "{%- else -%}",
        "{%- set goes_on = prev is not none and (prev['role'] == 'tool' or "
        "(prev['tool_calls'] is defined and prev['tool_calls'])) -%}",
        '{%- if m["role"] == "assistant" and not goes_on -%}{{- "<|assistant|>:" -}}{%- endif -%}',
        "{%- if m['role'] == 'tool' -%}",
        "{%- if prev is none or prev['role'] != 'assistant' -%}{{- '<|startofexec|>' -}}{%- endif -%}",
        '{{- "```JSON\\n" + text(m["content"]) + "\\n```<|endofexec|>\\n" -}}',
        "{%- elif m['tool_calls'] is defined and m['tool_calls'] -%}",
        '{%- if text(m["content"]) -%}{{- text(m["content"]) + "\\n" -}}{%- endif -%}',
        "{%- for c in m['tool_calls'] -%}{%- set f = c['function'] if c['function'] is defined else c -%}",
        '{%- if not loop.first -%}{{- "\\n\\n" -}}{%- endif -%}',
        "{{- " + think + " -}}",
        "{%- for k in c if k not in ['id', 'type', 'function'] -%}"
        '{{- ", " + k|tojson + ": " + c[k]|tojson -}}{%- endfor -%}',
        '{{- ", \\"parameters\\": " + arguments(f, tools) + "}\\n```<|endofthink|>" -}}',
        "{%- endfor -%}",
        '{{- "\\n\\n<|startofexec|>" -}}',
        "{%- else -%}",
        '{{- text(m["content"]) + eos_token + "\\n" -}}',
        "{%- endif -%}",
        "{%- endif -%}",
        "{%- endfor -%}",
        "{%- set last = messages[-1] if messages else none -%}",
        "{%- if add_generation_prompt and not (last is not none and (last['role'] == 'tool' or "
        "(last['tool_calls'] is defined and last['tool_calls']))) -%}{{- '<|assistant|>:' -}}{%- endif -%}",
    ]
    return "".join(parts)


def chat_template(template: AgentTemplate, tokenizer) -> str:
    """The Jinja chat template that renders exactly as ``template`` does, opening with a
    comment naming it (so agentsft reads an export's calls with the template it trained)."""
    if template.name == "hermes":
        return EXPORTED.format("hermes") + hermes_jinja()
    if template.name == "msagent":
        return EXPORTED.format("msagent") + msagent_jinja()
    if template.name == "native":
        return tokenizer.chat_template
    raise AgentsftError(f"the {template.name} template has no chat template to export. Fix: "
                        f"train with --template hermes, msagent or native")
