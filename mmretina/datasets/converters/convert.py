"""VOC / CSV / YOLO annotations to COCO json that ``mmretina.CocoDataset``
loads: read (one reader per format), check each box with the one validity
rule (:mod:`mmretina.structures.box_validity`), resolve classes, split, and
write (:mod:`.coco_writer`). ``tools/dataset_converters/to_coco.py`` is the
command line over :func:`convert_to_coco`."""
import contextlib
import io
import os
import os.path as osp
from collections import Counter, OrderedDict
from typing import Dict, List, Optional, Tuple

import numpy as np

from mmretina.structures.box_validity import (NON_FINITE, NOT_POSITIVE,
                                              OUTSIDE, TOO_SMALL, check_box)
from .coco_writer import to_coco_dict, write_json
from .csv import load_csv
from .records import (Box, ConversionError, ImageRecord, image_size,
                      read_lines, where)
from .voc import load_voc
from .yolo import load_yolo, load_yolo_names

__all__ = [
    'TOLERANCE', 'fill_sizes', 'finish_boxes', 'resolve_classes',
    'split_records', 'check_with_mmretina', 'convert_to_coco', 'config_lines'
]

# A box may stick out of the image by this much (rounding in the tool that
# wrote it) and is then clipped silently.
TOLERANCE = 1.0


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


def finish_boxes(records: List[ImageRecord], clip: bool,
                 report: Counter) -> None:
    """YOLO boxes to pixels; check every box against its image with
    :func:`~mmretina.structures.box_validity.check_box` (clipped to the
    image). Without ``clip``, a box that sticks out by more than
    :data:`TOLERANCE` px or would be dropped raises; with it, such boxes
    are clipped or dropped and counted in ``report``."""
    for rec in records:
        kept = []
        for b in rec.boxes:
            if b.extra.get('yolo'):
                cx, cy, w, h = b.x1, b.y1, b.x2, b.y2
                b.x1, b.x2 = (cx - w / 2) * rec.width, (cx + w / 2) * rec.width
                b.y1, b.y2 = ((cy - h / 2) * rec.height,
                              (cy + h / 2) * rec.height)
            verdict, box = check_box((b.x1, b.y1, b.x2, b.y2), rec.width,
                                     rec.height, clip=True)
            if verdict in (NON_FINITE, NOT_POSITIVE):
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
            if verdict in (OUTSIDE, TOO_SMALL):
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
            b.x1, b.y1, b.x2, b.y2 = box
            kept.append(b)
        rec.boxes = kept


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
    """Split by image lists (``split_files``: name -> file of image paths
    or stems) or by ``ratios`` (train, val, test; shuffled with ``seed``);
    neither: one split, ``all``."""
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


def convert_to_coco(fmt: str,
                    img_dir: str,
                    out_dir: str,
                    ann_dir: Optional[str] = None,
                    csv_path: Optional[str] = None,
                    label_dir: Optional[str] = None,
                    names_file: Optional[str] = None,
                    classes: Optional[List[str]] = None,
                    skip_unknown: bool = False,
                    one_based: bool = True,
                    skip_difficult: bool = False,
                    clip_boxes: bool = False,
                    ratios: Optional[List[float]] = None,
                    split_files: Optional[Dict[str, str]] = None,
                    seed: int = 0
                    ) -> Tuple['OrderedDict[str, dict]', List[str]]:
    """Read, check and split the input; write
    ``out_dir/annotations/<split>.json`` per split.

    Args:
        fmt (str): ``'voc'`` (reads ``ann_dir``), ``'csv'`` (``csv_path``)
            or ``'yolo'`` (``label_dir``, default ``img_dir``, and the class
            names of ``names_file``).
        img_dir (str): image root; the json's ``file_name`` is relative to
            it.
        classes (list[str], optional): VOC / CSV class order (default: the
            names found, sorted).
        Others: as the options of ``tools/dataset_converters/to_coco.py``.

    Returns:
        tuple: ``({split: {'path', 'coco'}}, class names)``.
    """
    report: Counter = Counter()
    if fmt == 'voc':
        records = load_voc(ann_dir, one_based, skip_difficult)
    elif fmt == 'csv':
        records = load_csv(csv_path)
    elif fmt == 'yolo':
        names = load_yolo_names(names_file)
        records = load_yolo(img_dir, label_dir or img_dir, names)
    else:
        raise ConversionError(f'format {fmt!r}: use voc, csv or yolo.')
    dup = [n for n, c in Counter(r.file_name for r in records).items()
           if c > 1]
    if dup:
        first = next(r for r in records if r.file_name == dup[0])
        raise ConversionError(
            f'{where(first.src, first.line)}: image {dup[0]!r} is named by '
            'more than one annotation file.')
    fill_sizes(records, img_dir)
    finish_boxes(records, clip_boxes, report)
    if fmt == 'yolo':
        classes = list(names)
    else:
        classes = resolve_classes(records, classes, skip_unknown, report)
    splits = split_records(records, ratios, split_files, seed)
    out = OrderedDict()
    for name, recs in splits.items():
        coco = to_coco_dict(recs, classes)
        path = osp.join(out_dir, 'annotations', f'{name}.json')
        write_json(coco, path)
        out[name] = dict(path=path, coco=coco)
    for reason, n in sorted(report.items()):
        print(f'note: {n} box(es) {reason}.')
    return out, classes


def config_lines(out: dict, classes: List[str], img_dir: str) -> str:
    """The dataset lines to paste into a config for the written files."""
    names = list(out)
    train = 'train' if 'train' in out else names[0]
    val = 'val' if 'val' in out else train
    lines = [
        '# dataset lines for your config (see README "Train on your own '
        'data"):',
        f'classes = {tuple(classes)!r}',
        f'num_classes = {len(classes)}  # model.bbox_head.num_classes',
        f"train_ann = {out[train]['path']!r}",
        f"val_ann = {out[val]['path']!r}",
        f'img_dir = {osp.join(img_dir, "")!r}  # data_prefix=dict(img=...)',
    ]
    return '\n'.join(lines)
