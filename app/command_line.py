"""What every `packwise` command shares: the --config/--set options, loading the configuration, and the
one-line error a user's mistake prints (exit code 2, no traceback).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import typer
from rich.console import Console
from rich.text import Text

from packwise.config import PackwiseConfig
from packwise.errors import PackwiseError
from packwise_app.configuration import load_config

err_console = Console(stderr=True)

ConfigOpt = typer.Option(None, "--config", "-c", help="YAML config file; the embedded defaults when omitted.")
SetOpt = typer.Option(None, "--set", help="Override one key, e.g. --set split.train_ratio=0.7 (repeatable).")


def load(config: Path | None, overrides: list[str] | None, resolve: bool = True) -> PackwiseConfig:
    """The configuration a command runs with (plugins checked); `resolve` makes local paths absolute.

    The cluster commands keep the paths as written: they name locations inside the cluster's pods.
    """
    loaded = load_config(config, overrides or [])
    return loaded.resolved() if resolve else loaded


def fail(err: Exception) -> NoReturn:
    """Prints `error: <err>` on stderr and exits with code 2 (the message is printed as it is, no markup)."""
    err_console.print(Text.assemble(("error:", "red"), " ", str(err)), highlight=False, soft_wrap=True)
    raise typer.Exit(2)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turns a PackwiseError raised in the block into `fail(err)`."""
    try:
        yield
    except PackwiseError as err:
        fail(err)
