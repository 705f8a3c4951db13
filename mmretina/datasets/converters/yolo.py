"""The YOLO txt reader: per image a ``<stem>.txt`` of ``class cx cy w h``
lines, fractions of the image width / height; an image without a label
file is an image without objects. Boxes stay normalised (``extra['yolo']``)
until :func:`~mmretina.datasets.converters.convert.finish_boxes` knows the
image size."""
import os.path as osp
from collections import Counter
from typing import List, Sequence

import numpy as np
from mmengine.utils import scandir

from .records import (IMAGE_EXTS, Box, ConversionError, ImageRecord,
                      list_images, read_lines, where)

__all__ = ['load_yolo_names', 'load_yolo']


def load_yolo_names(path: str) -> List[str]:
    """Class names: one per line, or a YAML with ``names`` (a list, or a
    dict of id -> name as in YOLO's data.yaml)."""
    if path.endswith(('.yaml', '.yml')):
        import yaml
        try:
            with open(path) as f:
                data = yaml.safe_load(f)
        except (OSError, yaml.YAMLError) as e:
            raise ConversionError(f'{path}: cannot read ({e}).') from None
        names = (data or {}).get('names') if isinstance(data, dict) else None
        if isinstance(names, dict):
            ids = sorted(int(k) for k in names)
            if ids != list(range(len(ids))):
                raise ConversionError(
                    f'{path}: names ids are {ids}, expected '
                    f'0..{len(ids) - 1}.')
            names = [names[k] for k in sorted(names, key=int)]
        if not isinstance(names, list) or not names:
            raise ConversionError(f'{path}: no "names:" list in the YAML.')
        return [str(n) for n in names]
    names = [s for _, s in read_lines(path)]
    if not names:
        raise ConversionError(f'{path}: no class names (one per line).')
    dup = [n for n, c in Counter(names).items() if c > 1]
    if dup:
        raise ConversionError(f'{path}: class name(s) listed twice: {dup}.')
    return names


def load_yolo(img_dir: str, label_dir: str,
              names: Sequence[str]) -> List[ImageRecord]:
    """One record per image of ``img_dir``; labels from
    ``label_dir/<same relative path>.txt``."""
    images = list_images(img_dir)
    if not images:
        raise ConversionError(f'--img-dir {img_dir!r} holds no image '
                              f'({", ".join(IMAGE_EXTS)}).')
    if not osp.isdir(label_dir):
        raise ConversionError(
            f'--label-dir {label_dir!r} is not a directory.')
    by_stem = {osp.splitext(p)[0]: p for p in images}
    records = []
    for rel in images:
        txt = osp.join(label_dir, osp.splitext(rel)[0] + '.txt')
        rec = ImageRecord(rel, txt if osp.isfile(txt) else img_dir)
        records.append(rec)
        if not osp.isfile(txt):
            continue  # YOLO: no label file = no objects
        for line, text in read_lines(txt):
            parts = text.split()
            if len(parts) != 5:
                raise ConversionError(
                    f'{where(txt, line)}: {len(parts)} values, expected 5 '
                    '(class cx cy w h; segmentation polygons are not '
                    'supported).')
            try:
                cls = int(parts[0])
                cx, cy, w, h = (float(v) for v in parts[1:])
            except ValueError:
                raise ConversionError(
                    f'{where(txt, line)}: {text!r} is not '
                    '"class cx cy w h" (an integer and 4 numbers).') from None
            if not 0 <= cls < len(names):
                raise ConversionError(
                    f'{where(txt, line)}: class {cls} is not in the names '
                    f'file ({len(names)} names, ids 0..{len(names) - 1}).')
            if not all(np.isfinite(v) for v in (cx, cy, w, h)):
                raise ConversionError(
                    f'{where(txt, line)}: {text!r} has a non-finite value.')
            rec.boxes.append(Box(cx, cy, w, h, names[cls], txt, line,
                                 extra=dict(yolo=text)))
    stray = [osp.join(label_dir, f)
             for f in scandir(label_dir, '.txt', recursive=True)
             if osp.basename(f) != 'classes.txt'
             and osp.splitext(f)[0] not in by_stem]
    if stray:
        raise ConversionError(
            f'{sorted(stray)[0]}: label file without an image in --img-dir '
            f'{img_dir!r} ({len(stray)} such file(s)).')
    return records
