"""Windows over a large image or raster: the grid the tiled detection and
the chip cutter share.

:func:`tile_windows` cuts a width x height image into windows of ``tile``
px overlapping by ``overlap`` (a fraction of ``tile`` when < 1, else px),
the last row / column shifted to end at the image's edge.
"""
from typing import List, NamedTuple

__all__ = ['Window', 'tile_starts', 'tile_windows']


class Window(NamedTuple):
    """A window ``[x0, x1) x [y0, y1)`` of the image, in pixels."""
    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0


def tile_starts(length: int, tile: int, stride: int) -> List[int]:
    """Start offsets of windows of size ``tile`` along an axis of
    ``length`` px, ``stride`` apart, the last one ending at ``length``.

    One window starting at 0 when ``length <= tile``.
    """
    if tile <= 0 or stride <= 0:
        raise ValueError(f'tile ({tile}) and stride ({stride}) must be > 0')
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return starts


def tile_windows(width: int, height: int, tile: int,
                 overlap: float = 0.25) -> List[Window]:
    """Overlapping windows that cover a ``width`` x ``height`` image.

    Args:
        width, height (int): image size in px.
        tile (int): window side in px. A window is never larger than the
            image: an image no larger than ``tile`` is one window, itself.
        overlap (float): overlap of neighbouring windows, as a fraction of
            ``tile`` (``0 <= overlap < 1``) or, if ``>= 1``, in px
            (``< tile``).

    Returns:
        list[Window]: row by row, left to right.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f'image size must be positive, got {width}x{height}')
    if tile <= 0:
        raise ValueError(f'tile must be a positive size in px, got {tile}')
    overlap_px = overlap * tile if overlap < 1 else overlap
    if overlap < 0 or overlap_px >= tile:
        raise ValueError(
            f'overlap={overlap} must be a fraction in [0, 1) of the tile or '
            f'a number of px below the tile size ({tile})')
    stride = max(1, int(round(tile - overlap_px)))
    xs = tile_starts(width, tile, stride)
    ys = tile_starts(height, tile, stride)
    return [
        Window(x, y, min(x + tile, width), min(y + tile, height)) for y in ys
        for x in xs
    ]
