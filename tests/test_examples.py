"""The example data: what make_examples.py writes, and a held-out split that holds."""

from __future__ import annotations

import subprocess
import sys

from agentsft.data.arguments import fits_schema
from agentsft.data.readers import read_conversations
from tests.conftest import ROOT

EXAMPLES = ROOT / "examples"
FILES = ("persona.jsonl", "tools.jsonl", "msagent.jsonl", "calls_train.jsonl", "calls_test.jsonl")


def test_the_generator_writes_the_committed_files(tmp_path):
    subprocess.run([sys.executable, str(EXAMPLES / "make_examples.py"), "--out", str(tmp_path)],
                   check=True, capture_output=True)
    for name in FILES:
        assert (tmp_path / name).read_bytes() == (EXAMPLES / name).read_bytes(), name


def tool_names(convs) -> set[str]:
    return {t.name for c in convs for t in c.tools or ()} | {
        call.name for c in convs for m in c.messages for call in m.tool_calls}


def test_held_out_tools_never_appear_in_training_and_every_call_fits_its_schema():
    train = read_conversations([EXAMPLES / "calls_train.jsonl"]).conversations
    test = read_conversations([EXAMPLES / "calls_test.jsonl"]).conversations
    unseen = [c for c in test if c.id.startswith("unseen")]
    assert len(train) == 400 and len(test) == 150 and len(unseen) == 100
    held_out = tool_names(unseen) - tool_names(c for c in test if not c.id.startswith("unseen"))
    assert len(held_out) == 5 and not held_out & tool_names(train)
    train_text = (EXAMPLES / "calls_train.jsonl").read_text()
    assert not any(name in train_text for name in held_out)
    asked = {m.content for c in train for m in c.messages if m.role == "user"}
    assert not asked & {m.content for c in test for m in c.messages if m.role == "user"}
    for conv in train + test:
        for m in conv.messages:
            for call in m.tool_calls:
                assert fits_schema(call.name, call.arguments, conv.tools), (conv.id, call)
