#!/usr/bin/env python
"""Build a small COCO-format tree-crown dataset from the DeepForest wheel.

The ``deepforest==2.1.0`` wheel (MIT code; the NEON imagery it ships is
public domain / CC0) contains a handful of hand-annotated NEON RGB images in
``deepforest/data/``.  This script turns them into a detection dataset::

    data/deepforest/
        annotations/train.json   # COCO, one category: 1 = tree
        annotations/val.json
        images/*.png

Splits
------
* **train**: the two large Yellowstone (YELL) crops, cut into ``--tile-size``
  (400 px) square tiles with stride ``tile - overlap`` (default overlap
  100 px, i.e. stride 300).  The overlap is larger than a typical crown
  (median ~40 px, 95th percentile ~75 px), so nearly every crown is fully
  inside at least one tile.  The last row/column of tiles is shifted to end
  exactly at the image border, so there is no padding and no pixel is lost.
* **val**: ``OSBS_029`` (Florida) and ``SOAP_061`` (California) as whole
  images - they are only 400 x 400 px, one tile each.  Different sites from
  train, so val measures cross-site generalisation.  These two images are
  the **reported (test) images**: since issue 15 no recipe is chosen on
  them (docs/experiments/deepforest.md, round 6).
* **choose_train / choose_val**: the split for choosing a recipe, a spatial
  hold-out of the training site.  ``choose_train`` is the train tiles of
  the large YELL image (``..._528000_4978000_image_crop2``) only;
  ``choose_val`` is the other YELL image (``..._541000_4977000_image_crop``,
  13 km east of it) cut into a ``CHOOSE_GRID`` x ``CHOOSE_GRID`` grid of
  non-overlapping tiles (about 416 x 345 px), boxes clipped by the rule
  below.  No pixel of ``choose_val`` is in ``choose_train``.  The final
  recipe then trains on all of ``train`` and is evaluated once on ``val``.

Annotations
-----------
Pascal-VOC ``<stem>.xml`` files are preferred (they are the complete
annotations; ``example.csv`` only holds a subset of one YELL image); if an
image has no XML, rows of the DeepForest CSVs (``image_path,xmin,ymin,xmax,
ymax,label``) whose image has the same stem are used instead.  Every label
("Tree", "Dead", "Alive", ...) becomes the single class ``tree`` (id 1).

Box clipping rule (tiles)
-------------------------
A box is clipped to the tile; it is kept iff the clipped box keeps at least
``--min-visible`` (default 0.5) of its original area **and** both clipped
sides are >= ``--min-size`` (default 2 px).  Crowns cut more than half by a
tile border are dropped (they are fully visible in an overlapping tile).

Usage::

    # pip download the wheel, convert
    python tools/dataset_converters/prepare_deepforest.py
    # use a wheel downloaded before
    python tools/dataset_converters/prepare_deepforest.py \
        --wheel deepforest-2.1.0-py3-none-any.whl
    # rebuild
    python tools/dataset_converters/prepare_deepforest.py --force

Only numpy, PIL and the standard library are used.
"""
import argparse
import csv
import io
import json
import os
import os.path as osp
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
import zipfile

import numpy as np
from PIL import Image

PACKAGE = 'deepforest'
VERSION = '2.1.0'
DATA_PREFIX = 'deepforest/data/'
TRAIN_STEMS = ('2019_YELL_2_528000_4978000_image_crop2',
               '2019_YELL_2_541000_4977000_image_crop')
# the spatial hold-out of the training site used to choose recipes: the
# smaller YELL image
CHOOSE_VAL_STEM = TRAIN_STEMS[1]
CHOOSE_GRID = 3
SPLITS = ('train', 'val', 'choose_train', 'choose_val')
VAL_STEMS = ('OSBS_029', 'SOAP_061')
IMAGE_EXTS = ('.png', '.tif', '.tiff', '.jpg', '.jpeg')
CATEGORIES = [dict(id=1, name='tree', supercategory='plant')]


class PrepareError(RuntimeError):
    """An expected failure, reported as a one-line message (no traceback)."""


# --------------------------------------------------------------------------
# pure helpers
# --------------------------------------------------------------------------
def tile_starts(length, tile, stride):
    """Start offsets of windows of size ``tile`` covering ``[0, length)``.

    Windows step by ``stride``; the last one is shifted back so that it ends
    at ``length`` exactly.  If ``length <= tile`` a single window at 0 is
    returned (the tile is then the whole, smaller, extent).
    """
    if tile <= 0 or stride <= 0:
        raise ValueError('tile and stride must be positive')
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile + 1, stride))
    if starts[-1] + tile < length:
        starts.append(length - tile)
    return starts


def grid_windows(width, height, n):
    """``n`` x ``n`` non-overlapping ``(x0, y0, x1, y1)`` windows that
    partition the image (sides differ by at most 1 px), row-major."""
    if n < 1 or n > min(width, height):
        raise ValueError(f'cannot cut {width}x{height} into {n}x{n} tiles')
    xs = [round(i * width / n) for i in range(n + 1)]
    ys = [round(i * height / n) for i in range(n + 1)]
    return [(xs[i], ys[j], xs[i + 1], ys[j + 1])
            for j in range(n) for i in range(n)]


def tile_windows(width, height, tile, stride):
    """List of ``(x0, y0, x1, y1)`` windows, row-major."""
    return [(x, y, min(x + tile, width), min(y + tile, height))
            for y in tile_starts(height, tile, stride)
            for x in tile_starts(width, tile, stride)]


def clip_boxes(boxes, window, min_visible=0.5, min_size=2.0):
    """Clip ``(N, 4)`` xyxy boxes to ``window`` and shift to its origin.

    Returns ``(clipped_boxes, keep_indices)``; a box is kept iff its clipped
    area is ``>= min_visible`` times its original area and both clipped sides
    are ``>= min_size``.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    x0, y0, x1, y1 = window
    cx0 = np.clip(boxes[:, 0], x0, x1)
    cy0 = np.clip(boxes[:, 1], y0, y1)
    cx1 = np.clip(boxes[:, 2], x0, x1)
    cy1 = np.clip(boxes[:, 3], y0, y1)
    cw, ch = cx1 - cx0, cy1 - cy0
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    with np.errstate(divide='ignore', invalid='ignore'):
        frac = np.where(area > 0, cw * ch / np.maximum(area, 1e-12), 0.0)
    keep = (cw >= min_size) & (ch >= min_size) & (frac >= min_visible)
    out = np.stack([cx0 - x0, cy0 - y0, cx1 - x0, cy1 - y0], axis=1)[keep]
    return out, np.nonzero(keep)[0]


def parse_voc(text):
    """Boxes ``(N, 4)`` and labels from a Pascal-VOC XML string."""
    root = ET.fromstring(text)
    boxes, labels = [], []
    for obj in root.findall('object'):
        bb = obj.find('bndbox')
        boxes.append([float(bb.find(k).text)
                      for k in ('xmin', 'ymin', 'xmax', 'ymax')])
        labels.append((obj.findtext('name') or 'Tree').strip())
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4), labels


def parse_csv(text):
    """``{image stem: (boxes, labels)}`` from a DeepForest annotation CSV."""
    out = {}
    reader = csv.DictReader(io.StringIO(text))
    need = {'image_path', 'xmin', 'ymin', 'xmax', 'ymax'}
    if not need.issubset(reader.fieldnames or ()):
        return out
    for row in reader:
        stem = osp.splitext(osp.basename(row['image_path']))[0]
        b, lab = out.setdefault(stem, ([], []))
        b.append([float(row[k]) for k in ('xmin', 'ymin', 'xmax', 'ymax')])
        lab.append(row.get('label') or 'Tree')
    return {k: (np.asarray(b, dtype=np.float64).reshape(-1, 4), lab)
            for k, (b, lab) in out.items()}


def sanitize_boxes(boxes, width, height):
    """Clip to the image and drop boxes with non-positive size."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4).copy()
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, width)
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, height)
    ok = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    return boxes[ok]


class CocoBuilder:
    """Accumulates images and boxes into a COCO detection dict."""

    def __init__(self):
        self.images, self.annotations = [], []

    def add_image(self, file_name, width, height, boxes):
        img_id = len(self.images) + 1
        self.images.append(
            dict(id=img_id, file_name=file_name, width=int(width),
                 height=int(height)))
        for b in np.asarray(boxes, dtype=np.float64).reshape(-1, 4):
            w, h = float(b[2] - b[0]), float(b[3] - b[1])
            self.annotations.append(
                dict(id=len(self.annotations) + 1, image_id=img_id,
                     category_id=1,
                     bbox=[round(float(b[0]), 2), round(float(b[1]), 2),
                           round(w, 2), round(h, 2)],
                     area=round(w * h, 2), iscrowd=0))
        return img_id

    def to_dict(self):
        return dict(
            info=dict(description='DeepForest NEON tree crowns '
                      f'(from {PACKAGE}=={VERSION} wheel; imagery CC0)'),
            licenses=[],
            images=self.images, annotations=self.annotations,
            categories=CATEGORIES)


# --------------------------------------------------------------------------
# wheel access
# --------------------------------------------------------------------------
def download_wheel(dest):
    """``pip download`` the wheel into ``dest``; return its path."""
    existing = find_wheel_in(dest)
    if existing:
        print(f'using cached wheel {existing}')
        return existing
    os.makedirs(dest, exist_ok=True)
    cmd = [sys.executable, '-m', 'pip', 'download', '--no-deps',
           '--only-binary=:all:', f'{PACKAGE}=={VERSION}', '-d', dest]
    print('running:', ' '.join(cmd))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True)
    except OSError as e:
        raise PrepareError(f'could not run pip: {e}') from None
    wheel = find_wheel_in(dest)
    if proc.returncode != 0 or wheel is None:
        tail = '\n'.join((proc.stderr or proc.stdout or '').strip()
                         .splitlines()[-5:])
        raise PrepareError(
            f'`pip download {PACKAGE}=={VERSION}` failed (exit code '
            f'{proc.returncode}). Check network/index access, or download '
            f'the wheel elsewhere and pass --wheel PATH.\n{tail}')
    return wheel


def find_wheel_in(dest):
    if not osp.isdir(dest):
        return None
    for name in sorted(os.listdir(dest)):
        if name.startswith(f'{PACKAGE}-{VERSION}-') and name.endswith('.whl'):
            return osp.join(dest, name)
    return None


class WheelData:
    """Read-only view of ``deepforest/data/`` inside the wheel zip."""

    def __init__(self, path):
        if not osp.isfile(path):
            raise PrepareError(f'wheel not found: {path}')
        try:
            self.zf = zipfile.ZipFile(path)
        except zipfile.BadZipFile:
            raise PrepareError(f'{path} is not a valid wheel (zip) file') \
                from None
        self.path = path
        self.files = {n[len(DATA_PREFIX):]: n for n in self.zf.namelist()
                      if n.startswith(DATA_PREFIX) and not n.endswith('/')}
        self._csv = None

    def read(self, name):
        return self.zf.read(self.files[name])

    def image_name(self, stem):
        for ext in IMAGE_EXTS:
            for cand in (stem + ext, stem + ext.upper()):
                if cand in self.files:
                    return cand
        return None

    def load_image(self, stem):
        name = self.image_name(stem)
        if name is None:
            raise PrepareError(
                f'{self.path} lacks the image {DATA_PREFIX}{stem}.* '
                f'(expected a {PACKAGE}=={VERSION} wheel)')
        with Image.open(io.BytesIO(self.read(name))) as im:
            return np.asarray(im.convert('RGB'))

    def csv_annotations(self):
        if self._csv is None:
            self._csv = []
            for name in sorted(self.files, key=lambda n: (n != 'example.csv',
                                                          n)):
                if name.endswith('.csv'):
                    self._csv.append(
                        (name, parse_csv(self.read(name).decode('utf-8'))))
        return self._csv

    def load_boxes(self, stem):
        """Boxes for ``stem``: ``<stem>.xml`` if present, else CSV rows
        (preferring ``<stem>.csv``, then the first CSV that lists it; CSVs
        are not merged, as several repeat the same boxes)."""
        if stem + '.xml' in self.files:
            boxes, _ = parse_voc(self.read(stem + '.xml'))
            return boxes, stem + '.xml'
        tables = self.csv_annotations()
        tables = sorted(tables, key=lambda t: t[0] != stem + '.csv')
        for name, table in tables:
            if stem in table:
                return table[stem][0], name
        raise PrepareError(
            f'{self.path} has no annotations (XML or CSV) for {stem} '
            f'(expected a {PACKAGE}=={VERSION} wheel)')

    def check(self):
        missing = [s for s in TRAIN_STEMS + VAL_STEMS
                   if self.image_name(s) is None]
        if missing:
            raise PrepareError(
                f'{self.path} lacks the expected data files '
                f'{", ".join(DATA_PREFIX + m + ".*" for m in missing)} '
                f'(is it really {PACKAGE}=={VERSION}?)')
        for s in TRAIN_STEMS + VAL_STEMS:
            self.load_boxes(s)


# --------------------------------------------------------------------------
# conversion
# --------------------------------------------------------------------------
def is_prepared(out_dir):
    ann_dir = osp.join(out_dir, 'annotations')
    for split in SPLITS:
        p = osp.join(ann_dir, f'{split}.json')
        if not osp.isfile(p):
            return False
        try:
            with open(p) as f:
                coco = json.load(f)
        except (OSError, ValueError):
            return False
        for im in coco.get('images', []):
            if not osp.isfile(osp.join(out_dir, 'images', im['file_name'])):
                return False
    return True


def convert(wheel, out_dir, tile_size=400, overlap=100, min_visible=0.5,
            min_size=2.0):
    """Write the dataset; returns ``{split: coco_dict}`` and pixel stats."""
    if not 0 <= overlap < tile_size:
        raise PrepareError('--overlap must be in [0, tile-size)')
    data = wheel if isinstance(wheel, WheelData) else WheelData(wheel)
    data.check()
    img_dir = osp.join(out_dir, 'images')
    ann_dir = osp.join(out_dir, 'annotations')
    os.makedirs(img_dir, exist_ok=True)
    os.makedirs(ann_dir, exist_ok=True)

    stride = tile_size - overlap
    train = CocoBuilder()
    choose_train, choose_val = CocoBuilder(), CocoBuilder()
    px_sum = np.zeros(3)
    px_sq = np.zeros(3)
    px_n = 0
    for stem in TRAIN_STEMS:
        img = data.load_image(stem)
        h, w = img.shape[:2]
        boxes, _ = data.load_boxes(stem)
        boxes = sanitize_boxes(boxes, w, h)
        for win in tile_windows(w, h, tile_size, stride):
            x0, y0, x1, y1 = win
            crop = img[y0:y1, x0:x1]
            tb, _ = clip_boxes(boxes, win, min_visible, min_size)
            fname = f'{stem}_x{x0}_y{y0}.png'
            Image.fromarray(crop).save(osp.join(img_dir, fname))
            train.add_image(fname, x1 - x0, y1 - y0, tb)
            if stem != CHOOSE_VAL_STEM:
                choose_train.add_image(fname, x1 - x0, y1 - y0, tb)
            c = crop.reshape(-1, 3).astype(np.float64)
            px_sum += c.sum(0)
            px_sq += (c ** 2).sum(0)
            px_n += c.shape[0]
        if stem == CHOOSE_VAL_STEM:
            for win in grid_windows(w, h, CHOOSE_GRID):
                x0, y0, x1, y1 = win
                tb, _ = clip_boxes(boxes, win, min_visible, min_size)
                fname = f'{stem}_hold_x{x0}_y{y0}.png'
                Image.fromarray(img[y0:y1, x0:x1]).save(
                    osp.join(img_dir, fname))
                choose_val.add_image(fname, x1 - x0, y1 - y0, tb)
    val = CocoBuilder()
    for stem in VAL_STEMS:
        img = data.load_image(stem)
        h, w = img.shape[:2]
        boxes, _ = data.load_boxes(stem)
        boxes = sanitize_boxes(boxes, w, h)
        fname = f'{stem}.png'
        Image.fromarray(img).save(osp.join(img_dir, fname))
        val.add_image(fname, w, h, boxes)

    out = dict(train=train.to_dict(), val=val.to_dict(),
               choose_train=choose_train.to_dict(),
               choose_val=choose_val.to_dict())
    for split, coco in out.items():
        tmp = osp.join(ann_dir, f'.{split}.json.tmp')
        with open(tmp, 'w') as f:
            json.dump(coco, f)
        os.replace(tmp, osp.join(ann_dir, f'{split}.json'))
    mean = px_sum / max(px_n, 1)
    std = np.sqrt(np.maximum(px_sq / max(px_n, 1) - mean ** 2, 0))
    return out, dict(mean=mean.round(2).tolist(), std=std.round(2).tolist())


def summarize(out, stats=None):
    lines = []
    for split, coco in out.items():
        n_img = len(coco['images'])
        n_box = len(coco['annotations'])
        sides = np.array([np.sqrt(a['bbox'][2] * a['bbox'][3])
                          for a in coco['annotations']] or [0.0])
        lines.append(
            f'{split:12s}: {n_img:3d} images, {n_box:4d} boxes '
            f'({n_box / max(n_img, 1):.1f}/image; sqrt(area) median '
            f'{np.median(sides):.1f}px, 5-95% '
            f'{np.percentile(sides, 5):.1f}-{np.percentile(sides, 95):.1f}px)')
    if stats:
        lines.append(f'train pixel mean (RGB) {stats["mean"]}, '
                     f'std {stats["std"]}')
    return '\n'.join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--out-dir', default='data/deepforest')
    p.add_argument('--wheel', help='path to an already downloaded '
                   f'{PACKAGE}-{VERSION}-py3-none-any.whl (skips pip)')
    p.add_argument('--download-dir', default=None,
                   help='where pip puts the wheel (default: a temporary '
                   'directory that is removed afterwards)')
    p.add_argument('--tile-size', type=int, default=400)
    p.add_argument('--overlap', type=int, default=100,
                   help='train tile overlap in px (stride = tile - overlap)')
    p.add_argument('--min-visible', type=float, default=0.5,
                   help='keep a clipped box iff this fraction of its area '
                   'stays inside the tile')
    p.add_argument('--min-size', type=float, default=2.0,
                   help='drop clipped boxes with a side below this (px)')
    p.add_argument('--force', action='store_true',
                   help='rebuild even if the output already exists')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    out_dir = args.out_dir
    try:
        if is_prepared(out_dir) and not args.force:
            print(f'{out_dir} already holds annotations/'
                  f'{{{",".join(SPLITS)}}}.json and their images: nothing '
                  'to do (use --force to rebuild).')
            out = {}
            for split in SPLITS:
                with open(osp.join(out_dir, 'annotations',
                                   f'{split}.json')) as f:
                    out[split] = json.load(f)
            print(summarize(out))
            return 0
        tmpdir = None
        wheel = args.wheel
        if wheel is None:
            if args.download_dir:
                wheel = download_wheel(args.download_dir)
            else:
                tmpdir = tempfile.mkdtemp(prefix='deepforest_wheel_')
                wheel = download_wheel(tmpdir)
        try:
            data = WheelData(wheel)
            data.check()  # before touching an existing output
            if args.force:
                for sub in ('images', 'annotations'):
                    shutil.rmtree(osp.join(out_dir, sub), ignore_errors=True)
            out, stats = convert(data, out_dir, args.tile_size, args.overlap,
                                 args.min_visible, args.min_size)
        finally:
            if tmpdir:
                shutil.rmtree(tmpdir, ignore_errors=True)
    except PrepareError as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    print(f'wrote {out_dir}/annotations/{{{",".join(SPLITS)}}}.json and '
          f'{out_dir}/images/')
    print(summarize(out, stats))
    return 0


if __name__ == '__main__':
    sys.exit(main())
