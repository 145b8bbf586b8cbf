"""Write episodes from a background thread so compression overlaps env stepping.

gzip of image chunks cost ~8% of Atari collection time when done inline. h5py releases the
GIL while HDF5 writes (measured here: a busy main thread kept its full speed while another
thread wrote compressed chunks), so a writer thread takes that work off the env loop's core.
Only this thread touches the file while it runs. An episode is durable once the thread has
committed it, a few milliseconds after it finished; `flush()` waits for that.
"""
from __future__ import annotations

import os
import queue
import threading

from wmtool.data.episode import Episode
from wmtool.data.writer import EpisodeWriter

_STOP = object()
WRITER_NICENESS = 10


def _lower_priority(niceness: int) -> None:
    """Make this thread at least `niceness` nice: the env loop comes first. Never nicer to
    it than it already is: as root, setting 10 outright undid a `nice -n 15 wmtool ...`."""
    try:  # Linux: a thread id here sets that thread's niceness
        tid = threading.get_native_id()
        current = os.getpriority(os.PRIO_PROCESS, tid)
        if current < niceness:
            os.setpriority(os.PRIO_PROCESS, tid, niceness)
    except (AttributeError, OSError):
        pass


class BackgroundWriter:
    def __init__(self, writer: EpisodeWriter, max_pending: int = 64):
        self.writer = writer
        self._queue: queue.Queue = queue.Queue(max_pending)  # bounds memory held in flight
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="episode-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        _lower_priority(WRITER_NICENESS)
        while True:
            batch = [self._queue.get()]
            while not self._queue.empty():  # whatever piled up meanwhile: one commit
                batch.append(self._queue.get())
            stop = batch[-1] is _STOP
            episodes = [item for item in batch if item is not _STOP]
            try:
                if episodes and self._error is None:
                    self.writer.add_many(episodes)
            except BaseException as exc:  # reported to the caller on its next call
                self._error = exc
            finally:
                for _ in batch:
                    self._queue.task_done()
            if stop:
                return

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def add(self, episode: Episode) -> None:
        self._raise()
        self._queue.put(episode)

    def flush(self) -> None:
        self._queue.join()
        self._raise()

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join()
        self.writer.close()
        self._raise()

    @property
    def num_episodes(self) -> int:
        return self.writer.num_episodes

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
