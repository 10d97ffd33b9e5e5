"""The README's example runs as written and its run completes."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_the_readme_example_runs_to_completion(tmp_path: Path) -> None:
    text = README.read_text(encoding="utf-8")
    found = re.search(r"## A workflow in a minute\n\n```python\n(.*?)```", text, re.S)
    assert found, "the README lost its example"
    script = tmp_path / "example.py"
    script.write_text(found.group(1), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "status=<Status.COMPLETED" in result.stdout
