"""Data from where people keep it: Parquet, Arrow, CSV and TSV files, folders written by
``datasets``, hub dataset ids (offline here: the clear error), each read through
``datasets`` and into the same conversations as the JSON it was made from."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT, run_cli, tool_conversation

from agentsft.data.readers import read_conversations
from agentsft.data.sources import SourceOptions
from agentsft.errors import AgentsftError, DataError


def as_columns(conv) -> dict:
    """An OpenAI-shaped record as tables hold it: tools and call arguments as JSON strings
    (their schemas differ from row to row, which one Arrow column cannot hold as structs)."""
    d = conv.to_dict()
    for m in d["messages"]:
        for c in m.get("tool_calls", []):
            c["function"]["arguments"] = json.dumps(c["function"]["arguments"])
    d["tools"] = json.dumps(d.get("tools") or [])
    return d


@pytest.fixture(scope="module")
def records():
    persona = read_conversations(str(ROOT / "examples" / "persona.jsonl")).conversations[:6]
    return [as_columns(c) for c in [tool_conversation(), *persona]]


def dicts(path, **kw):
    return [c.to_dict() for c in read_conversations(str(path), **kw).conversations]


@pytest.fixture(scope="module")
def tables(records, tmp_path_factory):
    """The same records as JSONL, Parquet, Arrow, and a saved dataset with two splits."""
    import datasets
    root = tmp_path_factory.mktemp("tables")
    (root / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    ds = datasets.Dataset.from_list(records)
    ds.to_parquet(str(root / "data.parquet"))
    datasets.DatasetDict({"train": ds, "test": ds.select([0, 1])}).save_to_disk(str(root / "saved"))
    arrow = next((root / "saved" / "train").glob("*.arrow"))
    (root / "data.arrow").write_bytes(arrow.read_bytes())
    return root


@pytest.mark.parametrize("name", ["data.parquet", "data.arrow", "saved"])
def test_tables_read_as_the_json_they_came_from(tables, name):
    want = dicts(tables / "data.jsonl")
    assert len(want) == 7 and any(c.get("tools") for c in want)
    assert dicts(tables / name) == want


def test_a_saved_dataset_gives_the_split_asked_for(tables):
    assert len(dicts(tables / "saved", source=SourceOptions(split="test"))) == 2
    with pytest.raises(DataError, match="no split 'dev' .*train, test.* --split"):
        dicts(tables / "saved", source=SourceOptions(split="dev"))


def test_csv_and_tsv_rows_read_as_alpaca(tmp_path):
    import csv
    rows = [{"instruction": "Add 2 and 3", "input": "", "output": "5"},
            {"instruction": "Greet", "input": "in French, with a comma, please", "output": "Bonjour"}]
    for suffix, delimiter in ((".csv", ","), (".tsv", "\t")):
        path = tmp_path / f"alpaca{suffix}"
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]), delimiter=delimiter)
            writer.writeheader()
            writer.writerows(rows)
        read = read_conversations(str(path))
        assert read.formats[str(path)] == "alpaca"
        assert [c.messages[-1].content for c in read.conversations] == ["5", "Bonjour"]
        assert "French, with a comma" in read.conversations[1].messages[0].content


def test_a_bad_row_is_named_by_its_number(records, tmp_path):
    import datasets
    bad = json.loads(json.dumps(records))
    bad[2]["messages"][0]["role"] = "robot"
    datasets.Dataset.from_list(bad).to_parquet(str(tmp_path / "bad.parquet"))
    with pytest.raises(DataError) as e:
        read_conversations(str(tmp_path / "bad.parquet"))
    assert f"{tmp_path / 'bad.parquet'}:row 3" in str(e.value) and "messages[0].role" in str(e.value)
    read = read_conversations(str(tmp_path / "bad.parquet"), skip_invalid=True)
    assert len(read.conversations) == 6 and len(read.skipped) == 1


def test_the_cli_checks_and_converts_a_parquet_file(tables, tmp_path):
    r = run_cli("data", "check", str(tables / "data.parquet"))
    assert r.returncode == 0, r.stderr
    assert "7 conversations" in r.stdout + r.stderr
    out = tmp_path / "out.jsonl"
    r = run_cli("data", "convert", str(tables / "saved"), "--split", "test", "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert dicts(out) == dicts(tables / "data.jsonl")[:2]


def test_an_unknown_hub_dataset_offline_is_one_line(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "HF_HOME": str(tmp_path / "hf"), "HF_DATASETS_CACHE": str(tmp_path / "hf" / "datasets")}
    r = subprocess.run([sys.executable, "-m", "agentsft", "data", "check", "GAIR/lima"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 2, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "GAIR/lima[train]" in r.stderr and "offline" in r.stderr and "save_to_disk" in r.stderr


def test_training_reads_a_parquet_file(tables, tiny_model, tmp_path):
    from agentsft import config
    from agentsft.training import train
    out = tmp_path / "run"
    train(config.load(flags={"model.name": str(tiny_model), "data.train": [str(tables / "saved")],
                             "data.split": "test", "data.val_fraction": 0,
                             "data.template": "hermes", "training.output": str(out),
                             "training.max_steps": 1, "training.batch_size": 2}))
    assert (out / "final" / "adapter_model.safetensors").is_file()
    assert "split: test" in (out / "config.yaml").read_text()


def test_a_folder_reads_every_source_inside(tables):
    read = read_conversations(str(tables))
    assert sorted(read.formats) == sorted(str(tables / n) for n in
                                          ("data.jsonl", "data.parquet", "data.arrow", "saved"))
    assert len(read.conversations) == 4 * 7


def xlam_rows(n: int):
    """``n`` short xLAM-layout rows (JSON strings inside, as the corpus has them)."""
    tools = json.dumps([{"name": "get_weather", "description": "Weather for a city.",
                         "parameters": {"city": {"type": "str", "description": "City."}}}])
    cities = ["Paris", "Rome", "Oslo", "Lima", "Kyiv", "Pune", "Cork"]
    for i in range(n):
        city = cities[i % len(cities)]
        yield {"id": i, "query": f"Weather in {city}, request {i}?", "tools": tools,
               "answers": json.dumps([{"name": "get_weather", "arguments": {"city": city}}])}


def peak_mb(*args: str) -> tuple[float, str]:
    """Peak resident memory of ``agentsft ARGS`` in its own process, and its stdout."""
    code = ("import resource, runpy, sys\nsys.argv = ['agentsft', *sys.argv[1:]]\ntry:\n"
            "    runpy.run_module('agentsft', run_name='__main__')\nfinally:\n"
            "    print('PEAK', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)")
    r = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    return int(r.stderr.rsplit("PEAK", 1)[1]) / 1024, r.stdout


def large_tables(tmp_path, sizes=(2_000, 12_000)):
    import pyarrow as pa
    import pyarrow.parquet as pq
    for n in sizes:
        path = tmp_path / f"xlam-{n}.parquet"
        pq.write_table(pa.Table.from_pylist(list(xlam_rows(n))), path)
        yield n, path


def test_stats_reads_a_large_table_with_memory_bounded(tmp_path):
    """Six times the rows, about the same peak: conversations and examples are not kept.
    Measured: 3,000 -> 30,000 rows raised the peak by 18 MB; holding them (as before) by
    1,060 MB."""
    peaks = {}
    for n, path in large_tables(tmp_path):
        peaks[n], out = peak_mb("data", "stats", str(path))
        assert f"{n} examples" in out
    assert peaks[12_000] - peaks[2_000] < 25, peaks


def test_training_tokenizes_a_large_table_with_memory_bounded(tiny_model, tmp_path):
    """Training streams its sources into the rows file and reads that memory-mapped: six
    times the rows, about the same peak. Measured: 2,000 -> 12,000 rows, +19 MB, of which
    the rows file's mapped pages are most (18 MB more file); Python's own allocations were
    the same to 0.1 MB. The rows held in memory (as before) cost about 1 GB per 27,000."""
    peaks = {}
    for n, path in large_tables(tmp_path):
        peaks[n], _ = peak_mb("train", "--model", str(tiny_model), "--data", str(path), "--output",
                              str(tmp_path / f"run-{n}"), "--max-steps", "1",
                              "--set", "data.template=hermes", "--set", "training.batch_size=2",
                              "--set", "data.val_fraction=0")
        made = json.loads((tmp_path / f"run-{n}" / "tokenized" / "meta.json").read_text())
        assert made["sizes"] == [n]
    assert peaks[12_000] - peaks[2_000] < 60, peaks


def test_rows_are_tokenized_once_and_reused(tables, tiny_model, tmp_path, capsys):
    """The rows file holds what encoding the conversations in memory gives; a second run on
    the same data reuses it (another held-out share included); changed data is tokenized
    again."""
    from agentsft import config
    from agentsft.data.tokenize import encode_conversations
    from agentsft.training.data import prepare_data, tokenizer_and_template
    data = tmp_path / "data.parquet"
    data.write_bytes((tables / "data.parquet").read_bytes())
    flags = {"model.name": str(tiny_model), "data.train": [str(data)], "data.template": "hermes",
             "training.output": str(tmp_path / "run"), "data.val_fraction": 0.3}
    cfg = config.load(flags=flags)
    tokenizer, template = tokenizer_and_template(cfg)
    train, val, _ = prepare_data(cfg, tokenizer, template)
    want = encode_conversations(read_conversations(str(data)).conversations, tokenizer, template)
    got = [rows[i] for rows in (train, val) for i in range(len(rows))]
    assert sorted(map(str, got)) == sorted(str({"input_ids": e.input_ids, "labels": e.labels})
                                           for e in want.examples)
    assert (len(train), len(val)) == (5, 2) and "reused" not in capsys.readouterr().err
    train, val, _ = prepare_data(config.load(flags={**flags, "data.val_fraction": 0}), tokenizer, template)
    assert (len(train), len(val)) == (7, 0) and "tokenized rows reused" in capsys.readouterr().err
    import pyarrow.parquet as pq
    pq.write_table(pq.read_table(tables / "data.parquet").slice(0, 4), data)
    train, val, _ = prepare_data(cfg, tokenizer, template)
    assert (len(train), len(val)) == (3, 1) and "reused" not in capsys.readouterr().err


def test_sources_mix_with_weights(tables, tiny_model, tmp_path):
    """Weight 2 takes each conversation twice, 0.5 a seeded half; held-out conversations
    are taken before the weight (never on both sides); the mix lands in the run directory."""
    from agentsft import config
    from agentsft.training import train
    out = tmp_path / "run"
    sources = [{"path": str(tables / "data.parquet"), "weight": 2},
               {"path": str(tables / "saved"), "split": "train", "weight": 0.5}]
    train(config.load(flags={"model.name": str(tiny_model), "data.train": sources,
                             "data.val_fraction": 0.3, "data.template": "hermes",
                             "training.output": str(out), "training.max_steps": 1,
                             "training.batch_size": 2}))
    mix = json.loads((out / "data_mix.json").read_text())
    assert [(m["read"], m["held_out"], m["trained_on"]) for m in mix] == [(7, 2, 10), (7, 2, 2)]
    assert "weight: 0.5" in (out / "config.yaml").read_text()


def test_rows_too_long_are_counted_on_each_side(tables, tiny_model, tmp_path, capsys):
    """A dropped conversation keeps its row (why, and where from): the hold-out is the same
    with or without a length limit, and each side says what it lost."""
    from agentsft import config
    from agentsft.training.data import prepare_data, tokenizer_and_template
    cfg = config.load(flags={"model.name": str(tiny_model), "data.train": [str(tables / "data.parquet")],
                             "data.template": "hermes", "training.output": str(tmp_path / "run"),
                             "data.val_fraction": 0.3, "data.max_length": 8})
    with pytest.raises(AgentsftError, match="nothing to train on"):
        prepare_data(cfg, *tokenizer_and_template(cfg))
    err = capsys.readouterr().err
    assert "dropped 5 training example(s) longer than data.max_length=8 (first: " in err
    assert "dropped 2 validation example(s)" in err and "data.parquet:row " in err


def test_stats_reports_a_weighted_mix(tables, tiny_model, tmp_path):
    """``data stats --config`` measures each source of data.train and the mix its weights
    make; several files make an unweighted one."""
    cfg = tmp_path / "run.yaml"
    cfg.write_text(json.dumps({"model": {"name": str(tiny_model)}, "data": {"template": "hermes", "train": [
        {"path": str(tables / "data.parquet"), "weight": 2},
        {"path": str(tables / "saved"), "split": "train", "weight": 0.5}]}}))
    r = run_cli("data", "stats", "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    rows = r.stdout.split("mix (as training takes it")[1].splitlines()[2:]
    one = run_cli("data", "stats", str(tables / "data.parquet"), "--model", str(tiny_model),
                  "--template", "hermes")
    tokens = int(one.stdout.split(" examples, ")[1].split()[0])
    assert rows[0].split()[1:4] == ["2", "14", str(2 * tokens)], r.stdout
    assert rows[1].split()[1:3] == ["0.5", "4"], r.stdout
    both = run_cli("data", "stats", str(tables / "data.jsonl"), str(tables / "data.parquet"),
                   "--model", str(tiny_model), "--template", "hermes")
    assert both.returncode == 0 and [line.split()[-1] for line in both.stdout.splitlines()[-2:]] == ["50.0%"] * 2
    bad = run_cli("data", "stats")
    assert bad.returncode == 2 and "--config" in bad.stderr


def test_a_bad_source_entry_names_its_key(tmp_path):
    r = run_cli("train", "--set", "data.train=[{path: a.jsonl, wieght: 2}]", "--output", str(tmp_path / "r"))
    assert r.returncode == 2 and "data.train[0].wieght" in r.stderr and "path, weight" in r.stderr


def test_a_broken_table_is_one_line(tables, tmp_path):
    broken = tmp_path / "broken.parquet"
    data = (tables / "data.parquet").read_bytes()
    broken.write_bytes(data[: len(data) // 2])
    r = run_cli("data", "check", str(broken))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "broken.parquet" in r.stderr and "datasets cannot read" in r.stderr
