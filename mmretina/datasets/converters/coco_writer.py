"""The COCO writer: images and ``(x1, y1, x2, y2)`` pixel boxes in, a COCO
detection dict (boxes ``[x, y, w, h]``) out, written atomically."""
import json
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence

import numpy as np

from .records import ImageRecord

__all__ = ['CocoWriter', 'to_coco_dict', 'write_json']


class CocoWriter:
    """Accumulates images and boxes into a COCO detection dict.

    Args:
        categories (list[dict]): COCO categories (``id``, ``name``, ...).
        decimals (int): box and area values are rounded to this many
            decimals (keeps the json small; pixels need no more).
    """

    def __init__(self, categories: Sequence[dict], decimals: int = 3):
        self.categories = [dict(c) for c in categories]
        self.decimals = decimals
        self.images: List[dict] = []
        self.annotations: List[dict] = []

    def add_image(self,
                  file_name: str,
                  width: int,
                  height: int,
                  boxes,
                  category_ids: Optional[Sequence[int]] = None) -> int:
        """Add one image and its boxes; returns the image id (1, 2, ...).

        Args:
            boxes (array-like): N x 4, ``(x1, y1, x2, y2)`` in continuous
                pixels of the image.
            category_ids (list[int], optional): N category ids; default: all
                the first category's.
        """
        img_id = len(self.images) + 1
        self.images.append(dict(id=img_id, file_name=file_name,
                                width=int(width), height=int(height)))
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        if category_ids is None:
            category_ids = [self.categories[0]['id']] * len(boxes)
        d = self.decimals
        for b, cat in zip(boxes, category_ids):
            x1, y1 = float(b[0]), float(b[1])
            w, h = float(b[2] - b[0]), float(b[3] - b[1])
            self.annotations.append(dict(
                id=len(self.annotations) + 1, image_id=img_id,
                category_id=int(cat),
                bbox=[round(x1, d), round(y1, d), round(w, d), round(h, d)],
                area=round(w * h, d), iscrowd=0))
        return img_id

    def to_dict(self, **extra) -> dict:
        """The COCO dict; ``extra`` keys (e.g. ``info``, ``licenses``) come
        first."""
        return dict(**extra, images=self.images,
                    annotations=self.annotations,
                    categories=self.categories)


def to_coco_dict(records: List[ImageRecord], classes: List[str]) -> dict:
    """Records (sizes known, boxes in pixels) -> COCO dict with categories
    ``1..K`` in the order of ``classes``."""
    cat_id: Dict[str, int] = {n: i + 1 for i, n in enumerate(classes)}
    writer = CocoWriter([dict(id=i, name=n) for n, i in cat_id.items()])
    for rec in records:
        writer.add_image(rec.file_name, rec.width, rec.height,
                         [(b.x1, b.y1, b.x2, b.y2) for b in rec.boxes],
                         [cat_id[b.label] for b in rec.boxes])
    return writer.to_dict()


def write_json(coco: dict, path: str) -> None:
    """Write ``coco`` to ``path`` through a temporary file, so a reader
    never sees half a file."""
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    tmp = osp.join(osp.dirname(osp.abspath(path)),
                   f'.{osp.basename(path)}.tmp')
    with open(tmp, 'w') as f:
        json.dump(coco, f)
    os.replace(tmp, path)
