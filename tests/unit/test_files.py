"""packwise.files and packwise.errors.first_line: the one atomic write, sha256 and error line."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from packwise.errors import first_line
from packwise.files import atomic_write, publish_directory, sha256_file


def test_a_failed_write_leaves_the_previous_file_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "runs" / "r1.json"
    with atomic_write(path) as tmp:
        tmp.write_text("v1")
    assert path.read_text() == "v1"
    with pytest.raises(RuntimeError), atomic_write(path) as tmp:
        tmp.write_text("half of v2")
        raise RuntimeError("disk full")
    assert path.read_text() == "v1"
    assert sorted(p.name for p in path.parent.iterdir()) == ["r1.json"]


def test_nothing_is_visible_at_the_path_until_the_write_finishes(tmp_path: Path) -> None:
    path = tmp_path / "scores.parquet"
    with atomic_write(path) as tmp:
        tmp.write_bytes(b"partial")
        assert not path.exists()
        assert tmp.parent == path.parent  # a sibling: the rename never crosses file systems
    assert path.read_bytes() == b"partial"


def test_sha256_file_is_the_digest_of_the_bytes(tmp_path: Path) -> None:
    path = tmp_path / "products.parquet"
    data = bytes(range(256)) * 5000  # more than one 1 MiB chunk
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()


def test_publish_directory_keeps_the_winner_of_a_race(tmp_path: Path) -> None:
    final = tmp_path / "abc123"
    first, second = tmp_path / ".tmp-1", tmp_path / ".tmp-2"
    for tmp, text in ((first, "first"), (second, "second")):
        tmp.mkdir()
        (tmp / "manifest.json").write_text(text)
    publish_directory(first, final, "manifest.json")
    publish_directory(second, final, "manifest.json")  # same content address: theirs is as good
    assert (final / "manifest.json").read_text() == "first"
    assert second.exists()  # left for the caller to remove


def test_publish_directory_raises_when_the_target_is_not_a_published_copy(tmp_path: Path) -> None:
    final = tmp_path / "abc123"
    (final / "junk").mkdir(parents=True)
    tmp = tmp_path / ".tmp-1"
    tmp.mkdir()
    with pytest.raises(OSError):
        publish_directory(tmp, final, "manifest.json")


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ('Parser Error: near "FORM"\n\nLINE 1: SELECT * FORM x', 'Parser Error: near "FORM"'),
        ("\n  (sqlite3.Error)   unable to open\n(Background: x)", "(sqlite3.Error) unable to open"),
        ("", "ValueError"),
        ("x" * 500, "x" * 397 + "..."),
    ],
)
def test_first_line_of_an_error(message: str, expected: str) -> None:
    assert first_line(ValueError(message)) == expected
