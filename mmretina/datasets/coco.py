"""COCO-format detection dataset that checks its annotation file on load.

mmdet's ``CocoDataset`` trusts the file. When the file is wrong it either
fails deep inside pycocotools / json / a transform, or -- worse -- trains on
something else than the user meant without a word:

* a name in ``metainfo.classes`` that the file does not have shifts every
  later label by one (``get_cat_ids`` just returns fewer ids), and
  ``classes`` listed in another order than the file's categories gives
  predictions the wrong class names;
* boxes with zero/negative size, NaN, or lying outside the image are
  dropped without a count;
* a dataset that filtering leaves empty hangs (``InfiniteSampler``) or
  trains zero iterations per epoch.

``mmretina.CocoDataset`` is mmdet's class with the same arguments and the
same ``data_list`` for a clean file. On a bad file it raises an error that
names the file, the image or the annotation and says what to change; boxes
it cannot train on are dropped (or clipped to the image) and counted in one
log line. Use it from any mmdet config with ``type='mmretina.CocoDataset'``.
"""
import copy
import json
import logging
import os.path as osp
from collections import Counter, defaultdict
from typing import Dict, List, Optional, Union

from mmdet.datasets import CocoDataset as MMDetCocoDataset
from mmengine.fileio import LocalBackend, get_file_backend, get_local_path
from mmengine.logging import print_log

from ..registry import DATASETS
from ..structures.box_validity import (  # noqa: F401  (box_report keys)
    CLIPPED, DROPPED, NON_FINITE, NOT_POSITIVE, OUTSIDE, TOO_SMALL, check_box)

__all__ = ['CocoDataset']

# Reasons a box is not trained on (keys of ``CocoDataset.box_report``):
# NON_FINITE, NOT_POSITIVE, OUTSIDE, TOO_SMALL, CLIPPED come with the rule.
NO_AREA = "missing or non-positive 'area' (kept)"
OTHER_CLASS = 'of a category not in metainfo.classes'

_MAX_LISTED = 5  # how many file names / ids an error or log line shows


def _listed(items: List, limit: int = _MAX_LISTED) -> str:
    shown = ', '.join(str(i) for i in items[:limit])
    more = len(items) - limit
    return shown + (f', ... ({more} more)' if more > 0 else '')


@DATASETS.register_module()
class CocoDataset(MMDetCocoDataset):
    """mmdet's ``CocoDataset``, validating the annotation file on load.

    Takes mmdet's arguments (``ann_file``, ``metainfo``, ``data_root``,
    ``data_prefix``, ``filter_cfg``, ``pipeline``, ``test_mode``, ...) plus:

    Args:
        check_images (bool): check with ``os.path.exists`` that every image
            the file lists is on disk, and fail naming the missing ones.
            Only for local paths (skipped for remote ``backend_args``).
            Defaults to True.
        clip_boxes (bool): clip boxes that stick out of the image to its
            borders (counted in the log). mmdet keeps them as they are.
            Defaults to True.

    Differences from mmdet's ``CocoDataset`` on the same file:

    * errors (``FileNotFoundError`` / ``ValueError``, naming the file and
      the image or annotation) for: a missing, unreadable or non-JSON
      annotation file; a JSON that is not COCO (no ``images`` /
      ``categories``); an annotation without ``id`` / ``image_id`` /
      ``category_id`` / a 4-number ``bbox``; duplicate image or annotation
      ids; an image entry without ``file_name`` / positive ``width`` and
      ``height``; a ``category_id`` the file does not define; a name of
      ``metainfo.classes`` the file does not have, has twice, or has in
      another order; images listed but missing on disk; a dataset empty
      after filtering (the message names ``filter_cfg``);
    * boxes are dropped for non-finite coordinates, zero or negative size,
      lying outside the image or being < 1 px inside it (mmdet drops most
      of these too, silently); partly-outside boxes are clipped; a missing
      or non-positive ``area`` keeps the box (mmdet drops it; only COCO
      evaluation uses the area). All counted
      in ``box_report`` and logged with examples;
    * ``filter_empty_gt=True`` also drops images whose every box was
      dropped (mmdet keeps them, as all-background images).

    Attributes:
        box_report (Counter): reason -> number of boxes (see the constants
            at the top of this module), filled on load.
    """

    def __init__(self,
                 *args,
                 check_images: bool = True,
                 clip_boxes: bool = True,
                 **kwargs) -> None:
        # set before super().__init__, which loads the file (full_init)
        self.check_images = check_images
        self.clip_boxes = clip_boxes
        self.box_report: Counter = Counter()
        self._examples: Dict[str, List[str]] = defaultdict(list)
        super().__init__(*args, **kwargs)

    # ------------------------------------------------------------- loading
    def load_data_list(self) -> List[dict]:
        """Read and check ``ann_file``; same output as mmdet's."""
        dataset = self._read_ann_file()
        self._check_structure(dataset)

        self.coco = self.COCOAPI()
        self.coco.dataset = dataset
        self.coco.createIndex()
        # mmdet's COCO wrapper aliases these in __init__, before the index
        # exists; point them at the index just built.
        self.coco.img_ann_map = self.coco.imgToAnns
        self.coco.cat_img_map = self.coco.catToImgs

        self.cat_ids = self._match_categories(dataset['categories'])
        self.cat2label = {cat_id: i for i, cat_id in enumerate(self.cat_ids)}
        self.cat_img_map = copy.deepcopy(self.coco.cat_img_map)

        self.box_report = Counter()
        self._examples = defaultdict(list)
        data_list = []
        for img_id in self.coco.get_img_ids():
            raw_img_info = self.coco.load_imgs([img_id])[0]
            raw_img_info['img_id'] = img_id
            raw_ann_info = self.coco.load_anns(
                self.coco.get_ann_ids(img_ids=[img_id]))
            data_list.append(
                self.parse_data_info({
                    'raw_ann_info': raw_ann_info,
                    'raw_img_info': raw_img_info
                }))
        del self.coco

        if self.check_images:
            self._check_images_exist(data_list)
        self._log_box_report(data_list)
        return data_list

    def _read_ann_file(self) -> dict:
        ann_file = self.ann_file
        try:
            with get_local_path(
                    ann_file, backend_args=self.backend_args) as local_path:
                with open(local_path, 'rb') as f:
                    raw = f.read()
        except FileNotFoundError as err:
            raise FileNotFoundError(
                f"annotation file '{ann_file}' does not exist (built from "
                f'data_root={self.data_root!r} and the ann_file of the '
                'dataset config).') from err
        except (IsADirectoryError, PermissionError) as err:
            raise OSError(
                f"annotation file '{ann_file}' cannot be read: {err}") \
                from err
        if not raw.strip():
            raise ValueError(f"annotation file '{ann_file}' is empty.")
        try:
            return json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(
                f"annotation file '{ann_file}' is not valid JSON ({err}); "
                'it is corrupted or truncated, or not a COCO json.') from err

    def _check_structure(self, dataset: dict) -> None:
        """Keys and ids pycocotools and mmdet need, or a clear error."""
        ann_file = self.ann_file
        if not isinstance(dataset, dict) or not all(
                isinstance(dataset.get(k), list)
                for k in ('images', 'categories')):
            found = (sorted(dataset) if isinstance(dataset, dict) else
                     type(dataset).__name__)
            raise ValueError(
                f"annotation file '{ann_file}' is not in COCO format: it "
                "needs lists 'images' and 'categories' (and 'annotations' "
                f'for training); found {found}.')
        dataset.setdefault('annotations', [])

        img_ids = Counter()
        for i, img in enumerate(dataset['images']):
            if not isinstance(img, dict):
                raise ValueError(f"image #{i} in '{ann_file}' is {img!r}, "
                                 'not an object.')
            where = f"image #{i} (id={img.get('id')!r}) in '{ann_file}'"
            if 'id' not in img:
                raise ValueError(f"{where} has no 'id'.")
            img_ids[img['id']] += 1
            if not isinstance(img.get('file_name'), str):
                raise ValueError(f"{where} has no 'file_name'.")
            for key in ('width', 'height'):
                value = img.get(key)
                if not isinstance(value, (int, float)) or not value > 0:
                    raise ValueError(
                        f"{where} ('{img['file_name']}') has {key}="
                        f'{value!r}; it must be a positive number (the '
                        'image size in pixels).')
        dup = [k for k, n in img_ids.items() if n > 1]
        if dup:
            raise ValueError(
                f"annotation file '{ann_file}' has duplicate image ids: "
                f'{_listed(dup)}. Each image needs its own id, or their '
                'annotations get mixed up.')

        for i, cat in enumerate(dataset['categories']):
            if not isinstance(cat, dict) or 'id' not in cat \
                    or not isinstance(cat.get('name'), str):
                raise ValueError(
                    f"category #{i} in '{ann_file}' is {cat!r}; categories "
                    "need an 'id' and a 'name'.")
        cat_ids = {c['id'] for c in dataset['categories']}
        files = {img['id']: img['file_name'] for img in dataset['images']}
        ann_ids = Counter()
        orphans = []
        for i, ann in enumerate(dataset['annotations']):
            if not isinstance(ann, dict):
                raise ValueError(f"annotation #{i} in '{ann_file}' is "
                                 f'{ann!r}, not an object.')
            where = (f"annotation #{i} (id={ann.get('id')!r}, image "
                     f"'{files.get(ann.get('image_id'), '?')}') in "
                     f"'{ann_file}'")
            for key in ('id', 'image_id', 'category_id', 'bbox'):
                if key not in ann:
                    raise ValueError(f"{where} has no '{key}'.")
            bbox = ann['bbox']
            if not (isinstance(bbox, (list, tuple)) and len(bbox) == 4
                    and all(isinstance(v, (int, float)) for v in bbox)):
                raise ValueError(
                    f'{where} has bbox={bbox!r}; COCO boxes are 4 numbers '
                    '[x, y, width, height].')
            if ann['category_id'] not in cat_ids:
                raise ValueError(
                    f"{where} has category_id={ann['category_id']!r}, which "
                    "is not among the file's categories (ids "
                    f'{sorted(cat_ids, key=str)}).')
            if ann['image_id'] not in files:
                orphans.append(ann['id'])
            ann_ids[ann['id']] += 1
        dup = [k for k, n in ann_ids.items() if n > 1]
        if dup:
            raise ValueError(
                f"annotation file '{ann_file}' has duplicate annotation ids: "
                f'{_listed(dup)}.')
        if orphans:
            print_log(
                f"'{ann_file}': {len(orphans)} annotations belong to no image "
                f'of the file and are ignored (ids {_listed(orphans)}).',
                logger='current',
                level=logging.WARNING)

    def _match_categories(self, categories: List[dict]) -> List[int]:
        """Category ids of ``metainfo.classes``, in label order.

        mmdet (dataset and ``CocoMetric`` alike) numbers labels in the order
        the file lists the categories, whatever the order of ``classes``; so
        ``classes`` must name exactly categories of the file, once each and
        in the file's order, or labels get the wrong names.
        """
        classes = list(self.metainfo['classes'])
        ann_file = self.ann_file
        file_cats = [(c.get('id'), c.get('name')) for c in categories]
        by_name = defaultdict(list)
        for cat_id, name in file_cats:
            by_name[name].append(cat_id)

        missing = [c for c in classes if c not in by_name]
        if missing:
            hint = ''
            if tuple(classes) == tuple(MMDetCocoDataset.METAINFO['classes']):
                hint = (' metainfo.classes is mmdet\'s default (the 80 COCO '
                        'classes): set metainfo=dict(classes=(...)) in the '
                        'dataset config.')
            raise ValueError(
                f"annotation file '{ann_file}' has no category named "
                f'{_listed([repr(m) for m in missing])} (from '
                f'metainfo.classes).{hint} The file\'s categories (id, name) '
                f'are: {_listed(file_cats, 20)}.')
        twice = [c for c in classes if len(by_name[c]) > 1]
        if twice:
            raise ValueError(
                f"annotation file '{ann_file}' has several categories named "
                + ', '.join(f'{c!r} (ids {by_name[c]})' for c in twice) +
                '; merge them in the file or rename one.')
        file_order = [name for _, name in file_cats if name in classes]
        if file_order != classes:
            raise ValueError(
                f'metainfo.classes={tuple(classes)} lists the categories of '
                f"'{ann_file}' in another order than the file "
                f'({tuple(file_order)}). mmdet numbers labels in the file\'s '
                'order, so predictions would carry the wrong class names: '
                f'use classes={tuple(file_order)}.')
        return [by_name[name][0] for name in classes]

    def parse_data_info(self, raw_data_info: dict) -> Union[dict, List[dict]]:
        """mmdet's ``data_info`` for one image, boxes checked and counted.

        Returns ``img_path``, ``img_id``, ``height``, ``width``, ... as
        mmdet does, and ``instances``: one dict per kept annotation with
        ``bbox`` ([x1, y1, x2, y2], pixels, clipped to the image when
        ``clip_boxes``), ``bbox_label`` and ``ignore_flag`` (iscrowd).
        """
        img_info = raw_data_info['raw_img_info']
        # mmdet's own parsing for everything but the boxes
        data_info = super().parse_data_info({
            'raw_img_info': img_info,
            'raw_ann_info': []
        })
        instances = []
        for ann in raw_data_info['raw_ann_info']:
            if ann.get('ignore', False):
                continue
            if ann['category_id'] not in self.cat2label:
                self._count(OTHER_CLASS, ann, img_info)
                continue
            bbox = self._check_box(ann, img_info)
            if bbox is None:
                continue
            instance = dict(
                ignore_flag=1 if ann.get('iscrowd', False) else 0,
                bbox=bbox,
                bbox_label=self.cat2label[ann['category_id']])
            if ann.get('segmentation', None):
                instance['mask'] = ann['segmentation']
            instances.append(instance)
        data_info['instances'] = instances
        return data_info

    def _check_box(self, ann: dict, img_info: dict) -> Optional[List[float]]:
        """[x1, y1, x2, y2] of a COCO [x, y, w, h] box, or None (counted).

        The rule is :func:`mmretina.structures.box_validity.check_box`
        (mmdet's ``w < 1 or h < 1``, measured inside the image when
        ``clip_boxes``)."""
        x, y, w, h = ann['bbox']
        verdict, box = check_box((x, y, x + w, y + h), img_info['width'],
                                 img_info['height'], clip=self.clip_boxes)
        if box is None:
            return self._count(verdict, ann, img_info)
        if verdict == CLIPPED:
            self._count(CLIPPED, ann, img_info)
            box = list(box)
        else:  # the file's numbers, unconverted (mmdet keeps ints as ints)
            box = [x, y, x + w, y + h]
        area = ann.get('area')
        if not isinstance(area, (int, float)) or not area > 0:
            self._count(NO_AREA, ann, img_info)
        return box

    def _count(self, reason: str, ann: dict, img_info: dict) -> None:
        self.box_report[reason] += 1
        if len(self._examples[reason]) < 3:
            self._examples[reason].append(
                f"id {ann.get('id')} in '{img_info['file_name']}' "
                f"bbox={ann.get('bbox')}")
        return None

    def _check_images_exist(self, data_list: List[dict]) -> None:
        prefix = self.data_prefix.get('img', '')
        backend = get_file_backend(
            prefix or '.', backend_args=self.backend_args)
        if not isinstance(backend, LocalBackend):
            return  # a stat per image would be a request per image
        missing = [
            info['img_path'] for info in data_list
            if not osp.isfile(info['img_path'])
        ]
        if not missing:
            return
        if len(missing) == len(data_list):
            raise FileNotFoundError(
                f"none of the {len(data_list)} images listed in "
                f"'{self.ann_file}' exists, e.g. '{missing[0]}'. Check "
                f'data_root={self.data_root!r} and '
                f"data_prefix={self.data_prefix!r} in the dataset config.")
        raise FileNotFoundError(
            f'{len(missing)} of the {len(data_list)} images listed in '
            f"'{self.ann_file}' are missing on disk: "
            f'{_listed([repr(m) for m in missing])}. Restore them, or remove '
            'these images (and their annotations) from the file.')

    def _log_box_report(self, data_list: List[dict]) -> None:
        num_boxes = sum(len(d['instances']) for d in data_list)
        head = (f"mmretina.CocoDataset '{self.ann_file}': "
                f'{len(data_list)} images, {num_boxes} boxes of '
                f"{len(self.metainfo['classes'])} classes.")
        problems = []
        dropped = sum(self.box_report[r] for r in DROPPED)
        if dropped:
            problems.append(f'Dropped {dropped} boxes: ' + '; '.join(
                f'{self.box_report[r]} {r} (e.g. '
                f"{', '.join(self._examples[r])})" for r in DROPPED
                if self.box_report[r]) + '.')
        if self.box_report[CLIPPED]:
            problems.append(
                f'Clipped {self.box_report[CLIPPED]} boxes partly outside '
                'the image to its borders (e.g. '
                f"{', '.join(self._examples[CLIPPED])}).")
        if self.box_report[NO_AREA]:
            problems.append(
                f'Kept {self.box_report[NO_AREA]} boxes whose \'area\' is '
                'missing or not positive (mmdet drops them; training does '
                'not use the area, COCO evaluation does) (e.g. '
                f"{', '.join(self._examples[NO_AREA])}).")
        if self.box_report[OTHER_CLASS]:
            problems.append(f'{self.box_report[OTHER_CLASS]} annotations '
                            f'{OTHER_CLASS} were skipped.')
        if not num_boxes and not self.test_mode and data_list:
            problems.append('No box is left to train on: every image '
                            'will be trained as background.')
        level = logging.WARNING if dropped or not num_boxes else logging.INFO
        print_log(' '.join([head] + problems), logger='current', level=level)

    # ----------------------------------------------------------- filtering
    def filter_data(self) -> List[dict]:
        """mmdet's ``filter_cfg`` (``filter_empty_gt``, ``min_size``); raises
        ``ValueError`` when no image is left.

        An image counts as empty when no box of ``metainfo.classes`` is left
        after the checks above (mmdet looks at the raw file, so it keeps
        images whose only boxes were dropped).
        """
        if not self.data_list:
            raise ValueError(f"dataset '{self.ann_file}' is empty: the file "
                             'lists no images.')
        if self.test_mode or self.filter_cfg is None:
            return self.data_list
        filter_empty_gt = self.filter_cfg.get('filter_empty_gt', False)
        min_size = self.filter_cfg.get('min_size', 0)

        valid, empty, small = [], 0, 0
        for data_info in self.data_list:
            if filter_empty_gt and not data_info['instances']:
                empty += 1
            elif min(data_info['width'], data_info['height']) < min_size:
                small += 1
            else:
                valid.append(data_info)
        if not valid:
            # an empty training set hangs in InfiniteSampler or runs epochs
            # of zero iterations; say why it is empty instead
            raise ValueError(
                f"dataset '{self.ann_file}' is empty after filtering: all "
                f'{len(self.data_list)} images were removed by filter_cfg='
                f'{self.filter_cfg} ({empty} have no box of metainfo.classes'
                f"={tuple(self.metainfo['classes'])} left, {small} are "
                'smaller than min_size). Check metainfo.classes and the '
                'boxes (see the log above), lower min_size, or keep images '
                'without boxes with filter_cfg=dict(filter_empty_gt=False).')
        if empty or small:
            print_log(
                f"'{self.ann_file}': filter_cfg={self.filter_cfg} kept "
                f'{len(valid)} of {len(self.data_list)} images ({empty} '
                f'without boxes, {small} smaller than min_size={min_size}).',
                logger='current',
                level=logging.INFO)
        return valid
