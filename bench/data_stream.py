"""Reading data larger than memory: rows/s and peak memory of ``agentsft data check`` (read
and validate), ``agentsft data stats`` (read, render and tokenize) and the tokenizing that
training does (``tokenize``: every row streamed into the run's Arrow rows file, as
``agentsft train`` does before its first step) on a Parquet file of xLAM-layout rows (JSON
strings inside, as the corpus has them), each in its own process.

    python bench/data_stream.py                 # 1,000,000 rows
    python bench/data_stream.py --rows 100000

Figures go in bench/RESULTS.md. Nothing else should run meanwhile.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CITIES = ["Paris", "Rome", "Oslo", "Lima", "Kyiv", "Pune", "Cork", "Fez", "Riga", "Baku"]
PEAK = ("import resource, runpy, sys\nsys.argv = ['agentsft', *sys.argv[1:]]\ntry:\n"
        "    runpy.run_module('agentsft', run_name='__main__')\nfinally:\n"
        "    print('PEAK', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)")
TOKENIZE = ("import resource, sys\nfrom agentsft import config\n"
            "from agentsft.training.data import prepare_data, tokenizer_and_template\n"
            "cfg = config.load(flags={'data.train': [sys.argv[1]], 'training.output': sys.argv[2]})\n"
            "print(prepare_data(cfg, *tokenizer_and_template(cfg))[0].table.num_rows, 'rows')\n"
            "print('PEAK', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)")


def write_parquet(path: Path, rows: int, batch: int = 50_000) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq
    tools = json.dumps([{"name": "get_weather", "description": "Weather for a city.",
                         "parameters": {"city": {"type": "str", "description": "City."},
                                        "unit": {"type": "str, optional", "default": "celsius"}}}])
    writer = None
    for start in range(0, rows, batch):
        table = pa.Table.from_pylist([
            {"id": i, "query": f"What is the weather in {CITIES[i % 10]} today? (request {i})",
             "tools": tools,
             "answers": json.dumps([{"name": "get_weather", "arguments": {"city": CITIES[i % 10]}}])}
            for i in range(start, min(rows, start + batch))])
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
    writer.close()


def measure(*args: str, code: str = PEAK) -> tuple[float, float, str]:
    """Seconds, peak resident MB and stdout of ``agentsft ARGS`` (or of ``code``) in a fresh
    process."""
    start = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if r.returncode != 0:
        sys.exit(r.stderr[-2000:])
    return seconds, int(r.stderr.rsplit("PEAK", 1)[1]) / 1024, r.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--verbs", default="check,stats,tokenize",
                    help="which of check, stats, tokenize to run")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "xlam.parquet"
        write_parquet(path, args.rows)
        print(f"{args.rows:,} rows, {path.stat().st_size / 1e6:.1f} MB of Parquet")
        print("| verb | seconds | rows/s | peak memory |\n|---|---|---|---|")
        for verb in args.verbs.split(","):
            if verb == "tokenize":
                seconds, peak, out = measure(str(path), str(Path(tmp) / "run"), code=TOKENIZE)
            else:
                seconds, peak, out = measure("data", verb, str(path))
            name = "train (tokenize)" if verb == "tokenize" else f"data {verb}"
            print(f"| {name} | {seconds:.1f} | {args.rows / seconds:,.0f} | {peak:.0f} MB |  "
                  + out.strip().splitlines()[0])


if __name__ == "__main__":
    main()
