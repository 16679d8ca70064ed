"""Stop requests: the first SIGINT/SIGTERM asks a training run to stop at its next loss read (within ten steps)."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

log = logging.getLogger(__name__)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[Callable[[], str | None]]:
    """Turn the first SIGINT/SIGTERM into a request to stop at the next loss read (within ten steps);
    a second aborts."""
    received: list[str] = []
    if threading.current_thread() is not threading.main_thread():
        yield lambda: None  # signal handlers can only be installed from the main thread
        return

    def handler(signum: int, frame: Any) -> None:
        if received:
            raise KeyboardInterrupt
        received.append(signal.Signals(signum).name)
        log.warning("%s received: stopping within ten steps, then saving last.pt (send again to abort)", received[0])

    with _handling(handler):
        yield lambda: received[0] if received else None


@contextlib.contextmanager
def _handling(handler: Callable[[int, Any], None]) -> Iterator[None]:
    """``handler`` for SIGINT and SIGTERM inside the block; the previous handlers after it."""
    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM as an exception, so that every ``finally`` runs and half-written files are removed.

    Attributes:
        signal_name: ``SIGINT`` or ``SIGTERM``.
        exit_code: 128 + the signal number (130, 143), what a shell reports for a process the signal ended.
        kept: What was kept, for the one ``error:`` line (a workflow may say more than the default).
    """

    def __init__(self, signal_name: str, kept: str = "") -> None:
        super().__init__(signal_name)
        self.signal_name = signal_name
        self.exit_code = 128 + int(signal.Signals[signal_name])
        self.kept = kept or "files being written were removed; every file already complete is kept"

    def __str__(self) -> str:
        return f"stopped by {self.signal_name}; {self.kept}"


@contextlib.contextmanager
def raise_on_signals() -> Iterator[None]:
    """Raise :class:`Interrupted` on SIGINT/SIGTERM (main thread only); the previous handlers come back after.

    Without it SIGTERM ends the process at once: no message, and the temporary file of a write in progress
    stays. Training's :func:`stop_on_signals` takes over inside the epoch loop.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise Interrupted(signal.Signals(signum).name)

    with _handling(handler):
        yield


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM back for a step that must not stop half done (e.g. swapping two folders); a
    signal received meanwhile is raised again after it, for the handlers that were in place."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    with _handling(lambda signum, frame: received.append(signum)):
        yield
    for signum in received[:1]:
        signal.raise_signal(signum)
