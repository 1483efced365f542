"""Fixtures of the task tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import journal_app


@pytest.fixture
def runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The file where journal_app's tasks note each run."""
    path = tmp_path / "runs.txt"
    monkeypatch.setattr(journal_app, "RUNS", str(path))
    monkeypatch.setattr(journal_app, "GATE", None)
    monkeypatch.setattr(journal_app, "ATTEMPTS", {})
    return path
