"""Rewrites the configuration reference in README.md from the config model (`make docs`)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from packwise.config import config_reference

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(r"(<!-- config-reference:start -->\n).*?(<!-- config-reference:end -->)", re.S)


def render(text: str) -> str:
    return BLOCK.sub(lambda m: m.group(1) + config_reference() + "\n" + m.group(2), text)


if __name__ == "__main__":
    text = README.read_text()
    new = render(text)
    if "--check" in sys.argv:
        sys.exit(0 if new == text else "README.md's configuration reference is stale: run `make docs`")
    README.write_text(new)
