"""The production rehearsal's task sandbox: no kfp.local task may write to a local path another could read.

Python imports ``sitecustomize`` at start-up from the first ``sys.path`` entry holding one, so a process
started with this directory first on PYTHONPATH runs this file before anything else. The rehearsal sets
PYTHONPATH (and the variables below) only around its pipeline runs, after its servers started: the
kfp.local subprocess tasks inherit the environment, the servers do not. Without
``PACKWISE_SANDBOX_VIOLATIONS`` in the environment this module does nothing.

At start-up each process:

- makes a fresh private directory (under the TMPDIR it was given), chdirs into it and points TMPDIR,
  ``tempfile.tempdir`` and HOME there: the task starts in an empty working directory of its own;
- turns off ``.pyc`` writing (the source tree is shared);
- installs an audit hook (``sys.addaudithook``) that sees every ``open`` with a write, create, append or
  truncate flag, and ``os.mkdir``, ``os.rename``/``os.replace``, ``os.remove``, ``os.rmdir``,
  ``os.truncate``, ``os.symlink``, ``os.link``, ``shutil.rmtree``. A target outside the private
  directory, ``/dev`` and the roots listed in ``PACKWISE_SANDBOX_ALLOW`` (os.pathsep-separated: kfp.local's
  pipeline root, where a task writes its own outputs, the KFP artifact channel) is appended to the file
  ``PACKWISE_SANDBOX_VIOLATIONS`` names and refused with PermissionError naming the path, so the task, and
  with it the run, fails.

What it cannot see: writes made by native code without going through Python's I/O (a C++ library
opening a file itself, e.g. pyarrow's local file system) and by child processes that do not run Python.
"""

from __future__ import annotations

import os
import sys

VIOLATIONS_ENV = "PACKWISE_SANDBOX_VIOLATIONS"
ALLOW_ENV = "PACKWISE_SANDBOX_ALLOW"
PRIVATE_ENV = "PACKWISE_SANDBOX_PRIVATE_DIR"

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
# event -> indices of the arguments that are paths written (created, renamed, removed)
_PATH_EVENTS = {
    "os.mkdir": (0,),
    "os.rename": (0, 1),
    "os.remove": (0,),
    "os.rmdir": (0,),
    "os.truncate": (0,),
    "os.symlink": (1,),
    "os.link": (1,),
    "shutil.rmtree": (0,),
}


def _install() -> None:
    import tempfile

    log = os.environ[VIOLATIONS_ENV]
    base = os.environ.get("TMPDIR") or tempfile.gettempdir()
    private = os.path.realpath(tempfile.mkdtemp(prefix="task-", dir=base))
    os.chdir(private)
    os.environ["TMPDIR"] = private
    os.environ["HOME"] = private
    os.environ[PRIVATE_ENV] = private
    tempfile.tempdir = private
    sys.dont_write_bytecode = True

    allowed = [private, "/dev", *(os.path.realpath(p) for p in os.environ.get(ALLOW_ENV, "").split(os.pathsep) if p)]
    realpath, join, fspath, sep = os.path.realpath, os.path.join, os.fspath, os.sep
    busy = [False]

    def inside(path: str) -> bool:
        return any(path == root or path.startswith(root.rstrip(sep) + sep) for root in allowed)

    def check(target: object) -> None:
        if isinstance(target, int) or target is None:  # a file descriptor: its opening was checked
            return
        try:
            text = fspath(target)  # type: ignore[arg-type]
        except TypeError:
            return
        if isinstance(text, bytes):
            text = text.decode(errors="surrogateescape")
        absolute = realpath(join(os.getcwd(), text))
        if inside(absolute):
            return
        busy[0] = True
        try:
            with open(log, "a", encoding="utf-8") as out:  # the hook is off (busy) meanwhile
                out.write(f"{os.getpid()}\t{absolute}\n")
        finally:
            busy[0] = False
        raise PermissionError(f"task sandbox: write to the shared local path {absolute} refused (see {__file__})")

    def hook(event: str, args: tuple[object, ...]) -> None:
        if busy[0]:
            return
        if event == "open":
            flags = args[2] if len(args) > 2 else 0
            mode = args[1] if len(args) > 1 else None
            writes = isinstance(flags, int) and bool(flags & _WRITE_FLAGS)
            if not writes and isinstance(mode, str):
                writes = any(c in mode for c in "wax+")
            if writes:
                check(args[0])
            return
        indices = _PATH_EVENTS.get(event)
        if event == "os.mkdir" and args and isinstance(args[0], (str, bytes, os.PathLike)) and os.path.isdir(args[0]):
            return  # makedirs(exist_ok=True) on a directory that is there: nothing is written
        if indices is not None:
            for i in indices:
                if i < len(args):
                    check(args[i])

    sys.addaudithook(hook)


if os.environ.get(VIOLATIONS_ENV):
    _install()
