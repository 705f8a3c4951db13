"""The one rule that says whether a box can be trained on.

Used by ``mmretina.CocoDataset`` when it loads an annotation file and by the
converters (``mmretina.datasets.converters``) when they write one, so a box
the converter writes is a box the dataset keeps.

Boxes are ``(x1, y1, x2, y2)`` in continuous pixel coordinates of the image:
the image spans ``[0, width] x [0, height]``.

The rule, in order:

1. a coordinate that is NaN or inf: :data:`NON_FINITE`;
2. ``x2 <= x1`` or ``y2 <= y1``: :data:`NOT_POSITIVE`;
3. nothing left after clipping to the image: :data:`OUTSIDE`;
4. a side below ``min_side`` (mmdet's ``w < 1 or h < 1`` rule; measured on
   the part inside the image when clipping): :data:`TOO_SMALL`;
5. otherwise kept: :data:`CLIPPED` if clipping changed it, else :data:`KEPT`.
"""
from typing import Optional, Sequence, Tuple

import numpy as np

__all__ = [
    'NON_FINITE', 'NOT_POSITIVE', 'OUTSIDE', 'TOO_SMALL', 'CLIPPED', 'KEPT',
    'DROPPED', 'MIN_SIDE', 'box_verdicts', 'check_box'
]

NON_FINITE = 'with NaN or inf coordinates'
NOT_POSITIVE = 'with zero or negative width/height'
OUTSIDE = 'entirely outside the image'
TOO_SMALL = 'less than 1 pixel wide or high inside the image'
CLIPPED = 'partly outside the image (clipped to it, kept)'
KEPT = 'kept'
# verdicts whose box is not trained on
DROPPED = (NON_FINITE, NOT_POSITIVE, OUTSIDE, TOO_SMALL)
# mmdet's CocoDataset drops boxes with a side below 1 px
MIN_SIDE = 1.0

_ORDER = (KEPT, CLIPPED, NON_FINITE, NOT_POSITIVE, OUTSIDE, TOO_SMALL)


def box_verdicts(boxes: np.ndarray,
                 width: float,
                 height: float,
                 clip: bool = True,
                 min_side: float = MIN_SIDE
                 ) -> Tuple[np.ndarray, np.ndarray]:
    """Apply the rule to many boxes of one image.

    Args:
        boxes (array-like): N x 4, ``(x1, y1, x2, y2)`` in pixels of the
            image.
        width, height (float): image size in pixels.
        clip (bool): clip boxes to the image (the returned boxes are
            clipped, and ``min_side`` is measured inside the image); without
            it, boxes keep their coordinates and ``min_side`` is measured on
            the whole box.
        min_side (float): the smallest side kept, in pixels.

    Returns:
        tuple: ``(boxes, verdicts)``: N x 4 float64 boxes (clipped where
        ``clip``) and N verdict strings (one of :data:`KEPT`,
        :data:`CLIPPED` or the reasons in :data:`DROPPED`).
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    with np.errstate(invalid='ignore'):
        finite = np.isfinite(b).all(axis=1)
        positive = finite & (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])
        c = b.copy()
        c[:, 0::2] = np.clip(b[:, 0::2], 0, width)
        c[:, 1::2] = np.clip(b[:, 1::2], 0, height)
        inside = positive & (c[:, 2] > c[:, 0]) & (c[:, 3] > c[:, 1])
        sides = c if clip else b
        big = inside & (sides[:, 2] - sides[:, 0] >= min_side) & (
            sides[:, 3] - sides[:, 1] >= min_side)
        changed = big & (c != b).any(axis=1)
    code = np.select(
        [~finite, ~positive, ~inside, ~big, changed & clip],
        [2, 3, 4, 5, 1], default=0)
    verdicts = np.array(_ORDER, dtype=object)[code]
    return (c if clip else b), verdicts


def check_box(box: Sequence[float],
              width: float,
              height: float,
              clip: bool = True,
              min_side: float = MIN_SIDE
              ) -> Tuple[str, Optional[Tuple[float, float, float, float]]]:
    """:func:`box_verdicts` for one box.

    Returns:
        tuple: ``(verdict, box)``; ``box`` is ``(x1, y1, x2, y2)`` (clipped
        where ``clip``) or None when the verdict is in :data:`DROPPED`.
    """
    out, verdicts = box_verdicts([box], width, height, clip, min_side)
    verdict = verdicts[0]
    if verdict in DROPPED:
        return verdict, None
    return verdict, tuple(float(v) for v in out[0])
