"""Deterministic fault injection: a kill -9, a full disk or a read-only folder at the N-th file-system step.

Every Python-level call that changes files (open for writing, safetensors and torch saves, mkdir,
rename/replace, the atomic folder swap, unlink, rmtree, copy, link) whose path lies under `root` is
one step. `steps()` runs an operation once to count and name them; `run()` runs it again in a forked
child with a fault at step k:

- "kill": the child calls os._exit at that step, before it happens: no finally, no cleanup, exactly
  what SIGKILL leaves on disk (so killing at step k+1 is "killed right after step k");
- "enospc" / "erofs": that step raises OSError(ENOSPC) or OSError(EROFS), as a full or read-only
  disk would; "erofs" fails that step and every later one (writes, mkdir, renames, deletes).

Forking keeps it fast (the child reuses the loaded model and imports) and isolates the parent: the
child's process state dies with it, and the caller checks what it left on disk.
"""
from __future__ import annotations

import builtins
import errno
import io
import json
import os
import shutil
from contextlib import ExitStack, contextmanager
from pathlib import Path
from unittest import mock

import accelerate.utils.other
import safetensors.torch
import torch

import tim.atomic

WRITES = {  # (module, attribute): index of the path argument
    (builtins, "open"): 0, (io, "open"): 0, (safetensors.torch, "save_file"): 1,
    (accelerate.utils.other, "safe_save_file"): 1, (torch, "save"): 1, (shutil, "copyfile"): 1,
    (shutil, "copy2"): 1, (os, "link"): 1,
}
CHANGES = {
    (os, "mkdir"): 0, (os, "replace"): 1, (os, "rename"): 1, (os, "unlink"): 0, (os, "remove"): 0,
    (os, "rmdir"): 0, (shutil, "rmtree"): 0, (tim.atomic, "_exchange"): 1,
}
KILLED = 137


def _is_write_mode(args, kwargs) -> bool:
    mode = kwargs.get("mode", args[1] if len(args) > 1 else "r")
    return isinstance(mode, str) and any(c in mode for c in "wax+")


class Injector:
    def __init__(self, root: Path, fault: str | None = None, at: int = 0):
        self.root, self.fault, self.at = str(Path(root).resolve()), fault, at
        self.steps: list[str] = []

    def _under_root(self, path) -> bool:
        if isinstance(path, int):
            return False
        try:
            return os.path.abspath(os.fspath(path)).startswith(self.root + os.sep)
        except TypeError:
            return False

    def wrap(self, module, name: str, index: int, writes: bool):
        original = getattr(module, name)

        def step(*args, **kwargs):
            path = args[index] if len(args) > index else next(iter(kwargs.values()), None)
            if name == "open" and not _is_write_mode(args, kwargs):
                return original(*args, **kwargs)
            if not self._under_root(path) or getattr(self, "_inside", False):
                return original(*args, **kwargs)
            self.steps.append(f"{name} {os.path.relpath(os.fspath(path), self.root)}")
            k = len(self.steps)
            if self.fault == "kill" and k == self.at:
                os._exit(KILLED)
            if (self.fault == "enospc" and writes and k == self.at) or (self.fault == "erofs" and k >= self.at):
                code = errno.ENOSPC if self.fault == "enospc" else errno.EROFS
                raise OSError(code, os.strerror(code), os.fspath(path))
            self._inside = True  # a step's own inner calls (copy2 -> copyfile -> open) are part of it
            try:
                return original(*args, **kwargs)
            finally:
                self._inside = False

        return step

    @contextmanager
    def active(self):
        with ExitStack() as stack:
            for table, writes in ((WRITES, True), (CHANGES, False)):
                for (module, name), index in table.items():
                    stack.enter_context(mock.patch.object(module, name, self.wrap(module, name, index, writes)))
            yield self


def is_write(step: str) -> bool:
    """Whether a step named by `steps()` writes data (where a full disk fails)."""
    return step.split()[0] in {name for _, name in WRITES}


def steps(operation, root: Path) -> list[str]:
    """The file-system steps `operation` takes under `root`, counted in a child (the parent's files stay as they are)."""
    outcome = run(operation, root, fault=None)
    assert outcome["error"] is None, outcome
    return outcome["steps"]


def run(operation, root: Path, fault: str | None, at: int = 0) -> dict:
    """Run `operation()` in a forked child with `fault` at step `at`: {"exit", "steps", "error", "message"}."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: run, report, and leave without running the parent's exit handlers
        os.close(read)
        torch.set_num_threads(1)
        injector = Injector(root, fault, at)
        report = {"error": None, "message": None}
        try:
            with injector.active():
                operation()
        except BaseException as e:  # noqa: BLE001 - reported to the parent
            from tim.errors import user_message

            report = {"error": f"{type(e).__name__}: {e}", "message": user_message(e)}
        report["steps"] = injector.steps
        with os.fdopen(write, "w") as f:
            json.dump(report, f)
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        text = f.read()
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code == KILLED:
        return {"exit": code, "steps": None, "error": None, "message": None}
    assert code == 0 and text, f"the child failed unexpectedly (exit {code})"
    return {"exit": code, **json.loads(text)}


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (relative path -> bytes), hidden ones included."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(Path(folder).rglob("*")) if p.is_file()}


def restore(backup: Path, root: Path) -> None:
    shutil.rmtree(root)
    shutil.copytree(backup, root, symlinks=True)
