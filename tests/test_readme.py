"""The README's Python examples run as written (those whose framework is installed)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_example(code, capsys):  # type: ignore[no-untyped-def]
    for module in re.findall(r"^import (\w+)", code, flags=re.M):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed")
    exec(compile(code, str(README), "exec"), {})
    out = capsys.readouterr().out
    for expected in re.findall(r"print\(.*\)  # (.+)", code):
        assert expected.strip() in out.replace("\n", " ") or expected.strip() in out, (expected, out)


def test_readme_has_exactly_the_two_commands():
    text = README.read_text()
    commands = re.findall(r"```bash\n(python3 -m pip install nox && python3 -m nox -s \w+)\n```", text)
    assert commands == ["python3 -m pip install nox && python3 -m nox -s parity",
                        "python3 -m pip install nox && python3 -m nox -s all"]


def test_porting_guide_examples():
    """docs/porting.md's ``>>>`` examples run as written (they use torch and Keras)."""
    import doctest

    for module in ("torch", "keras"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed")
    guide = README.parent / "docs" / "porting.md"
    result = doctest.testfile(str(guide), module_relative=False,
                              optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    assert result.attempted > 10
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {guide}"
