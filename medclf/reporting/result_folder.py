"""A result set written as a whole (``validate``'s and ``compare``'s output folder).

The files are written into a hidden sibling folder (``.<name>.medclf-tmp-<pid>-<host>``) and only a
complete set takes the place of the previous one, so a reader never sees new ``metrics.json`` beside an
old ``report.html``, and a failed or interrupted command leaves the previous results untouched.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from medclf.engine.signals import Interrupted, signals_deferred
from medclf.errors import StorageError, describe_os_error
from medclf.reporting.files import make_folder, remove_created, remove_stale_temporaries, temporary_name, write_json

# The names of the entries of the result set in a folder, so that the next set replaces exactly these.
CONTENTS = ".medclf-results.json"


@contextlib.contextmanager
def new_result_set(out: str | os.PathLike, what: str = "the output folder") -> Iterator[Path]:
    """Yield a hidden folder beside ``out`` to write a result set into; once the body ends, it replaces
    the previous set in ``out``.

    When the body fails or SIGINT/SIGTERM stops it, the hidden folder is removed, ``out`` is left as it
    was, and the parent folders this call created are removed. Entries of ``out`` that are not part of
    the previous result set (a checkpoint, a user's notes) are kept.

    Raises:
        ConfigError: ``out`` or a parent is a file (from :func:`make_folder`).
        StorageError: the folders cannot be created.
        Interrupted: after SIGINT/SIGTERM, saying that the previous results are kept.
    """
    out = Path(out).resolve()  # a link to a folder: its target; ".": the current folder by its name
    if out.exists() or out.is_symlink():
        make_folder(out, what)  # a file there is refused; an existing folder is used
    created = make_folder(out.parent, what=f"the folder of {what} {out}")
    remove_stale_temporaries(out.parent)
    staging = out.parent / temporary_name(out.name)
    try:
        staging.mkdir()
    except OSError as e:
        remove_created(created)
        raise StorageError(f"cannot create {what} {out}: {describe_os_error(e)}; nothing was written") from None
    try:
        yield staging
    except BaseException as e:
        shutil.rmtree(staging, ignore_errors=True)
        remove_created(created)
        if isinstance(e, Interrupted):
            kept = f"the previous results in {out} are kept untouched" if out.is_dir() else f"{out} was not created"
            raise Interrupted(e.signal_name, f"no new results were written; {kept}") from None
        raise
    with signals_deferred():  # the swap is quick; a signal meanwhile takes effect after it
        _commit(staging, out)


def _commit(staging: Path, out: Path) -> None:
    """Put the set in ``staging`` in place of the previous one in ``out``."""
    write_json(staging / CONTENTS, sorted(p.name for p in staging.iterdir()))
    previous = _previous_set(out)
    if not out.is_dir():
        os.rename(staging, out)
    elif all(entry.name in previous for entry in out.iterdir()) and not Path.cwd().is_relative_to(out):
        aside = out.parent / temporary_name(out.name, kind="old")
        os.rename(out, aside)  # two renames: readers see the old set or the new one
        try:
            os.rename(staging, out)
        except OSError:
            os.rename(aside, out)
            raise
        shutil.rmtree(aside, ignore_errors=True)
    else:
        _replace_entries(staging, out, previous)


def _previous_set(out: Path) -> set[str]:
    """The entries of ``out`` that its result set wrote (empty for a folder without :data:`CONTENTS`)."""
    try:
        names = json.loads((out / CONTENTS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return set()
    return {str(n) for n in names if isinstance(n, str) and "/" not in n} | {CONTENTS}


def _replace_entries(staging: Path, out: Path, previous: set[str]) -> None:
    """``out`` holds more than a result set: swap the set's entries one by one and keep the others."""
    aside = out.parent / temporary_name(out.name, kind="old")
    aside.mkdir()
    new = {p.name for p in staging.iterdir()}
    for entry in out.iterdir():
        if entry.name in previous or entry.name in new:
            os.rename(entry, aside / entry.name)
    for name in new:
        os.rename(staging / name, out / name)
    staging.rmdir()
    shutil.rmtree(aside, ignore_errors=True)


__all__ = ["CONTENTS", "new_result_set"]
