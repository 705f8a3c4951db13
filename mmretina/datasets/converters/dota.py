"""DOTA's text formats: the labels of an image and the task-1 results.

Labels (``labelTxt/P0001.txt``; the ``annfiles/`` of split patches), one
object a line, its four corners in pixels of the image (top-left of the
top-left pixel at (0, 0)), its class and whether it is difficult::

    imagesource:GoogleEarth          <- DOTA v1.0 header lines (optional)
    gsd:0.146343590398
    2753 2408 2861 2385 2888 2468 2805 2502 plane 0
    ...

mmrotate's ``DOTADataset`` reads these files (the four corners as a
``qbox``); its ``tools/data/dota/split/img_split.py`` writes them for the
patches, with ``2`` as the difficult flag of an object a patch edge cuts.

Task-1 results (``Task1_plane.txt``, one file per class; what the DOTA
server evaluates and mmrotate's ``DOTAMetric(merge_patches=True)`` writes),
one detection a line::

    P0006 0.97 x1 y1 x2 y2 x3 y3 x4 y4

Both readers take untrusted files: a file over ``max_bytes`` or with more
than ``max_lines`` lines is refused before it is parsed, and a bad line
raises :class:`~.records.ConversionError` (a ValueError) naming the file,
the line and what is wrong with it. Numbers are written as the shortest
text that reads back to the value rounded to 1e-6 px.
"""
import math
import os
import os.path as osp
from typing import List, NamedTuple, Optional, Sequence

import numpy as np

from .records import ConversionError

__all__ = [
    'MAX_LABEL_BYTES', 'MAX_LABEL_LINES', 'DotaLabels', 'Task1Results',
    'read_dota_labels', 'write_dota_labels', 'read_task1', 'write_task1',
    'check_dota_layout', 'dota_config_lines'
]

# The largest DOTA-v2.0 label file holds some ten thousand objects (under
# 1 MB); these bounds leave a wide margin and keep a wrong file (an image,
# a log) from being read into memory whole.
MAX_LABEL_BYTES = 32 * 2**20
MAX_LABEL_LINES = 500_000
_HEADERS = ('imagesource', 'gsd')
_LABEL_FORMAT = ("'x1 y1 x2 y2 x3 y3 x4 y4 class difficult' (eight numbers, "
                 'a class name and an optional 0/1 difficult flag)')
_TASK1_FORMAT = "'image_id score x1 y1 x2 y2 x3 y3 x4 y4'"


class DotaLabels(NamedTuple):
    """The objects of one image, as a DOTA label file holds them.

    Attributes:
        polys (ndarray): N x 8 float64 ``(x1, y1, ..., x4, y4)``, the four
            corners in pixels of the image.
        labels (list[str]): N class names.
        difficult (ndarray): (N,) int64; 0 or 1 in DOTA's files, 2 for an
            object cut by a patch edge in split patches (mmrotate's rule).
        gsd (float, optional): the ``gsd:`` header, metres per pixel.
        imagesource (str, optional): the ``imagesource:`` header.
    """
    polys: np.ndarray
    labels: List[str]
    difficult: np.ndarray
    gsd: Optional[float] = None
    imagesource: Optional[str] = None


class Task1Results(NamedTuple):
    """The detections of one class in a task-1 file.

    Attributes:
        image_ids (list[str]): K image names (without extension).
        scores (ndarray): (K,) float64.
        polys (ndarray): K x 8 float64 corners in pixels of the image.
    """
    image_ids: List[str]
    scores: np.ndarray
    polys: np.ndarray


def _read_bounded(path: str, max_bytes: int, max_lines: int) -> List[str]:
    """The lines of a text file no larger than ``max_bytes`` and
    ``max_lines``, or a ConversionError naming it."""
    if not osp.isfile(path):
        raise ConversionError(f'{path}: no such file')
    size = osp.getsize(path)
    if size > max_bytes:
        raise ConversionError(
            f'{path}: {size / 2**20:.1f} MiB, above the limit of '
            f'{max_bytes / 2**20:.1f} MiB for a DOTA text file; is it the '
            'right file? (raise max_bytes for a larger one)')
    try:
        with open(path, 'rb') as f:
            data = f.read(max_bytes + 1)  # the file may grow meanwhile
        text = data[:max_bytes].decode('utf-8-sig')
    except OSError as e:
        raise ConversionError(f'{path}: cannot read ({e.strerror})') \
            from None
    except UnicodeDecodeError as e:
        raise ConversionError(
            f'{path}: not UTF-8 text (byte {e.start}); a DOTA text file is '
            'plain text') from None
    if len(data) > max_bytes:
        raise ConversionError(f'{path}: larger than the limit of '
                              f'{max_bytes / 2**20:.1f} MiB')
    lines = text.splitlines()
    if len(lines) > max_lines:
        raise ConversionError(
            f'{path}: {len(lines)} lines, above the limit of {max_lines} '
            'for a DOTA text file (raise max_lines for a larger one)')
    return lines


def _numbers(words: Sequence[str], path: str, i: int, what: str,
             form: str) -> List[float]:
    out = []
    for k, w in enumerate(words):
        try:
            v = float(w)
        except ValueError:
            v = math.nan
        if not math.isfinite(v):
            raise ConversionError(
                f'{path}:{i}: {what} {k + 1} is {w!r}, not a finite number; '
                f'a line is {form}')
        out.append(v)
    return out


def read_dota_labels(path: str,
                     classes: Optional[Sequence[str]] = None,
                     max_bytes: int = MAX_LABEL_BYTES,
                     max_lines: int = MAX_LABEL_LINES) -> DotaLabels:
    """Read one DOTA label file.

    Args:
        path (str): the ``.txt`` file.
        classes (list[str], optional): the class names allowed (mmrotate's
            ``DOTADataset`` refuses others); None: any name.
        max_bytes, max_lines (int): refuse larger files.

    Returns:
        DotaLabels

    Raises:
        ConversionError: a missing, unreadable or too large file, or a bad
            line: the message names the file, the line and the fault.
    """
    polys, labels, difficult = [], [], []
    header = dict.fromkeys(_HEADERS)
    allowed = None if classes is None else set(classes)
    for i, line in enumerate(_read_bounded(path, max_bytes, max_lines), 1):
        words = line.split()
        if not words:
            continue
        key, sep, value = line.strip().partition(':')
        if sep and key.strip().lower() in _HEADERS and len(words) <= 2:
            key = key.strip().lower()
            if header[key] is not None or polys:
                raise ConversionError(
                    f'{path}:{i}: a second {key}: line, or one after the '
                    'objects; the header lines (imagesource:, gsd:) come '
                    'first, once each')
            value = value.strip()
            if key == 'gsd':
                # DOTA writes 'gsd:null' where the source gave none
                if value.lower() in ('', 'null', 'none', 'nan'):
                    value = math.nan
                else:
                    try:
                        value = float(value)
                    except ValueError:
                        value = math.nan
                    if not value > 0 or math.isinf(value):
                        raise ConversionError(
                            f'{path}:{i}: {line.strip()[:80]!r}; give the '
                            'ground sample distance in metres (gsd:0.15) or '
                            'gsd:null')
            header[key] = value
            continue
        if len(words) not in (9, 10):
            raise ConversionError(
                f'{path}:{i}: {len(words)} fields ({line.strip()[:80]!r}); '
                f'a line is {_LABEL_FORMAT}')
        polys.append(_numbers(words[:8], path, i, 'coordinate',
                              _LABEL_FORMAT))
        name = words[8]
        if allowed is not None and name not in allowed:
            raise ConversionError(
                f'{path}:{i}: class {name!r} is not one of {list(classes)}; '
                'fix the line or add the class')
        labels.append(name)
        # a line without the flag is not difficult (mmrotate's loader)
        flag = words[9] if len(words) == 10 else '0'
        if not (flag.isascii() and flag.isdigit()):
            raise ConversionError(
                f'{path}:{i}: difficult flag {flag!r}; give 0 or 1 (2: cut '
                'by a patch edge)')
        difficult.append(int(flag))
    gsd = header['gsd']
    return DotaLabels(
        np.asarray(polys, np.float64).reshape(-1, 8), labels,
        np.asarray(difficult, np.int64),
        None if gsd is None or math.isnan(gsd) else gsd,
        header['imagesource'])


def _num(v: float) -> str:
    """The shortest text of ``v`` rounded to 1e-6 (``824.0``, ``0.25``)."""
    return repr(round(float(v), 6) + 0.0)  # + 0.0: no '-0.0'


def write_dota_labels(path: str,
                      polys: np.ndarray,
                      labels: Sequence[str],
                      difficult: Optional[Sequence[int]] = None,
                      gsd: Optional[float] = None,
                      imagesource: Optional[str] = None) -> None:
    """Write one DOTA label file (the folders above it are made).

    Args:
        path (str): the ``.txt`` file.
        polys (array-like): N x 8 (or N x 4 x 2) corners in pixels of the
            image.
        labels (list[str]): N class names (no whitespace).
        difficult (list[int], optional): N flags; default all 0.
        gsd, imagesource: DOTA v1.0's header lines, written when given
            (mmrotate's ``DOTADataset`` reads files without them only: the
            patches' ``annfiles`` have none).
    """
    p = np.asarray(polys, np.float64).reshape(-1, 8)
    diff = np.zeros(len(p), np.int64) if difficult is None else \
        np.asarray(difficult, np.int64).reshape(-1)
    if len(labels) != len(p) or len(diff) != len(p):
        raise ValueError(f'{path}: {len(p)} polygons, {len(labels)} labels '
                         f'and {len(diff)} difficult flags')
    for name in labels:
        if not name or len(str(name).split()) != 1:
            raise ValueError(f'{path}: class name {name!r}: DOTA\'s format '
                             'needs a name without spaces')
    if not np.isfinite(p).all():
        raise ValueError(f'{path}: a corner is NaN or inf')
    lines = []
    if imagesource is not None:
        lines.append(f'imagesource:{imagesource}')
    if gsd is not None:
        lines.append(f'gsd:{gsd!r}')
    for row, name, d in zip(p, labels, diff):
        lines.append(' '.join([_num(v) for v in row] + [str(name), str(d)]))
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    with open(path, 'w', encoding='utf-8') as f:
        f.write(''.join(line + '\n' for line in lines))


def read_task1(path: str,
               max_bytes: int = 16 * MAX_LABEL_BYTES,
               max_lines: int = 64 * MAX_LABEL_LINES) -> Task1Results:
    """Read one task-1 file (``Task1_<class>.txt``: the detections of one
    class over all images).

    Raises:
        ConversionError: as :func:`read_dota_labels`.
    """
    ids, scores, polys = [], [], []
    for i, line in enumerate(_read_bounded(path, max_bytes, max_lines), 1):
        words = line.split()
        if not words:
            continue
        if len(words) != 10:
            raise ConversionError(
                f'{path}:{i}: {len(words)} fields ({line.strip()[:80]!r}); '
                f'a line is {_TASK1_FORMAT}')
        nums = _numbers(words[1:], path, i, 'number', _TASK1_FORMAT)
        ids.append(words[0])
        scores.append(nums[0])
        polys.append(nums[1:])
    return Task1Results(ids, np.asarray(scores, np.float64),
                        np.asarray(polys, np.float64).reshape(-1, 8))


def write_task1(out_dir: str,
                merged: dict,
                classes: Sequence[str]) -> List[str]:
    """Write the detections of whole images as task-1 files, one per class
    (empty for a class without detections), as the DOTA server takes them.

    Args:
        out_dir (str): the folder (made).
        merged (dict): image id -> dict of ``bboxes`` (K x 5 rotated
            ``(cx, cy, w, h, angle)`` in pixels of the image, radians),
            ``scores`` (K,) and ``labels`` (K,) int, indices into
            ``classes`` (what :func:`~.dota_split.merge_patch_results`
            returns).
        classes (list[str]): the class names.

    Returns:
        list[str]: the files, in class order.
    """
    import torch

    from mmretina.structures.rotated import rbox_corners
    lines: List[List[str]] = [[] for _ in classes]
    for img_id, det in merged.items():
        boxes = torch.as_tensor(np.asarray(det['bboxes'], np.float64))
        corners = rbox_corners(boxes.reshape(-1, 5)).reshape(-1, 8).numpy()
        for label, score, poly in zip(np.asarray(det['labels']),
                                      np.asarray(det['scores']), corners):
            if not 0 <= label < len(classes):
                raise ValueError(f'{img_id}: label {label} is not an index '
                                 f'of the {len(classes)} classes')
            lines[int(label)].append(
                ' '.join([img_id, _num(score)] + [_num(v) for v in poly]))
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for name, rows in zip(classes, lines):
        path = osp.join(out_dir, f'Task1_{name}.txt')
        with open(path, 'w', encoding='utf-8') as f:
            f.write(''.join(r + '\n' for r in rows))
        paths.append(path)
    return paths


def check_dota_layout(ann_dir: str,
                      img_dir: str,
                      classes: Optional[Sequence[str]] = None,
                      img_suffix: str = 'png') -> str:
    """Load a folder of label files with mmrotate's ``DOTADataset`` (what
    training will do) and check that each has its image; return a
    summary. ``classes``: the dataset's ``metainfo`` (default: DOTA-v1.0's
    15).

    Raises:
        ConversionError: the dataset refuses the files, or an image is
            missing.
    """
    from mmretina.utils.mmrotate import require_mmrotate
    require_mmrotate("checking the DOTA layout with mmrotate's DOTADataset",
                     models=False)
    from mmrotate.datasets import DOTADataset
    try:
        ds = DOTADataset(
            ann_file=osp.join(osp.abspath(ann_dir), ''), data_root='',
            data_prefix=dict(img_path=osp.join(osp.abspath(img_dir), '')),
            metainfo=None if classes is None else dict(
                classes=tuple(classes)),
            img_suffix=img_suffix, pipeline=[], serialize_data=False,
            test_mode=True)
    except KeyError as e:
        raise ConversionError(
            f'{ann_dir}: mmrotate\'s DOTADataset knows no class {e}; give '
            'the class names (metainfo=dict(classes=...), --classes)') \
            from None
    except (ValueError, IndexError, OSError) as e:
        raise ConversionError(
            f'{ann_dir}: written, but mmrotate\'s DOTADataset refuses it: '
            f'{e!r}') from None
    missing = [d['img_path'] for d in ds.data_list
               if not osp.isfile(d['img_path'])]
    if missing:
        raise ConversionError(
            f'{ann_dir}: {len(missing)} label files without their image, '
            f'e.g. {missing[0]}')
    n = sum(len(d['instances']) for d in ds.data_list)
    return f'{len(ds)} images, {n} objects'


def dota_config_lines(data_root: str,
                      splits: dict,
                      classes: Optional[Sequence[str]] = None,
                      img_suffix: str = 'png') -> str:
    """The dataset lines of mmrotate's ``DOTADataset`` to paste into a
    config (``configs/_base_/datasets/dota.py`` of mmrotate has the rest).

    Args:
        data_root (str): the folder the paths are relative to.
        splits (dict): name -> ``(ann_dir, img_dir)``.
        classes (list[str], optional): the class names (default: DOTA's 15,
            the dataset's own).
        img_suffix (str): the images' extension.
    """
    def rel(path: str) -> str:
        return osp.join(osp.relpath(path, data_root), '')

    lines = ["# dataset lines for your config (mmrotate's DOTADataset "
             'reads this layout):']
    meta = ''
    if classes is not None:
        lines += [f'classes = {tuple(classes)!r}',
                  f'num_classes = {len(classes)}  # '
                  'model.bbox_head.num_classes']
        meta = ', metainfo=dict(classes=classes)'
    suffix = '' if img_suffix == 'png' else f', img_suffix={img_suffix!r}'
    lines.append(f'data_root = {osp.join(data_root, "")!r}')
    for name, (ann_dir, img_dir) in splits.items():
        lines.append(
            f"{name}_dataset = dict(type='DOTADataset', data_root=data_root, "
            f'ann_file={rel(ann_dir)!r}, data_prefix=dict(img_path='
            f'{rel(img_dir)!r}){suffix}{meta})')
    first = next(iter(splits))
    lines.append(f'# e.g. train_dataloader = dict(dataset={first}_dataset)')
    return '\n'.join(lines)
