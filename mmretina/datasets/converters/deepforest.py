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

Usage (``tools/dataset_converters/prepare_deepforest.py`` is the command
line over :func:`prepare`)::

    # pip download the wheel, convert
    python tools/dataset_converters/prepare_deepforest.py
    # use a wheel downloaded before
    python tools/dataset_converters/prepare_deepforest.py \
        --wheel deepforest-2.1.0-py3-none-any.whl
    # rebuild
    python tools/dataset_converters/prepare_deepforest.py --force

"""
import csv
import io
import json
import os
import os.path as osp
import shutil
import subprocess
import sys
import tempfile
import zipfile

import numpy as np
from PIL import Image

from mmretina.geo.formats import IMAGE_EXTS
from mmretina.geo.windows import tile_starts
from mmretina.structures.box_validity import DROPPED, box_verdicts
from . import csv as csv_reader
from . import voc
from .coco_writer import CocoWriter, write_json

__all__ = [
    'PrepareError', 'tile_starts', 'grid_windows', 'tile_windows',
    'clip_boxes', 'sanitize_boxes', 'parse_voc', 'parse_csv', 'CocoBuilder',
    'download_wheel', 'WheelData', 'is_prepared', 'convert', 'prepare',
    'summarize'
]

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
CATEGORIES = [dict(id=1, name='tree', supercategory='plant')]


class PrepareError(RuntimeError):
    """An expected failure, reported as a one-line message (no traceback)."""


# --------------------------------------------------------------------------
# pure helpers
# --------------------------------------------------------------------------
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


def sanitize_boxes(boxes, width, height):
    """Boxes ``(N, 4)`` xyxy clipped to the image, those the box-validity
    rule (:mod:`mmretina.structures.box_validity`) drops removed."""
    out, verdicts = box_verdicts(boxes, width, height, clip=True)
    return out[np.array([v not in DROPPED for v in verdicts], dtype=bool)]


def parse_voc(text, path='<xml>'):
    """Boxes ``(N, 4)`` (xyxy, 0-based pixels as DeepForest writes them)
    and labels of a Pascal-VOC XML document, read by the VOC reader
    (:func:`mmretina.datasets.converters.voc.parse_voc`)."""
    data = text.encode('utf-8') if isinstance(text, str) else text
    rec = voc.parse_voc(data, path, one_based=False, need_size=False)
    boxes = [(b.x1, b.y1, b.x2, b.y2) for b in rec.boxes]
    return (np.asarray(boxes, dtype=np.float64).reshape(-1, 4),
            [b.label for b in rec.boxes])


def parse_csv(text, path='<csv>'):
    """``{image stem: (boxes, labels)}`` of a DeepForest annotation CSV,
    read by the CSV reader (:func:`mmretina.datasets.converters.csv.
    parse_csv`); ``{}`` for a CSV without the box columns (the wheel holds
    other tables too)."""
    header = next(csv.reader(io.StringIO(text)), [])
    need = {'image_path', 'xmin', 'ymin', 'xmax', 'ymax'}
    if not need <= {h.strip().lower() for h in header}:
        return {}
    out = {}
    for rec in csv_reader.parse_csv(text, path, default_label='Tree'):
        stem = osp.splitext(osp.basename(rec.file_name))[0]
        b, lab = out.setdefault(stem, ([], []))
        b.extend((x.x1, x.y1, x.x2, x.y2) for x in rec.boxes)
        lab.extend(x.label for x in rec.boxes)
    return {k: (np.asarray(b, dtype=np.float64).reshape(-1, 4), lab)
            for k, (b, lab) in out.items()}


def CocoBuilder() -> CocoWriter:  # noqa: N802  (the former class's name)
    """A :class:`~mmretina.datasets.converters.coco_writer.CocoWriter` for
    the one ``tree`` category (boxes rounded to 0.01 px)."""
    return CocoWriter(CATEGORIES, decimals=2)


def coco_dict(writer: CocoWriter) -> dict:
    """The COCO dict of ``writer``, with the data set's ``info``."""
    return writer.to_dict(
        info=dict(description='DeepForest NEON tree crowns '
                  f'(from {PACKAGE}=={VERSION} wheel; imagery CC0)'),
        licenses=[])


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
                        (name, parse_csv(self.read(name).decode('utf-8'),
                                         f'{self.path}:{DATA_PREFIX}{name}')))
        return self._csv

    def load_boxes(self, stem):
        """Boxes for ``stem``: ``<stem>.xml`` if present, else CSV rows
        (preferring ``<stem>.csv``, then the first CSV that lists it; CSVs
        are not merged, as several repeat the same boxes)."""
        if stem + '.xml' in self.files:
            boxes, _ = parse_voc(self.read(stem + '.xml'),
                                 f'{self.path}:{DATA_PREFIX}{stem}.xml')
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

    out = dict(train=coco_dict(train), val=coco_dict(val),
               choose_train=coco_dict(choose_train),
               choose_val=coco_dict(choose_val))
    for split, coco in out.items():
        write_json(coco, osp.join(ann_dir, f'{split}.json'))
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


def prepare(out_dir: str = 'data/deepforest', wheel: str = None,
            download_dir: str = None, tile_size: int = 400,
            overlap: int = 100, min_visible: float = 0.5,
            min_size: float = 2.0, force: bool = False) -> dict:
    """Build the data set under ``out_dir`` unless it is there already
    (``force`` rebuilds). The wheel is ``wheel``, else ``pip download``-ed
    into ``download_dir`` (default: a temporary directory, removed after).
    Prints what it did; returns ``{split: coco_dict}``. Raises
    :class:`PrepareError` (or a ``ConversionError`` naming a bad file of
    the wheel)."""
    if is_prepared(out_dir) and not force:
        print(f'{out_dir} already holds annotations/'
              f'{{{",".join(SPLITS)}}}.json and their images: nothing '
              'to do (use --force to rebuild).')
        out = {}
        for split in SPLITS:
            with open(osp.join(out_dir, 'annotations', f'{split}.json')) as f:
                out[split] = json.load(f)
        print(summarize(out))
        return out
    tmpdir = None
    if wheel is None:
        if download_dir:
            wheel = download_wheel(download_dir)
        else:
            tmpdir = tempfile.mkdtemp(prefix='deepforest_wheel_')
            wheel = download_wheel(tmpdir)
    try:
        data = WheelData(wheel)
        data.check()  # before touching an existing output
        if force:
            for sub in ('images', 'annotations'):
                shutil.rmtree(osp.join(out_dir, sub), ignore_errors=True)
        out, stats = convert(data, out_dir, tile_size, overlap, min_visible,
                             min_size)
    finally:
        if tmpdir:
            shutil.rmtree(tmpdir, ignore_errors=True)
    print(f'wrote {out_dir}/annotations/{{{",".join(SPLITS)}}}.json and '
          f'{out_dir}/images/')
    print(summarize(out, stats))
    return out
