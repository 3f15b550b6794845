"""Layout guards: platform/ is never a package, and the stdlib `platform` module stays intact."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_platform_is_not_a_package() -> None:
    assert not (ROOT / "platform" / "__init__.py").exists(), (
        "platform/__init__.py shadows the stdlib `platform` module that ray and torch import"
    )


def test_stdlib_platform_works_from_repo_root() -> None:
    code = "import platform, sys; print(platform.system()); assert platform.__file__.endswith('platform.py')"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip()


@pytest.mark.parametrize("name", ["platform", "jobs", "serve", "storage", "configs", "tests", "bench"])
def test_required_top_level(name: str) -> None:
    assert (ROOT / name).is_dir()


def test_library_never_imports_entry_folders() -> None:
    entry_import = re.compile(r"^\s*(import|from)\s+(jobs|serve|storage)\b", re.MULTILINE)
    for path in (ROOT / "platform" / "med3dinsight").rglob("*.py"):
        match = entry_import.search(path.read_text())
        assert match is None, f"{path} imports {match.group(2) if match else ''}: the library must not"
