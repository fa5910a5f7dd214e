"""Writes that matter are atomic: built under a temporary name, then renamed into place."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from agentsft.errors import AgentsftError


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one step."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as e:
        raise AgentsftError(f"{path}: cannot write there ({e.strerror}). "
                            f"Fix: choose a folder you can write to") from None
    os.close(fd)
    try:
        yield Path(tmp)
        usual_permissions(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text_atomically(path: str | os.PathLike, text: str) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_folder_atomically(target: Path, fill: Callable[[Path], None]) -> Path:
    """Build a folder with ``fill(tmp_folder)`` and rename it to ``target`` in one step.

    If another process created ``target`` meanwhile, its copy is kept.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        fill(tmp)
        usual_permissions(tmp)
        try:
            os.rename(tmp, target)
        except OSError:
            if not target.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def replace_folder(target: Path, fill: Callable[[Path], None]) -> Path:
    """Like :func:`write_folder_atomically`, but an existing ``target`` is swapped out only
    once the new folder is complete."""
    if not target.exists():
        return write_folder_atomically(target, fill)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    old = target.with_name(f".{target.name}.old")
    try:
        fill(tmp)
        usual_permissions(tmp)
        shutil.rmtree(old, ignore_errors=True)
        os.rename(target, old)
        os.rename(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return target


def usual_permissions(path: Path) -> None:
    """``path`` (and a folder's contents) readable as a plain write would leave it: mkstemp
    and mkdtemp make their files private, and a rename keeps that."""
    umask = os.umask(0)
    os.umask(umask)
    for p in [path, *(path.rglob("*") if path.is_dir() else ())]:
        p.chmod((0o777 if p.is_dir() else 0o666) & ~umask)
