"""Replacing files and folders so that a killed process, a full disk or a read-only folder never leaves half of one.

Everything Tim writes for the user (checkpoints, exports, the training state, staged Spaces) is built
under a hidden name beside its destination and swapped in by `replace_folder`. No torch here, so the
light commands (space/deploy.py) use it too.
"""
from __future__ import annotations

import ctypes
import errno
import glob
import os
import shutil
import sys
from pathlib import Path


def replace_folder(new: Path, folder: Path) -> None:
    """Put the finished folder `new` in place of `folder`, so `folder` is never half-written or missing.

    On Linux the two folders swap in one atomic rename (RENAME_EXCHANGE): a process killed at any
    point leaves `folder` as the old version or the new one. Elsewhere `folder` is renamed aside
    first; a kill between the two renames leaves it under `.NAME.old*`, and `recover_folder` (run by
    the next save and before training resumes) puts it back.
    """
    new, folder = Path(new), Path(folder)
    recover_folder(folder, keep=new)
    if folder.exists() and _exchange(new, folder):
        shutil.rmtree(new)  # `new` now holds the old version
        return
    old = folder.with_name(f".{folder.name}.old{os.getpid()}")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        os.replace(folder, old)
    os.replace(new, folder)
    shutil.rmtree(old, ignore_errors=True)


def recover_folder(folder: Path, keep: Path | None = None, clean: bool = True) -> None:
    """Undo an interrupted `replace_folder`: bring back a folder left aside, drop leftover copies.

    Leftovers are `.NAME.old*` (set aside) and `.NAME.tmp*` (a copy being written, or an old version
    being deleted, when the process was killed); `keep` is the copy the caller is writing now. A reader
    (clean=False) only puts a folder back and deletes nothing.
    """
    folder = Path(folder)
    name = glob.escape(folder.name)
    aside = sorted(folder.parent.glob(f".{name}.old*"))
    if aside and not folder.exists():
        os.replace(aside.pop(), folder)
    if not clean:
        return
    for leftover in aside + sorted(folder.parent.glob(f".{name}.tmp*")):
        if keep is None or leftover != Path(keep):
            shutil.rmtree(leftover, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2 RENAME_EXCHANGE); False where that is not available."""
    if not sys.platform.startswith("linux") or os.environ.get("TIM_NO_RENAME_EXCHANGE"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    if not hasattr(libc, "renameat2"):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if libc.renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):  # a file system without exchange: rename instead
        return False
    raise OSError(err, os.strerror(err), str(b))


def write_text_atomically(path: Path, text: str) -> None:
    """Write a text file through a temporary file and a rename: a reader never sees half of it."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
