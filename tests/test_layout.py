"""The house rules that keep the package readable: imports run one way (import-linter's
contracts in pyproject.toml), no module over 400 lines, short functions, and a public API
that says what it is."""

from __future__ import annotations

import ast
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

SRC = ROOT / "src" / "agentsft"
MAX_LINES = 400
MAX_MEDIAN_FUNCTION = 15


def lint_imports(cwd: Path, package_parent: Path) -> subprocess.CompletedProcess:
    command = Path(sys.executable).parent / "lint-imports"
    return subprocess.run([str(command), "--config", str(cwd / "pyproject.toml"), "--no-cache"],
                          cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(package_parent), "PATH": "/usr/bin:/bin"})


def test_the_import_contracts_hold():
    r = lint_imports(ROOT, ROOT / "src")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "3 kept, 0 broken" in r.stdout


def lint_with(tmp_path: Path, module: str, code: str) -> subprocess.CompletedProcess:
    """lint-imports over a copy of the package with ``code`` appended to ``module``."""
    shutil.copytree(SRC, tmp_path / "agentsft")
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    with open(tmp_path / "agentsft" / module, "a") as f:
        f.write(code)
    return lint_imports(tmp_path, tmp_path)


def test_an_upward_import_hidden_in_a_function_breaks_the_layers(tmp_path):
    r = lint_with(tmp_path, "data/schema.py",
                  "\n\ndef planted():\n    from agentsft.training import train\n    return train\n")
    assert r.returncode == 1
    assert "agentsft.data.schema -> agentsft.training" in r.stdout
    assert "Layers: imports run one way, bottom to top BROKEN" in r.stdout


def test_reaching_past_the_accel_entry_points_breaks_a_contract(tmp_path):
    r = lint_with(tmp_path, "inference/engine.py",
                  "\nfrom agentsft.accel.caches import new_cache  # noqa\n")
    assert r.returncode == 1 and "accel.inference BROKEN" in r.stdout


def sources() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def functions(path: Path) -> list[tuple[str, int]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [(f"{path.relative_to(SRC)}:{node.name}", node.end_lineno - node.lineno + 1)
            for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]


def test_no_module_is_over_400_lines():
    long = {str(p.relative_to(SRC)): n for p in sources()
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"split these modules: {long}"


def test_the_median_function_stays_short():
    lengths = [n for p in sources() for _, n in functions(p)]
    assert len(lengths) > 300  # the walk found the package's functions
    assert statistics.median(lengths) <= MAX_MEDIAN_FUNCTION


def test_the_public_api_is_explicit_typed_and_documented():
    import inspect

    import agentsft
    assert (SRC / "py.typed").is_file()
    assert agentsft.__all__ == sorted(agentsft._EXPORTS)  # the list is the lazy table
    assert set(agentsft.__all__) <= set(dir(agentsft))
    tree = ast.parse((SRC / "__init__.py").read_text(encoding="utf-8"))
    checked = next(n for n in tree.body if isinstance(n, ast.If)
                   and getattr(n.test, "id", "") == "TYPE_CHECKING")
    seen = {a.asname or a.name for node in checked.body for a in node.names}
    assert seen == set(agentsft.__all__)  # every export visible to type checkers
    for name in agentsft.__all__:
        value = getattr(agentsft, name)
        own = value.__dict__.get("__doc__") if inspect.isclass(value) else value.__doc__
        assert own and not own.startswith(f"{name}("), f"{name} has no docstring"
    for verb in ("train", "load_config", "load_generator", "evaluate", "Config"):
        assert verb in agentsft.__all__
