"""Prints the hash of the source that goes into packwise-base (code, pyproject.toml, constraints.txt).

images/build-all.sh labels the base with it (`io.packwise.source`; component images inherit the label), and
tests/integration/test_images.py compares it with the working tree's, so images built from older code are
reported as stale instead of silently testing that older code. READMEs and caches do not count.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

LABEL = "io.packwise.source"
FILES = ("pyproject.toml", "constraints.txt")
TREES = ("src", "components", "pipelines", "app")


def source_files(root: Path) -> list[Path]:
    found = [root / name for name in FILES]
    for tree in TREES:
        for path in (root / tree).rglob("*"):
            parts = path.relative_to(root).parts
            if (
                path.is_file()
                and "__pycache__" not in parts
                and path.suffix != ".pyc"
                and not any(p.endswith(".egg-info") for p in parts)
            ):
                found.append(path)
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def source_hash(root: Path) -> str:
    digest = hashlib.sha256()
    for path in source_files(root):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:16]


if __name__ == "__main__":
    print(source_hash(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1]))
