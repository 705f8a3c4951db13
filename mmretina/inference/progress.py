"""Progress of long jobs on stderr: windows of a raster, rasters of a
folder, images of an evaluation.

On a terminal a tqdm bar (rate and time left); elsewhere (a log file, a
batch job, QGIS reading the output) plain lines, one at the start, one
each ``every_s`` seconds or each tenth of the work, and one at the end::

    [mmretina] OSBS_029.tif 1/3: 120/480 windows (25%), 3.2 windows/s,
    1m52s left
"""
import sys
import time
from typing import Optional, TextIO

__all__ = ['progress_bar', 'PlainProgress', 'format_seconds']


def format_seconds(s: float) -> str:
    """``125`` -> ``'2m05s'``, ``3725`` -> ``'1h02m'``."""
    s = int(round(s))
    if s < 60:
        return f'{s}s'
    if s < 3600:
        return f'{s // 60}m{s % 60:02d}s'
    return f'{s // 3600}h{s % 3600 // 60:02d}m'


class _NullBar:

    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


class PlainProgress:
    """Plain progress lines (see the module's docstring).

    Args:
        total (int): units of work.
        desc (str): what is worked on (``'OSBS_029.tif 1/3'``).
        unit (str): the unit's plural (``'windows'``).
        stream (file): where lines go (stderr).
        every_s (float): at least one line this often while working.
        clock (callable): seconds (tests give their own).
    """

    def __init__(self, total: int, desc: str, unit: str = 'windows',
                 stream: Optional[TextIO] = None, every_s: float = 30.0,
                 clock=time.monotonic) -> None:
        self.total, self.desc, self.unit = max(0, int(total)), desc, unit
        self.stream = stream or sys.stderr
        self.every_s, self.clock = every_s, clock
        self.done = 0
        self.start = self.last = clock()
        self._tenth = 0
        self._line(f'{self.done}/{self.total} {self.unit}')

    def _line(self, text: str) -> None:
        print(f'[mmretina] {self.desc}: {text}', file=self.stream,
              flush=True)

    def update(self, n: int = 1) -> None:
        self.done += n
        now = self.clock()
        tenth = 10 * self.done // self.total if self.total else 10
        if self.done >= self.total or tenth > self._tenth \
                or now - self.last >= self.every_s:
            self._tenth, self.last = tenth, now
            self._line(self.status(now))

    def status(self, now: float) -> str:
        """``'120/480 windows (25%), 3.2 windows/s, 1m52s left'``."""
        elapsed = max(now - self.start, 1e-9)
        rate = self.done / elapsed
        pct = 100 * self.done / self.total if self.total else 100
        text = (f'{self.done}/{self.total} {self.unit} ({pct:.0f}%), '
                f'{rate:.1f} {self.unit}/s')
        if self.done < self.total and rate > 0:
            text += f', {format_seconds((self.total - self.done) / rate)} ' \
                'left'
        else:
            text += f', {format_seconds(elapsed)}'
        return text

    def close(self) -> None:
        if self.done < self.total:
            self._line(self.status(self.clock()) + ' (stopped)')


def progress_bar(total: int, desc: str = 'tiles', enabled: bool = True,
                 unit: str = 'windows', stream: Optional[TextIO] = None):
    """Progress over ``total`` units on ``stream`` (stderr): a tqdm bar on
    a terminal, :class:`PlainProgress` lines elsewhere; a no-op when not
    ``enabled``. Both have ``update(n)`` and ``close()``."""
    if not enabled:
        return _NullBar()
    stream = stream or sys.stderr
    if getattr(stream, 'isatty', lambda: False)():
        try:
            from tqdm import tqdm
            return tqdm(total=total, desc=desc, unit=unit.rstrip('s'),
                        file=stream)
        except ImportError:
            pass
    return PlainProgress(total, desc, unit, stream)
