#!/usr/bin/env python
"""Convert Pascal-VOC XML, a CSV of boxes or YOLO txt labels to COCO json.

    # Pascal VOC: one XML per image (classes read from the files, sorted)
    python tools/dataset_converters/to_coco.py voc \\
        --ann-dir data/voc/Annotations --img-dir data/voc/JPEGImages \\
        --out-dir data/mine --split 0.8,0.2
    # a CSV: image_path,xmin,ymin,xmax,ymax,label (DeepForest and many tools)
    python tools/dataset_converters/to_coco.py csv --csv boxes.csv \\
        --img-dir data/images --out-dir data/mine --classes cat,dog
    # YOLO: class cx cy w h (normalised) per image, names one per line
    python tools/dataset_converters/to_coco.py yolo --img-dir data/images \\
        --label-dir data/labels --names classes.txt --out-dir data/mine \\
        --split-files train=train.txt val=val.txt

Writes ``OUT_DIR/annotations/<split>.json`` (``all.json`` without a split),
with ``file_name`` relative to ``--img-dir`` (the images are not copied), then
loads each file with ``mmretina.CocoDataset`` (``--no-check`` skips this) and
prints the dataset lines to paste into a config.

Conventions
-----------
* Output boxes are COCO ``[x, y, w, h]`` in continuous pixel coordinates: the
  image spans ``[0, W] x [0, H]`` and a box covering the pixel columns
  ``0..9`` is ``x=0, w=10``.
* **VOC** coordinates are 1-based pixel indices, inclusive (``xmin=1`` is the
  first column, ``xmax=W`` the last): by default ``xmin - 1, ymin - 1`` are
  taken and ``xmax, ymax`` kept, so ``(1, 1, W, H)`` is the whole image
  (detectron2 does the same; mmdet's ``VOCDataset`` subtracts 1 from all four,
  one pixel less per side). ``--voc-coords zero-based`` keeps the numbers as
  they are (files written by tools that store 0-based coordinates, such as
  the DeepForest XMLs). ``<difficult>1</difficult>`` objects are kept with
  ``iscrowd=0`` unless ``--skip-difficult``.
* **CSV** coordinates are taken as continuous 0-based pixels. A row whose
  box is ``0,0,0,0`` (DeepForest's way of listing an image without objects)
  adds the image with no box.
* **YOLO** ``cx cy w h`` are fractions of the image width / height; an image
  without a label file is an image without objects.

Classes are numbered 1..K in the order of ``--classes`` / ``--classes-file``
(VOC, CSV; default: the names found, sorted) or of ``--names`` (YOLO: line
``i`` is class ``i``; a YAML with ``names:`` as in YOLO's data.yaml works too).
``mmretina.CocoDataset`` wants ``metainfo=dict(classes=...)`` in this order;
the printed config lines have it.

Splits: ``--split 0.8,0.1,0.1`` (train, val, test; images shuffled with
``--seed``) or ``--split-files train=a.txt val=b.txt`` (one image per line,
its path relative to ``--img-dir`` or its stem, as in VOC's ImageSets).

Errors name the file and the line: an XML without ``<size>``, a box outside
the image (``--clip-boxes`` clips / drops them instead, counted), an unknown
class (``--skip-unknown`` drops them, counted), a missing image, a malformed
line.
"""
import argparse
import contextlib
import csv
import io
import os
import os.path as osp
import sys
import xml.parsers.expat as expat
from collections import Counter, OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from mmengine.utils import scandir

IMAGE_EXTS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')
CSV_COLUMNS = ('image_path', 'xmin', 'ymin', 'xmax', 'ymax', 'label')
# A box may stick out of the image by this much (rounding in the tool that
# wrote it) and is then clipped silently.
TOLERANCE = 1.0


class ConversionError(ValueError):
    """Bad input: the message names the file (and line)."""


def where(path: str, line: Optional[int] = None) -> str:
    return f'{path}:{line}' if line else path


# --------------------------------------------------------------- records
class Box:
    __slots__ = ('x1', 'y1', 'x2', 'y2', 'label', 'src', 'line', 'extra')

    def __init__(self, x1, y1, x2, y2, label, src, line, extra=None):
        self.x1, self.y1, self.x2, self.y2 = x1, y1, x2, y2
        self.label, self.src, self.line = label, src, line
        self.extra = extra or {}


class ImageRecord:
    """One image: path relative to the image root, size, boxes, and where
    it was named (for error messages)."""

    def __init__(self, file_name: str, src: str, line: Optional[int] = None):
        self.file_name = file_name
        self.src, self.line = src, line
        self.width: Optional[int] = None
        self.height: Optional[int] = None
        self.size_src: Optional[Tuple[str, Optional[int]]] = None
        self.boxes: List[Box] = []


def image_size(path: str, named_at: str) -> Tuple[int, int]:
    """(width, height) read from the image header (PIL, no decoding)."""
    from PIL import Image
    if not osp.isfile(path):
        raise ConversionError(
            f'{named_at}: image {path!r} does not exist (check --img-dir).')
    try:
        with Image.open(path) as im:
            return im.size
    except Exception as e:  # PIL raises several types for bad files
        raise ConversionError(
            f'{named_at}: image {path!r} cannot be read ({e}).') from None


def read_lines(path: str) -> List[Tuple[int, str]]:
    """(1-based line number, stripped text) of the non-empty lines."""
    try:
        with open(path, encoding='utf-8-sig') as f:
            return [(i, s.strip()) for i, s in enumerate(f, 1) if s.strip()]
    except OSError as e:
        raise ConversionError(f'{path}: cannot read ({e.strerror}).') \
            from None


# ------------------------------------------------------------------- VOC
def parse_xml_with_lines(path: str) -> dict:
    """Parse an XML file into nested dicts that keep each element's line:
    ``{'tag', 'text', 'line', 'children': [...]}``. The standard library's
    ElementTree drops line numbers, which the error messages need."""
    try:
        with open(path, 'rb') as f:
            data = f.read()
    except OSError as e:
        raise ConversionError(f'{path}: cannot read ({e.strerror}).') \
            from None
    parser = expat.ParserCreate()
    root = dict(tag=None, text='', line=0, children=[])
    stack = [root]

    def start(tag, attrs):
        node = dict(tag=tag, text='', line=parser.CurrentLineNumber,
                    children=[])
        stack[-1]['children'].append(node)
        stack.append(node)

    def end(tag):
        stack.pop()

    def chars(text):
        stack[-1]['text'] += text

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = chars
    try:
        parser.Parse(data, True)
    except expat.ExpatError as e:
        raise ConversionError(
            f'{where(path, e.lineno)}: not well-formed XML '
            f'({expat.ErrorString(e.code)}).') from None
    if not root['children']:
        raise ConversionError(f'{path}: empty XML file.')
    return root['children'][0]


def _child(node: dict, tag: str) -> Optional[dict]:
    for c in node['children']:
        if c['tag'] == tag:
            return c
    return None


def _number(node: Optional[dict], tag: str, path: str, parent: dict) -> float:
    c = _child(node, tag) if node is not None else None
    if c is None:
        raise ConversionError(
            f'{where(path, parent["line"])}: <{parent["tag"]}> has no '
            f'<{tag}>.')
    try:
        value = float(c['text'].strip())
    except ValueError:
        raise ConversionError(
            f'{where(path, c["line"])}: <{tag}> is {c["text"].strip()!r}, '
            'not a number.') from None
    if not np.isfinite(value):
        raise ConversionError(
            f'{where(path, c["line"])}: <{tag}> is {value}.')
    return value


def parse_voc_file(path: str, one_based: bool = True,
                   skip_difficult: bool = False) -> ImageRecord:
    """One Pascal-VOC XML -> ImageRecord (file name, size, boxes)."""
    root = parse_xml_with_lines(path)
    if root['tag'] != 'annotation':
        raise ConversionError(
            f'{where(path, root["line"])}: root element is <{root["tag"]}>, '
            'expected <annotation> (Pascal VOC).')
    fn = _child(root, 'filename')
    if fn is None or not fn['text'].strip():
        raise ConversionError(
            f'{where(path, root["line"])}: <annotation> has no <filename>.')
    rec = ImageRecord(fn['text'].strip(), path, fn['line'])
    size = _child(root, 'size')
    if size is None:
        raise ConversionError(
            f'{where(path, root["line"])}: <annotation> has no <size> '
            '(<width>, <height>): add it, or convert the boxes to a CSV and '
            'use the csv converter (which reads sizes from the images).')
    rec.width = int(_number(size, 'width', path, size))
    rec.height = int(_number(size, 'height', path, size))
    if rec.width <= 0 or rec.height <= 0:
        raise ConversionError(
            f'{where(path, size["line"])}: <size> is {rec.width}x{rec.height}'
            ' (width x height); it must be positive.')
    rec.size_src = (path, size['line'])
    off = 1.0 if one_based else 0.0
    for obj in root['children']:
        if obj['tag'] != 'object':
            continue
        name = _child(obj, 'name')
        if name is None or not name['text'].strip():
            raise ConversionError(
                f'{where(path, obj["line"])}: <object> has no <name>.')
        diff = _child(obj, 'difficult')
        difficult = diff is not None and diff['text'].strip() in ('1', 'true')
        if difficult and skip_difficult:
            continue
        bb = _child(obj, 'bndbox')
        if bb is None:
            raise ConversionError(
                f'{where(path, obj["line"])}: <object> has no <bndbox>.')
        x1, y1, x2, y2 = (_number(bb, k, path, bb)
                          for k in ('xmin', 'ymin', 'xmax', 'ymax'))
        rec.boxes.append(Box(
            x1 - off, y1 - off, x2, y2, name['text'].strip(), path,
            bb['line'], extra=dict(raw=(x1, y1, x2, y2))))
    return rec


def load_voc(ann_dir: str, one_based: bool = True,
             skip_difficult: bool = False) -> List[ImageRecord]:
    if not osp.isdir(ann_dir):
        raise ConversionError(f'--ann-dir {ann_dir!r} is not a directory.')
    xmls = sorted(osp.join(ann_dir, f) for f in scandir(
        ann_dir, '.xml', recursive=True, case_sensitive=False))
    if not xmls:
        raise ConversionError(f'--ann-dir {ann_dir!r} holds no .xml file.')
    return [parse_voc_file(p, one_based, skip_difficult) for p in xmls]


# ------------------------------------------------------------------- CSV
def load_csv(csv_path: str) -> List[ImageRecord]:
    """Rows ``image_path,xmin,ymin,xmax,ymax,label`` (a header with these
    names, in any order and with extra columns, or no header and this
    order) -> one ImageRecord per image, in order of first appearance."""
    try:
        f = open(csv_path, newline='', encoding='utf-8-sig')
    except OSError as e:
        raise ConversionError(f'{csv_path}: cannot read ({e.strerror}).') \
            from None
    with f:
        rows = list(csv.reader(f))
    records: 'OrderedDict[str, ImageRecord]' = OrderedDict()
    if not rows:
        raise ConversionError(f'{csv_path}: the file is empty.')
    header = [h.strip().lower() for h in rows[0]]
    if set(CSV_COLUMNS) <= set(header):
        cols = [header.index(c) for c in CSV_COLUMNS]
        start = 1
    elif 'image_path' in header or 'xmin' in header:
        missing = [c for c in CSV_COLUMNS if c not in header]
        raise ConversionError(
            f'{where(csv_path, 1)}: the header lacks the column(s) '
            f'{", ".join(missing)} (need {",".join(CSV_COLUMNS)}).')
    else:
        cols, start = list(range(6)), 0
    for line, row in enumerate(rows[start:], start + 1):
        if not any(c.strip() for c in row):
            continue
        if len(row) <= max(cols):
            raise ConversionError(
                f'{where(csv_path, line)}: {len(row)} columns, expected '
                f'{",".join(CSV_COLUMNS)}.')
        path, *coords, label = (row[c].strip() for c in cols)
        if not path:
            raise ConversionError(
                f'{where(csv_path, line)}: empty image_path.')
        try:
            x1, y1, x2, y2 = (float(v) for v in coords)
        except ValueError:
            raise ConversionError(
                f'{where(csv_path, line)}: xmin,ymin,xmax,ymax = '
                f'{",".join(coords)} are not all numbers.') from None
        if not all(np.isfinite(v) for v in (x1, y1, x2, y2)):
            raise ConversionError(
                f'{where(csv_path, line)}: box {x1},{y1},{x2},{y2} is not '
                'finite.')
        rec = records.get(path)
        if rec is None:
            rec = records[path] = ImageRecord(path, csv_path, line)
        if x1 == y1 == x2 == y2 == 0:
            continue  # DeepForest's row for an image without objects
        if not label:
            raise ConversionError(f'{where(csv_path, line)}: empty label.')
        rec.boxes.append(Box(x1, y1, x2, y2, label, csv_path, line))
    if not records:
        raise ConversionError(f'{csv_path}: no data rows.')
    return list(records.values())


# ------------------------------------------------------------------ YOLO
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


def list_images(img_dir: str) -> List[str]:
    """Image paths under ``img_dir`` (recursive), relative to it, sorted."""
    if not osp.isdir(img_dir):
        raise ConversionError(f'--img-dir {img_dir!r} is not a directory.')
    return sorted(scandir(img_dir, IMAGE_EXTS, recursive=True,
                          case_sensitive=False))


def load_yolo(img_dir: str, label_dir: str,
              names: Sequence[str]) -> List[ImageRecord]:
    """One ImageRecord per image of ``img_dir``; labels from
    ``label_dir/<same relative path>.txt``. Box coordinates stay normalised
    here (``extra['yolo']``) until the image size is known."""
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


# ------------------------------------------------------------ finishing
def fill_sizes(records: List[ImageRecord], img_dir: str) -> None:
    """Check that every image exists; read its size (VOC: check the XML's
    size against the image)."""
    for rec in records:
        named_at = where(rec.src, rec.line)
        w, h = image_size(osp.join(img_dir, rec.file_name), named_at)
        if rec.width is None:
            rec.width, rec.height = w, h
        elif (rec.width, rec.height) != (w, h):
            raise ConversionError(
                f'{where(*rec.size_src)}: <size> says {rec.width}x'
                f'{rec.height} (w x h) but {rec.file_name!r} is {w}x{h}; '
                'fix the XML (boxes are in the image\'s pixels).')


def finish_boxes(records: List[ImageRecord], clip: bool,
                 report: Counter) -> None:
    """YOLO boxes to pixels; check every box against its image."""
    for rec in records:
        kept = []
        for b in rec.boxes:
            if b.extra.get('yolo'):
                cx, cy, w, h = b.x1, b.y1, b.x2, b.y2
                b.x1, b.x2 = (cx - w / 2) * rec.width, (cx + w / 2) * rec.width
                b.y1, b.y2 = ((cy - h / 2) * rec.height,
                              (cy + h / 2) * rec.height)
            if b.x2 <= b.x1 or b.y2 <= b.y1:
                if clip:
                    report['degenerate (zero or negative size), dropped'] += 1
                    continue
                raise ConversionError(
                    f'{where(b.src, b.line)}: box {_fmt(b)} has zero or '
                    'negative width or height.')
            out = (b.x1 < -TOLERANCE or b.y1 < -TOLERANCE
                   or b.x2 > rec.width + TOLERANCE
                   or b.y2 > rec.height + TOLERANCE)
            if out and not clip:
                raise ConversionError(
                    f'{where(b.src, b.line)}: box {_fmt(b)} '
                    f'lies outside the image {rec.file_name!r} of '
                    f'{rec.width}x{rec.height} (w x h). Fix it, or pass '
                    '--clip-boxes to clip such boxes to the image.')
            x1, x2 = (min(max(v, 0.0), rec.width) for v in (b.x1, b.x2))
            y1, y2 = (min(max(v, 0.0), rec.height) for v in (b.y1, b.y2))
            if x2 - x1 < 1 or y2 - y1 < 1:
                if not clip:
                    raise ConversionError(
                        f'{where(b.src, b.line)}: box {_fmt(b)} has less '
                        f'than 1 pixel inside the image {rec.file_name!r} '
                        f'({rec.width}x{rec.height}). Fix it, or pass '
                        '--clip-boxes to drop such boxes.')
                report['outside the image, dropped'] += 1
                continue
            if out:
                report['partly outside the image, clipped'] += 1
            b.x1, b.y1, b.x2, b.y2 = x1, y1, x2, y2
            kept.append(b)
        rec.boxes = kept


def _fmt(b: Box) -> str:
    """The box as the file writes it, and in pixels if that differs."""
    px = ', '.join(f'{v:g}' for v in (b.x1, b.y1, b.x2, b.y2))
    if 'yolo' in b.extra:
        return f"{b.extra['yolo']!r} = ({px}) (x1, y1, x2, y2 in pixels)"
    if 'raw' in b.extra:
        raw = ', '.join(f'{v:g}' for v in b.extra['raw'])
        return (f'xmin, ymin, xmax, ymax = ({raw}) (VOC 1-based; ({px}) '
                '0-based)' if b.extra['raw'][0] != b.x1 else
                f'xmin, ymin, xmax, ymax = ({raw})')
    return f'xmin, ymin, xmax, ymax = ({px})'


def resolve_classes(records: List[ImageRecord],
                    classes: Optional[List[str]], skip_unknown: bool,
                    report: Counter) -> List[str]:
    """The class list (given, or the names found, sorted); boxes of other
    labels raise (or are dropped with ``skip_unknown``)."""
    found = sorted({b.label for r in records for b in r.boxes})
    if classes is None:
        if not found:
            raise ConversionError('no box in the input: nothing to convert '
                                  '(pass --classes to write empty images).')
        return found
    dup = [n for n, c in Counter(classes).items() if c > 1]
    if dup:
        raise ConversionError(f'--classes lists {dup} twice.')
    known = set(classes)
    for rec in records:
        kept = []
        for b in rec.boxes:
            if b.label in known:
                kept.append(b)
            elif skip_unknown:
                report[f'of a class not in --classes ({b.label!r}), '
                       'dropped'] += 1
            else:
                raise ConversionError(
                    f'{where(b.src, b.line)}: class {b.label!r} is not in '
                    f'--classes {",".join(classes)} (found in the input: '
                    f'{", ".join(found)}). Add it, or pass --skip-unknown to '
                    'drop its boxes.')
        rec.boxes = kept
    return list(classes)


def split_records(records: List[ImageRecord], ratios: Optional[List[float]],
                  split_files: Optional[Dict[str, str]],
                  seed: int) -> 'OrderedDict[str, List[ImageRecord]]':
    if split_files:
        by_key = {}
        for i, rec in enumerate(records):
            by_key.setdefault(rec.file_name, i)
            by_key.setdefault(osp.splitext(rec.file_name)[0], i)
            by_key.setdefault(osp.splitext(osp.basename(rec.file_name))[0], i)
        out, owner = OrderedDict(), {}
        for name, path in split_files.items():
            out[name] = []
            for line, entry in read_lines(path):
                i = by_key.get(entry, by_key.get(osp.splitext(entry)[0]))
                if i is None:
                    raise ConversionError(
                        f'{where(path, line)}: {entry!r} is not an image of '
                        'the input.')
                if i in owner:
                    raise ConversionError(
                        f'{where(path, line)}: {entry!r} is already in split '
                        f'{owner[i]!r}.')
                owner[i] = name
                out[name].append(records[i])
        left = len(records) - len(owner)
        if left:
            print(f'note: {left} image(s) are in none of the split files and '
                  'are not written.')
        return out
    if not ratios:
        return OrderedDict(all=list(records))
    names = ('train', 'val', 'test')
    if len(ratios) > 3 or any(r < 0 for r in ratios) or sum(ratios) <= 0:
        raise ConversionError(
            f'--split {ratios}: give 1 to 3 non-negative ratios (train, val, '
            'test).')
    ratios = np.asarray(ratios, dtype=float) / sum(ratios)
    order = np.random.RandomState(seed).permutation(len(records))
    # cumulative rounding: the counts add up to the number of images
    bounds = np.round(np.cumsum(ratios) * len(records)).astype(int)
    out, start = OrderedDict(), 0
    for name, end, ratio in zip(names, bounds, ratios):
        out[name] = [records[i] for i in sorted(order[start:end])]
        start = end
        if ratio > 0 and not out[name]:
            raise ConversionError(
                f'--split {",".join(f"{r:g}" for r in ratios)}: split '
                f'{name!r} gets no image of the {len(records)}; give it a '
                'larger share or fewer splits.')
    return out


def to_coco_dict(records: List[ImageRecord], classes: List[str]) -> dict:
    cat_id = {n: i + 1 for i, n in enumerate(classes)}
    images, anns = [], []
    for img_id, rec in enumerate(records, 1):
        images.append(dict(id=img_id, file_name=rec.file_name,
                           width=int(rec.width), height=int(rec.height)))
        for b in rec.boxes:
            w, h = b.x2 - b.x1, b.y2 - b.y1
            anns.append(dict(
                id=len(anns) + 1, image_id=img_id,
                category_id=cat_id[b.label],
                bbox=[round(b.x1, 3), round(b.y1, 3), round(w, 3),
                      round(h, 3)],
                area=round(w * h, 3), iscrowd=0))
    return dict(images=images, annotations=anns,
                categories=[dict(id=i, name=n) for n, i in cat_id.items()])


def check_with_mmretina(ann_file: str, img_dir: str,
                        classes: List[str]) -> str:
    """Load ``ann_file`` with ``mmretina.CocoDataset`` (all its checks);
    return its summary."""
    from mmdet.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    from mmretina.datasets import CocoDataset
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools' prints
            ds = CocoDataset(
                ann_file=osp.abspath(ann_file), data_root='',
                data_prefix=dict(img=osp.abspath(img_dir) + os.sep),
                metainfo=dict(classes=tuple(classes)),
                filter_cfg=dict(filter_empty_gt=False), pipeline=[],
                serialize_data=False, test_mode=False)
    except (ValueError, FileNotFoundError, OSError) as e:
        raise ConversionError(
            f'{ann_file}: written, but mmretina.CocoDataset refuses it: '
            f'{e}') from None
    dropped = sum(v for k, v in ds.box_report.items()
                  if 'kept' not in k and 'metainfo' not in k)
    n_boxes = sum(len(d['instances']) for d in ds.data_list)
    return (f'{len(ds)} images, {n_boxes} boxes'
            + (f', {dropped} boxes dropped by mmretina.CocoDataset'
               if dropped else ''))


# ------------------------------------------------------------------- CLI
def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split('\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split('\n', 1)[1])
    sub = p.add_subparsers(dest='format', required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument('--img-dir', required=True,
                        help='image root; file names in the json are '
                        'relative to it (use it as data_prefix.img)')
    common.add_argument('--out-dir', required=True,
                        help='writes OUT_DIR/annotations/<split>.json')
    g = common.add_mutually_exclusive_group()
    g.add_argument('--split', help='ratios train,val[,test], e.g. 0.8,0.2 '
                   '(default: one file, all.json)')
    g.add_argument('--split-files', nargs='+', metavar='NAME=FILE',
                   help='image lists, e.g. train=train.txt val=val.txt')
    common.add_argument('--seed', type=int, default=0,
                        help='shuffle seed for --split (default 0)')
    common.add_argument('--clip-boxes', action='store_true',
                        help='clip boxes partly outside the image, drop '
                        'those outside or degenerate (default: error)')
    common.add_argument('--no-check', action='store_true',
                        help='do not load the output with '
                        'mmretina.CocoDataset')
    cls = argparse.ArgumentParser(add_help=False)
    cg = cls.add_mutually_exclusive_group()
    cg.add_argument('--classes', help='class names in order, comma '
                    'separated (default: the names found, sorted)')
    cg.add_argument('--classes-file', help='class names, one per line')
    cls.add_argument('--skip-unknown', action='store_true',
                     help='drop boxes of classes not in --classes '
                     '(default: error)')

    v = sub.add_parser('voc', parents=[common, cls],
                       help='Pascal-VOC XML, one per image')
    v.add_argument('--ann-dir', required=True, help='folder of .xml files')
    v.add_argument('--voc-coords', choices=('one-based', 'zero-based'),
                   default='one-based',
                   help='one-based (VOC, default): xmin-1, ymin-1, xmax, '
                   'ymax; zero-based: take the numbers as they are')
    v.add_argument('--skip-difficult', action='store_true',
                   help='drop objects marked <difficult>1</difficult>')
    c = sub.add_parser('csv', parents=[common, cls],
                       help='CSV: image_path,xmin,ymin,xmax,ymax,label')
    c.add_argument('--csv', required=True, help='the CSV file')
    y = sub.add_parser('yolo', parents=[common],
                       help='YOLO txt: class cx cy w h (normalised)')
    y.add_argument('--label-dir', help='folder of .txt files mirroring '
                   '--img-dir (default: --img-dir)')
    y.add_argument('--names', required=True, help='class names, one per '
                   'line (line i = class i), or a YOLO data.yaml')
    return p.parse_args(argv)


def parse_split_files(items):
    out = OrderedDict()
    for item in items or ():
        name, sep, path = item.partition('=')
        if not sep or not name or not path:
            raise ConversionError(
                f'--split-files {item!r}: expected NAME=FILE, e.g. '
                'train=train.txt.')
        out[name] = path
    return out


def convert(args) -> Tuple['OrderedDict[str, dict]', List[str]]:
    """Read, check and split the input; write one json per split.
    Returns ({split: {'path', 'coco'}}, class names)."""
    report: Counter = Counter()
    if args.format == 'voc':
        records = load_voc(args.ann_dir, args.voc_coords == 'one-based',
                           args.skip_difficult)
    elif args.format == 'csv':
        records = load_csv(args.csv)
    else:
        names = load_yolo_names(args.names)
        records = load_yolo(args.img_dir, args.label_dir or args.img_dir,
                            names)
    dup = [n for n, c in Counter(r.file_name for r in records).items()
           if c > 1]
    if dup:
        first = next(r for r in records if r.file_name == dup[0])
        raise ConversionError(
            f'{where(first.src, first.line)}: image {dup[0]!r} is named by '
            'more than one annotation file.')
    fill_sizes(records, args.img_dir)
    finish_boxes(records, args.clip_boxes, report)
    if args.format == 'yolo':
        classes = list(names)
    else:
        classes = None
        if args.classes:
            classes = [c.strip() for c in args.classes.split(',')]
        elif args.classes_file:
            classes = [s for _, s in read_lines(args.classes_file)]
        classes = resolve_classes(records, classes, args.skip_unknown,
                                  report)
    ratios = ([float(r) for r in args.split.split(',')]
              if args.split else None)
    splits = split_records(records, ratios,
                           parse_split_files(args.split_files), args.seed)
    out = OrderedDict()
    ann_dir = osp.join(args.out_dir, 'annotations')
    os.makedirs(ann_dir, exist_ok=True)
    import json
    for name, recs in splits.items():
        coco = to_coco_dict(recs, classes)
        path = osp.join(ann_dir, f'{name}.json')
        with open(path, 'w') as f:
            json.dump(coco, f)
        out[name] = dict(path=path, coco=coco)
    for reason, n in sorted(report.items()):
        print(f'note: {n} box(es) {reason}.')
    return out, classes


def config_lines(out, classes, img_dir) -> str:
    names = list(out)
    train = 'train' if 'train' in out else names[0]
    val = 'val' if 'val' in out else train
    lines = [
        '# dataset lines for your config (see '
        'docs/user_guides/own_data.md):',
        f'classes = {tuple(classes)!r}',
        f'num_classes = {len(classes)}  # model.bbox_head.num_classes',
        f"train_ann = {out[train]['path']!r}",
        f"val_ann = {out[val]['path']!r}",
        f'img_dir = {osp.join(img_dir, "")!r}  # data_prefix=dict(img=...)',
    ]
    return '\n'.join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        out, classes = convert(args)
        for name, o in out.items():
            coco = o['coco']
            n_empty = len(coco['images']) - len(
                {a['image_id'] for a in coco['annotations']})
            per_class = Counter(a['category_id'] for a in coco['annotations'])
            counts = ', '.join(f'{n} {per_class[i + 1]}'
                               for i, n in enumerate(classes))
            line = (f"{name}: {o['path']}: {len(coco['images'])} images "
                    f"({n_empty} without boxes), "
                    f"{len(coco['annotations'])} boxes ({counts})")
            if not args.no_check:
                line += ('; mmretina.CocoDataset loads it: '
                         + check_with_mmretina(o['path'], args.img_dir,
                                               classes))
            print(line)
    except ConversionError as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    print(config_lines(out, classes, args.img_dir))
    return 0


if __name__ == '__main__':
    sys.exit(main())
