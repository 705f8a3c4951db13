"""The CSV reader: rows ``image_path,xmin,ymin,xmax,ymax,label`` (DeepForest
and many labelling tools). Coordinates are continuous 0-based pixels; a row
whose box is ``0,0,0,0`` (DeepForest's way of listing an image without
objects) adds the image with no box."""
import csv
import io
from collections import OrderedDict
from typing import List, Optional

import numpy as np

from .records import Box, ConversionError, ImageRecord, where

__all__ = ['CSV_COLUMNS', 'parse_csv', 'load_csv']

CSV_COLUMNS = ('image_path', 'xmin', 'ymin', 'xmax', 'ymax', 'label')


def parse_csv(text: str, path: str,
              default_label: Optional[str] = None) -> List[ImageRecord]:
    """CSV ``text`` (read from ``path``, named in messages) -> one
    :class:`ImageRecord` per image, in order of first appearance.

    A header with the :data:`CSV_COLUMNS` names (any order, extra columns
    allowed), or no header and this order. With ``default_label``, a header
    without ``label`` is accepted and an empty label takes this value.
    """
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        raise ConversionError(f'{path}: the file is empty.')
    header = [h.strip().lower() for h in rows[0]]
    need = CSV_COLUMNS if default_label is None else CSV_COLUMNS[:5]
    if set(need) <= set(header):
        cols = [header.index(c) if c in header else None
                for c in CSV_COLUMNS]
        start = 1
    elif 'image_path' in header or 'xmin' in header:
        missing = [c for c in need if c not in header]
        raise ConversionError(
            f'{where(path, 1)}: the header lacks the column(s) '
            f'{", ".join(missing)} (need {",".join(CSV_COLUMNS)}).')
    else:
        cols, start = list(range(6)), 0
    width = max(c for c in cols if c is not None)
    records: 'OrderedDict[str, ImageRecord]' = OrderedDict()
    for line, row in enumerate(rows[start:], start + 1):
        if not any(c.strip() for c in row):
            continue
        if len(row) <= width:
            raise ConversionError(
                f'{where(path, line)}: {len(row)} columns, expected '
                f'{",".join(CSV_COLUMNS)}.')
        image, *coords, label = (row[c].strip() if c is not None else ''
                                 for c in cols)
        label = label or default_label
        if not image:
            raise ConversionError(f'{where(path, line)}: empty image_path.')
        try:
            x1, y1, x2, y2 = (float(v) for v in coords)
        except ValueError:
            raise ConversionError(
                f'{where(path, line)}: xmin,ymin,xmax,ymax = '
                f'{",".join(coords)} are not all numbers.') from None
        if not all(np.isfinite(v) for v in (x1, y1, x2, y2)):
            raise ConversionError(
                f'{where(path, line)}: box {x1},{y1},{x2},{y2} is not '
                'finite.')
        rec = records.get(image)
        if rec is None:
            rec = records[image] = ImageRecord(image, path, line)
        if x1 == y1 == x2 == y2 == 0:
            continue  # DeepForest's row for an image without objects
        if not label:
            raise ConversionError(f'{where(path, line)}: empty label.')
        rec.boxes.append(Box(x1, y1, x2, y2, label, path, line))
    if not records:
        raise ConversionError(f'{path}: no data rows.')
    return list(records.values())


def load_csv(csv_path: str) -> List[ImageRecord]:
    """:func:`parse_csv` of the file ``csv_path``."""
    try:
        with open(csv_path, newline='', encoding='utf-8-sig') as f:
            text = f.read()
    except OSError as e:
        raise ConversionError(f'{csv_path}: cannot read ({e.strerror}).') \
            from None
    return parse_csv(text, csv_path)
