"""A daemon thread an app runs from start-up to shutdown: the WAL checkpointer, the mirror's
warm-up, the bootstrap key. One lifecycle for all: start (unless running, or no longer
needed), stop with an event the work watches, then join."""

import logging
import threading

logger = logging.getLogger("app")


class BackgroundThread:
    """Subclasses do their work in `run`, returning when `stop` is set, and may override
    `needed` to skip starting. An app may be started again (tests do): each start makes a
    fresh stop event and thread."""

    def __init__(self, name: str, *, stop_timeout: float | None = None) -> None:
        self._name = name
        self._stop_timeout = stop_timeout
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def needed(self) -> bool:
        return True

    def start(self) -> None:
        if not self.needed() or (self._thread is not None and self._thread.is_alive()):
            return
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self.run, args=(self._stop,), name=self._name, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is None:
            return
        self._thread.join(self._stop_timeout)
        if self._thread.is_alive():
            logger.warning("%s still running at shutdown", self._name)
        self._thread = None

    def run(self, stop: threading.Event) -> None:
        raise NotImplementedError
