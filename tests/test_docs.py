"""The documents name only files that the repository has."""

from __future__ import annotations

import asyncio
import inspect
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FILE_NAME = re.compile(r"`([A-Za-z0-9_./-]+\.(?:txt|md|toml|py|sql))`")


@pytest.mark.parametrize(
    "document", ["docs/API.md", "docs/testing.md", "docs/deploying.md", "README.md"]
)
def test_every_file_a_document_names_exists(document: str) -> None:
    path = ROOT / document
    named = FILE_NAME.findall(path.read_text(encoding="utf-8"))
    missing = [n for n in named if not (path.parent / n).exists() and not (ROOT / n).exists()]
    assert missing == [], f"{document} names files the repository does not have: {missing}"


def test_every_public_name_is_in_the_contract() -> None:
    import treadle

    contract = (ROOT / "docs" / "API.md").read_text(encoding="utf-8")
    missing = [n for n in treadle.__all__ if not re.search(rf"\b{re.escape(n)}\b", contract)]
    assert missing == [], f"docs/API.md does not document {missing}"


def test_the_examples_of_the_testing_page_pass_as_tests() -> None:
    """docs/testing.md's code blocks, run in order in one namespace: each block's ``test_*``
    functions are run as the tests they show."""
    text = (ROOT / "docs" / "testing.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) >= 4, "the testing page lost its examples"
    namespace: dict[str, object] = {"__name__": "testing_page"}
    ran: list[str] = []
    for block in blocks:
        before = set(namespace)
        exec(compile(block, "docs/testing.md", "exec"), namespace)
        for name in sorted(set(namespace) - before):
            test = namespace[name]
            if name.startswith("test_") and inspect.iscoroutinefunction(test):
                asyncio.run(test())
                ran.append(name)
    assert len(ran) >= 5, ran
