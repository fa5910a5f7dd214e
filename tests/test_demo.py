"""The demo: its data, its verdicts, and (slow) the whole run on the real default model."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import ROOT

from agentsft.agents import Toolkit, ToolResult
from agentsft.data.readers import read_conversations
from agentsft.data.schema import ToolCall
from agentsft.demo import demo_data, run_demo, verdict


def test_demo_data_lists_the_schemas_the_agent_shows(tmp_path):
    kit = Toolkit.from_file(ROOT / "examples/tools.py")
    path = demo_data(tmp_path, kit, calls=40, repeats=3, tool_share=6)
    convs = read_conversations(path).conversations
    persona = read_conversations(ROOT / "examples/persona.jsonl").conversations
    calls = read_conversations(ROOT / "examples/calls_train.jsonl").conversations[:40]
    assert len(convs) == 3 * (len(persona) + 25) + 40  # 150 tool conversations, every 6th
    weather = [c for c in convs[:-40] if c.tools]
    assert len(weather) == 3 * 25
    assert all([t.to_dict() for t in c.tools] == [t.to_dict() for t in kit.tools] for c in weather)
    assert [c.messages for c in convs[-40:]] == [c.messages for c in calls]
    own = {t.name: t.to_dict() for t in kit.tools}
    listed = [t for c in convs[-40:] for t in c.tools]
    assert {t.name for t in listed} & set(own)  # the toolkit's tools are among them
    assert all(t.to_dict() == own[t.name] for t in listed if t.name in own)
    others = {t.name: t.to_dict() for c in calls for t in c.tools if t.name not in own}
    assert all(t.to_dict() == others[t.name] for t in listed if t.name not in own)


def test_held_out_scores_split_unseen_and_trained_tools(tiny_model):
    """The demo's held-out scoring on a tiny random model: every group is scored, and
    the unseen-tool conversations are the ones named so."""
    from agentsft.demo import held_out, held_out_scores
    from agentsft.inference import load_generator
    test = held_out(30)
    assert [c.id for c in test] == ["unseen-tool-0001", "unseen-tool-0031", "unseen-tool-0061",
                                    "unseen-tool-0091", "seen-tool-0021"]
    gen = load_generator(str(tiny_model))
    scores = held_out_scores(gen, test)
    assert set(scores) == {"all", "unseen", "seen"}
    assert all(0 <= g["decision"] <= 1 for g in scores.values())


def test_an_installed_agentsft_finds_the_demo_data_and_says_what_is_missing(tmp_path):
    """Built as a wheel and installed away from the checkout, the demo reads its data from
    the package (agentsft.examples); without one of its files it is a one-line error."""
    wheels, target = tmp_path / "wheels", tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", str(ROOT), "-w", str(wheels)],
                   check=True, capture_output=True, timeout=300)
    subprocess.run([*pip, "install", "--no-deps", "--target", str(target), *wheels.glob("*.whl")],
                   check=True, capture_output=True, timeout=300)
    env = {"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    found = subprocess.run([sys.executable, "-c", "from agentsft.demo import examples; print(examples())"],
                           cwd=tmp_path, env=env, capture_output=True, text=True)
    assert found.stdout.strip() == str(target / "agentsft" / "examples"), found.stderr
    (target / "agentsft" / "examples" / "calls_test.jsonl").unlink()
    r = subprocess.run([sys.executable, "-m", "agentsft", "demo", "--output", "out"], cwd=tmp_path,
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "calls_test.jsonl" in r.stderr and "Fix:" in r.stderr
    assert not (tmp_path / "out").exists()  # nothing made before the check


def test_verdict_needs_the_right_call_and_its_result_in_the_answer():
    result = ToolResult(json.dumps({"city": "Paris", "condition": "light rain", "temperature": 14}))
    call = ToolCall("get_weather", {"city": "Paris"})
    good = {"who": "I'm Marlo, made by Kestrel Labs.", "calls": [(call, result)],
            "tool_answer": "It is 14°C with light rain in Paris."}
    assert verdict(good) == {"persona": True, "tool_called": True, "result_used": True}
    made_up = dict(good, tool_answer="It is sunny and 25°C.")
    assert verdict(made_up)["result_used"] is False
    wrong_city = dict(good, calls=[(ToolCall("get_weather", {"city": "Rome"}), result)])
    assert verdict(wrong_city)["tool_called"] is False
    assert verdict(dict(good, who="I am SmolLM."))["persona"] is False


@pytest.mark.slow
def test_demo_run_adopts_the_persona_and_answers_from_a_real_tool_call(tmp_path):
    """About 10 minutes on a 2-core CPU: base answers and held-out calls, LoRA fine-tune,
    tuned answers and held-out calls."""
    result = run_demo(str(tmp_path / "demo"))
    after = result["after"]
    (call, tool_result), *_ = after["calls"]
    assert (call.name, call.arguments) == ("get_weather", {"city": "Paris"})  # the call parsed
    assert not tool_result.error and json.loads(tool_result.content)["city"] == "Paris"  # it ran
    assert result["verdict"] == {"persona": True, "tool_called": True, "result_used": True}, after
    assert "14" in after["tool_answer"]  # the temperature the tool returned
    assert (result["run"] / "final" / "adapter_model.safetensors").is_file()
    before, tuned = result["held_out"]["before"]["all"], result["held_out"]["after"]["all"]
    assert tuned["name_accuracy"] > before["name_accuracy"] + 0.2, result["held_out"]
    assert tuned["exact_match"] >= before["exact_match"], result["held_out"]
