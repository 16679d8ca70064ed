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

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield lambda: received[0] if received else None
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
