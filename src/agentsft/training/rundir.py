"""The run directory: where one training run keeps everything, and how a stopped run is
cleaned up to continue from its last complete checkpoint.

    RUN_DIR/config.yaml       the resolved config (secrets redacted)
            checkpoints/      checkpoint-N, complete ones only (written under a temporary name)
            final/  best/     the trained adapter or model, tokenizer, agentsft.json
            metrics.jsonl     one line per log, validation and tool evaluation
            best.json  loss.png  tensorboard/
            tokenized/        the data's token rows (Arrow), reused on resume
            data_mix.json     how much of each source was trained on
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentsft.config import Config, save
from agentsft.errors import AgentsftError
from agentsft.files import write_text_atomically
from agentsft.hub import is_main, say

CHECKPOINT = "checkpoint-"
TRAINER_FILES = ("optimizer.pt", "scheduler.pt", "scaler.pt", "trainer_state.json",
                 "training_args.bin")  # in checkpoints, not needed to use the model


@dataclass(frozen=True)
class RunDir:
    """Where one training run keeps everything."""

    root: Path

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def final(self) -> Path:
        return self.root / "final"

    @property
    def best(self) -> Path:
        return self.root / "best"

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def best_record(self) -> Path:
        return self.root / "best.json"

    @property
    def plot(self) -> Path:
        return self.root / "loss.png"

    @property
    def tensorboard(self) -> Path:
        return self.root / "tensorboard"

    @property
    def tokenized(self) -> Path:
        return self.root / "tokenized"

    def last_checkpoint(self) -> Path | None:
        """The newest complete checkpoint (only complete ones carry the final name)."""
        steps = checkpoint_steps(self.checkpoints)
        return self.checkpoints / f"{CHECKPOINT}{steps[-1]}" if steps else None


def checkpoint_steps(folder: Path) -> list[int]:
    if not folder.is_dir():
        return []
    return sorted(int(p.name[len(CHECKPOINT):]) for p in folder.iterdir()
                  if p.is_dir() and p.name.startswith(CHECKPOINT) and p.name[len(CHECKPOINT):].isdigit())


def read_best(run: RunDir) -> dict[str, Any] | None:
    try:
        return json.loads(run.best_record.read_text())
    except (OSError, ValueError):
        return None


def clean_for_resume(run: RunDir, step: int) -> None:
    """Remove what a killed run leaves behind past its last complete checkpoint."""
    for tmp in run.checkpoints.glob(f".tmp-{CHECKPOINT}*"):  # a checkpoint write that was killed
        shutil.rmtree(tmp, ignore_errors=True)
    for tmp in run.root.glob(".*.*"):  # half-written final/, best/, plot, records
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
    best = read_best(run)
    if best is not None and (best["step"] > step or not math.isfinite(best["value"])):
        run.best_record.unlink()  # measured after the checkpoint: those steps run again
    trim_metrics(run, step)


def checkpoint_step(path: Path | None) -> int:
    return int(path.name[len(CHECKPOINT):]) if path else 0


def trim_metrics(run: RunDir, step: int) -> None:
    """On resume, forget log lines past the checkpoint: those steps run again."""
    if not run.metrics.exists():
        return
    kept = []
    for line in run.metrics.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= step:
                kept.append(line)
        except (ValueError, KeyError, TypeError):
            continue  # a line cut short by the kill
    write_text_atomically(run.metrics, "".join(line + "\n" for line in kept))


def open_run(output: str, resume: bool) -> tuple[RunDir, Path | None]:
    """The run directory and the checkpoint to resume from (None: from the start). A new
    run may not reuse a folder that holds one; a resumed run is cleaned up first."""
    if not output:
        raise AgentsftError("no run directory. Fix: pass --output runs/NAME (or set training.output)")
    run = RunDir(Path(output))
    if run.root.exists() and not run.root.is_dir():
        raise AgentsftError(f"--output {run.root} is a file. Fix: choose a folder name")
    if not resume:
        if run.config.exists():
            raise AgentsftError(f"{run.root} already holds a run. Fix: --resume {run.root} to "
                                f"continue it, or choose another --output")
        return run, None
    start = run.last_checkpoint()
    say(f"resuming from {start}" if start else f"no complete checkpoint in {run.root} yet; "
        "starting over")
    if is_main():
        clean_for_resume(run, checkpoint_step(start))
    return run, start


def create(run: RunDir, cfg: Config) -> None:
    """The run directory with its resolved config (main process only)."""
    if not is_main():
        return
    try:
        run.root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise AgentsftError(f"cannot create the run directory {run.root} ({e.strerror}). "
                            f"Fix: choose another --output") from None
    save(cfg, run.config)
