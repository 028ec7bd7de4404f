"""What every `packwise` command shares: the --config/--set options, loading the configuration, and the
one-line error a user's mistake prints (exit code 2, no traceback).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.text import Text
from typer.core import TyperGroup

from packwise.config import PackwiseConfig
from packwise.errors import ConfigError, PackwiseError
from packwise_app.configuration import load_config

err_console = Console(stderr=True)

ConfigOpt = typer.Option(
    None, "--config", "-c", metavar="FILE", help="YAML config file; the embedded defaults when omitted."
)
SetOpt = typer.Option(
    None, "--set", metavar="KEY=VALUE", help="Override one key, e.g. --set split.train_ratio=0.7 (repeatable)."
)


class Runner(StrEnum):
    """Where a local run's tasks execute."""

    subprocess = "subprocess"
    docker = "docker"


class Mode(StrEnum):
    """What an inference run scores."""

    daily = "daily"
    monthly = "monthly"


RunnerOpt = typer.Option(
    Runner.subprocess, help="subprocess (this environment) or docker (the component images)."
)


def load(config: Path | None, overrides: list[str] | None, resolve: bool = True) -> PackwiseConfig:
    """The configuration a command runs with (plugins checked); `resolve` makes local paths absolute.

    The cluster commands keep the paths as written: they name locations inside the cluster's pods.
    """
    loaded = load_config(config, overrides or [])
    return loaded.resolved() if resolve else loaded


def check_package_type(config: PackwiseConfig, name: str, what: str) -> None:
    """ConfigError when `name` is not one of the config's package types (`what` names the argument)."""
    names = config.package_type_names
    if name in names:
        return
    close = difflib.get_close_matches(name, names, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ConfigError(f"{what}: {name!r} is not a configured type; configured: {', '.join(names)}{hint}")


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


class CleanHelpGroup(TyperGroup):
    """The root command group: on/off flags show no type in --help.

    typer 0.29 prints `<bool>` beside every flag (`--verbose <bool>`, `--help <bool>`), which reads as if
    the flag took a value; click's own convention is no metavar for a flag. Set on the root app, it covers
    every subcommand and sub-group (they are built before the root).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _clear_flag_metavars(self)

    def get_params(self, ctx: Any) -> list[Any]:
        params: list[Any] = super().get_params(ctx)  # the root's completion flags join only here
        _clear_metavars(params)
        return params


def _clear_flag_metavars(command: Any) -> None:
    help_option = command.get_help_option(typer.Context(command))
    _clear_metavars([*command.params, *([help_option] if help_option is not None else [])])
    for sub in getattr(command, "commands", {}).values():
        _clear_flag_metavars(sub)


def _clear_metavars(params: list[Any]) -> None:
    for param in params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
