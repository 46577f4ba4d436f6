"""docs/testing.md's example is a test file an application would have: save it and run pytest on it,
as an application's CI would (in a directory of its own, with no jobq test configuration)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "testing.md"


def example() -> str:
    blocks = re.findall(r"^```python\n(.*?)^```", DOC.read_text(), flags=re.DOTALL | re.MULTILINE)
    found = [block for block in blocks if block.startswith("# test_reports.py")]
    assert len(found) == 1, "docs/testing.md has no single `# test_reports.py` example"
    return str(found[0])


def test_the_documented_example_passes(tmp_path: Path) -> None:
    (tmp_path / "test_reports.py").write_text(example())
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-W",
            "error",
            "-o",
            "asyncio_default_fixture_loop_scope=function",
            "test_reports.py",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 passed" in done.stdout, done.stdout
