"""The documents name only files that the repository has."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FILE_NAME = re.compile(r"`([A-Za-z0-9_./-]+\.(?:txt|md|toml|py|sql))`")


@pytest.mark.parametrize("document", ["docs/API.md", "docs/deploying.md", "README.md"])
def test_every_file_a_document_names_exists(document: str) -> None:
    path = ROOT / document
    named = FILE_NAME.findall(path.read_text(encoding="utf-8"))
    missing = [n for n in named if not (path.parent / n).exists() and not (ROOT / n).exists()]
    assert missing == [], f"{document} names files the repository does not have: {missing}"
