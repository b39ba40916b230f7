"""Shared test fixtures: where ../shared is, and skipping with a reason when a file is absent."""
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def shared_dir() -> Path:
    return Path(os.environ.get("SPARSEBP_SHARED", REPO.parent / "shared"))


@pytest.fixture
def shared_file():
    """shared_file('models/...') -> Path, or skip naming the missing file."""
    def find(relative: str) -> Path:
        path = shared_dir() / relative
        if not path.exists():
            pytest.skip(f"{path} is absent (set SPARSEBP_SHARED to the shared folder)")
        return path
    return find
