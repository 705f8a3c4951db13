"""mmretina.CocoDataset: mmdet's data_list on a clean file; on a bad file an
error naming the file / image / annotation, or boxes dropped and counted."""
import copy
import json
import os
import os.path as osp

import cv2
import numpy as np
import pytest
from mmdet.datasets import CocoDataset as MMDetCocoDataset
from mmdet.registry import DATASETS as MMDET_DATASETS
from mmengine.logging import MMLogger

from mmretina.datasets import CocoDataset
from mmretina.datasets.coco import (CLIPPED, NO_AREA, NON_FINITE,
                                    NOT_POSITIVE, OTHER_CLASS, OUTSIDE,
                                    TOO_SMALL)

CLASSES = ('cat', 'dog')


def _ann(ann_id, img_id, cat_id, bbox, **extra):
    ann = dict(id=ann_id, image_id=img_id, category_id=cat_id, bbox=bbox,
               area=float(bbox[2] * bbox[3]), iscrowd=0)
    ann.update(extra)
    return ann


def clean_coco():
    """Three 40x30 images with boxes inside them, categories cat=1 dog=2."""
    images = [
        dict(id=i, file_name=f'{i}.png', width=40, height=30)
        for i in (1, 2, 3)
    ]
    annotations = [
        _ann(1, 1, 1, [2, 3, 10, 8]),
        _ann(2, 1, 2, [20, 5, 15, 20]),
        _ann(3, 2, 2, [0, 0, 40, 30]),
        _ann(4, 3, 1, [5.5, 6.5, 3, 4]),
    ]
    categories = [dict(id=1, name='cat'), dict(id=2, name='dog')]
    return dict(images=images, annotations=annotations,
                categories=categories)


def write_coco(root, coco, images_on_disk=None, name='ann.json'):
    """Write ``coco`` as ``root/name`` and a black PNG per image (or only
    those in ``images_on_disk``). Returns the json path."""
    os.makedirs(osp.join(root, 'images'), exist_ok=True)
    for img in (coco.get('images', []) if isinstance(coco, dict) else []):
        if not {'file_name', 'width', 'height'} <= set(img):
            continue
        if images_on_disk is None or img['file_name'] in images_on_disk:
            cv2.imwrite(
                osp.join(root, 'images', img['file_name']),
                np.zeros((int(img['height']), int(img['width']), 3),
                         np.uint8))
    path = osp.join(root, name)
    with open(path, 'w') as f:
        json.dump(coco, f)
    return path


def build(root, cls=CocoDataset, classes=CLASSES, **kwargs):
    kwargs.setdefault('filter_cfg', dict(filter_empty_gt=False))
    return cls(
        data_root=str(root),
        ann_file='ann.json',
        data_prefix=dict(img='images/'),
        metainfo=dict(classes=classes),
        pipeline=[],
        **kwargs)


@pytest.fixture
def log_file(tmp_path):
    """A fresh current MMLogger writing to a file; returns a reader."""
    path = tmp_path / 'log.txt'
    MMLogger.get_instance(
        f'test_coco_{tmp_path.name}', log_file=str(path), log_level='INFO')
    return lambda: path.read_text()


# ------------------------------------------------------------ clean files
def test_clean_file_gives_mmdets_data_list(tmp_path):
    write_coco(tmp_path, clean_coco())
    ours = build(tmp_path)
    theirs = build(tmp_path, cls=MMDetCocoDataset)
    assert len(ours) == len(theirs) == 3
    for i in range(3):
        assert ours.get_data_info(i) == theirs.get_data_info(i)
    assert ours.cat_ids == theirs.cat_ids
    assert sum(ours.box_report.values()) == 0


def test_built_from_an_mmdet_config_by_prefixed_name(tmp_path):
    write_coco(tmp_path, clean_coco())
    ds = MMDET_DATASETS.build(
        dict(
            type='mmretina.CocoDataset',
            data_root=str(tmp_path),
            ann_file='ann.json',
            data_prefix=dict(img='images/'),
            metainfo=dict(classes=CLASSES),
            pipeline=[]))
    assert type(ds) is CocoDataset and len(ds) == 3


def test_subset_of_classes_skips_the_others_and_counts_them(tmp_path):
    write_coco(tmp_path, clean_coco())
    ds = build(tmp_path, classes=('dog', ))
    labels = [
        inst['bbox_label'] for i in range(len(ds))
        for inst in ds.get_data_info(i)['instances']
    ]
    assert labels == [0, 0]
    assert ds.box_report[OTHER_CLASS] == 2


# ------------------------------------------------------ annotation file
def test_missing_annotation_file_names_it(tmp_path):
    with pytest.raises(FileNotFoundError,
                       match=r"annotation file '.*nope\.json' does not "
                       r"exist \(built from data_root="):
        CocoDataset(data_root=str(tmp_path), ann_file='nope.json',
                    metainfo=dict(classes=CLASSES), pipeline=[])


def test_annotation_path_that_is_a_directory(tmp_path):
    (tmp_path / 'ann.json').mkdir()
    with pytest.raises(OSError, match=r"annotation file '.*ann\.json' "
                       'cannot be read: '):
        build(tmp_path)


def test_annotations_of_no_image_are_logged(tmp_path, log_file):
    coco = clean_coco()
    coco['annotations'].append(_ann(99, 42, 1, [1, 1, 5, 5]))
    write_coco(tmp_path, coco)
    assert len(build(tmp_path)) == 3
    assert "ann.json': 1 annotations belong to no image of the file and " \
        'are ignored (ids 99).' in log_file()


@pytest.mark.parametrize('content,match', [
    (b'', 'is empty'),
    (b'{"images": [{"id": 1, "file_na', 'is not valid JSON .*truncated'),
    (b'\x89PNG\r\n\x1a\n\x00\x00', 'is not valid JSON'),
])
def test_corrupted_annotation_file_names_it(tmp_path, content, match):
    (tmp_path / 'ann.json').write_bytes(content)
    with pytest.raises(ValueError, match=r"annotation file '.*ann\.json' "
                       + match):
        build(tmp_path)


@pytest.mark.parametrize('coco', [[], dict(annotations=[]),
                                  dict(images=[], categories='cat')])
def test_json_that_is_not_coco_says_what_is_missing(tmp_path, coco):
    write_coco(tmp_path, coco)
    with pytest.raises(ValueError, match="is not in COCO format: it needs "
                       "lists 'images' and 'categories'"):
        build(tmp_path)


@pytest.mark.parametrize('edit,match', [
    (lambda c: c['annotations'][1].pop('bbox'),
     r"annotation #1 \(id=2, image '1.png'\) in '.*ann.json' has no 'bbox'"),
    (lambda c: c['annotations'][2].update(bbox=[0, 0, 4]),
     r"annotation #2 \(id=3, image '2.png'\) .* has bbox=\[0, 0, 4\]; COCO "
     r'boxes are 4 numbers'),
    (lambda c: c['annotations'][0].update(bbox=['1', 2, 3, 4]),
     r'has bbox=\[.1., 2, 3, 4\]'),
    (lambda c: c['annotations'][0].update(category_id=7),
     r"annotation #0 \(id=1, image '1.png'\) .* has category_id=7, which "
     r"is not among the file's categories \(ids \[1, 2\]\)"),
    (lambda c: c['annotations'][3].update(id=1),
     r"'.*ann.json' has duplicate annotation ids: 1"),
    (lambda c: c['images'][2].update(id=1),
     r"'.*ann.json' has duplicate image ids: 1\."),
    (lambda c: c['images'][1].pop('height'),
     r"image #1 \(id=2\) in '.*ann.json' \('2.png'\) has height=None; it "
     r'must be a positive number'),
    (lambda c: c['images'][0].pop('file_name'),
     r"image #0 \(id=1\) in '.*ann.json' has no 'file_name'"),
    (lambda c: c['categories'][0].pop('name'),
     r"category #0 in '.*ann.json' is \{'id': 1\}; categories need an 'id' "
     r"and a 'name'"),
])
def test_malformed_entries_name_the_annotation_or_image(
        tmp_path, edit, match):
    coco = clean_coco()
    edit(coco)
    write_coco(tmp_path, coco)
    with pytest.raises(ValueError, match=match):
        build(tmp_path)


# ------------------------------------------------------------ categories
def test_class_missing_from_file_lists_the_files_categories(tmp_path):
    write_coco(tmp_path, clean_coco())
    # mmdet would give 'dog' label 0 here, i.e. train dogs as 'bird'
    with pytest.raises(ValueError) as exc:
        build(tmp_path, classes=('bird', 'dog'))
    msg = str(exc.value)
    assert "has no category named 'bird' (from metainfo.classes)" in msg
    assert "are: (1, 'cat'), (2, 'dog')" in msg


def test_default_coco_classes_hint_at_metainfo(tmp_path):
    write_coco(tmp_path, clean_coco())
    with pytest.raises(ValueError, match=r"metainfo.classes is mmdet's "
                       r'default \(the 80 COCO classes\): set '
                       r'metainfo=dict\(classes=\(...\)\)'):
        CocoDataset(data_root=str(tmp_path), ann_file='ann.json',
                    data_prefix=dict(img='images/'), pipeline=[])


def test_classes_in_another_order_than_the_file_suggest_the_order(tmp_path):
    write_coco(tmp_path, clean_coco())
    # mmdet labels by file order: 'cat' boxes would be shown as 'dog'
    theirs = build(tmp_path, cls=MMDetCocoDataset, classes=('dog', 'cat'))
    first = theirs.get_data_info(0)['instances'][0]
    assert first['bbox_label'] == 0  # a cat box, named classes[0] == 'dog'
    with pytest.raises(ValueError,
                       match=r"metainfo.classes=\('dog', 'cat'\) lists the "
                       r"categories of '.*ann.json' in another order than "
                       r"the file \(\('cat', 'dog'\)\).*use "
                       r"classes=\('cat', 'dog'\)"):
        build(tmp_path, classes=('dog', 'cat'))


def test_two_categories_with_one_name_are_refused(tmp_path):
    coco = clean_coco()
    coco['categories'].append(dict(id=3, name='dog'))
    write_coco(tmp_path, coco)
    with pytest.raises(ValueError, match=r"several categories named 'dog' "
                       r'\(ids \[2, 3\]\)'):
        build(tmp_path)


# ---------------------------------------------------------------- images
def test_image_missing_on_disk_is_named(tmp_path):
    write_coco(tmp_path, clean_coco(), images_on_disk={'1.png', '3.png'})
    with pytest.raises(FileNotFoundError,
                       match=r"1 of the 3 images listed in '.*ann.json' are "
                       r"missing on disk: '.*images/2.png'"):
        build(tmp_path)


def test_all_images_missing_points_at_data_prefix(tmp_path):
    write_coco(tmp_path, clean_coco())
    with pytest.raises(FileNotFoundError,
                       match=r"none of the 3 images listed in '.*ann.json' "
                       r"exists, e.g. '.*imgs/1.png'. Check data_root="):
        CocoDataset(data_root=str(tmp_path), ann_file='ann.json',
                    data_prefix=dict(img='imgs/'),
                    metainfo=dict(classes=CLASSES), pipeline=[])


def test_check_images_can_be_turned_off(tmp_path):
    write_coco(tmp_path, clean_coco(), images_on_disk=set())
    assert len(build(tmp_path, check_images=False)) == 3


# ----------------------------------------------------------------- boxes
def degenerate_coco():
    coco = clean_coco()
    nan = float('nan')
    coco['annotations'] += [
        _ann(10, 1, 1, [5, 5, 0, 4]),  # zero width
        _ann(11, 1, 1, [5, 5, 4, -3]),  # negative height
        _ann(12, 2, 2, [nan, 5, 4, 4]),  # NaN
        _ann(13, 2, 2, [5, 5, float('inf'), 4]),  # inf
        _ann(14, 2, 1, [50, 5, 4, 4]),  # right of the 40 px wide image
        _ann(15, 3, 1, [-10, -10, 5, 5]),  # above-left of the image
        _ann(16, 3, 2, [30, 20, 20, 20]),  # sticks out: clipped
        _ann(17, 3, 2, [39.5, 2, 5, 5]),  # 0.5 px inside: too small
        _ann(18, 3, 1, [1, 1, 0.5, 9]),  # 0.5 px wide
        _ann(19, 1, 1, [3, 3, 6, 6], area=0),  # bad area, good box: kept
    ]
    del coco['annotations'][-1]['area']
    return coco


def test_degenerate_boxes_are_dropped_and_counted(tmp_path, log_file):
    write_coco(tmp_path, degenerate_coco())
    ds = build(tmp_path)
    assert dict(ds.box_report) == {
        NOT_POSITIVE: 2,
        NON_FINITE: 2,
        OUTSIDE: 2,
        TOO_SMALL: 2,
        CLIPPED: 1,
        NO_AREA: 1,
    }
    boxes = {
        i: [inst['bbox'] for inst in ds.get_data_info(i)['instances']]
        for i in range(len(ds))
    }
    assert boxes[0] == [[2, 3, 12, 11], [20, 5, 35, 25], [3, 3, 9, 9]]
    assert boxes[1] == [[0, 0, 40, 30]]
    assert boxes[2] == [[5.5, 6.5, 8.5, 10.5], [30, 20, 40, 30]]
    log = log_file()
    assert "ann.json': 3 images, 6 boxes of 2 classes. Dropped 8 boxes: " \
        '2 with NaN or inf coordinates (e.g. id 12 in ' \
        "'2.png' bbox=[nan, 5, 4, 4]" in log
    assert '2 with zero or negative width/height (e.g. id 10' in log
    assert '2 less than 1 pixel wide or high inside the image (e.g. id 17' \
        in log
    assert '2 entirely outside the image (e.g. id 14' in log
    assert 'Clipped 1 boxes partly outside the image to its borders ' \
        "(e.g. id 16 in '3.png' bbox=[30, 20, 20, 20])" in log
    assert 'WARNING' in log


def test_no_clipping_keeps_mmdets_boxes(tmp_path):
    write_coco(tmp_path, degenerate_coco())
    ds = build(tmp_path, clip_boxes=False)
    assert [30, 20, 50, 40] in [
        inst['bbox'] for inst in ds.get_data_info(2)['instances']
    ]
    assert CLIPPED not in ds.box_report


# ---------------------------------------------- empty images and filtering
def with_empty_images():
    coco = clean_coco()
    coco['images'] += [
        dict(id=4, file_name='4.png', width=40, height=30),  # no annotation
        dict(id=5, file_name='5.png', width=40, height=30),  # only a bad box
    ]
    coco['annotations'].append(_ann(20, 5, 1, [3, 3, 0, 0]))
    return coco


def test_empty_images_are_kept_as_background_when_asked(tmp_path):
    write_coco(tmp_path, with_empty_images())
    ds = build(tmp_path, filter_cfg=dict(filter_empty_gt=False))
    assert len(ds) == 5
    assert ds.get_data_info(3)['instances'] == []
    assert ds.get_data_info(4)['instances'] == []


def test_filter_empty_gt_also_drops_images_whose_boxes_were_dropped(
        tmp_path, log_file):
    write_coco(tmp_path, with_empty_images())
    ours = build(tmp_path, filter_cfg=dict(filter_empty_gt=True))
    theirs = build(
        tmp_path, cls=MMDetCocoDataset,
        filter_cfg=dict(filter_empty_gt=True))
    # mmdet keeps 5.png (it has an annotation in the file) with no box
    assert len(theirs) == 4
    assert [ours.get_data_info(i)['img_id']
            for i in range(len(ours))] == [1, 2, 3]
    assert 'kept 3 of 5 images (2 without boxes, 0 smaller than ' \
        'min_size=0)' in log_file()


def test_empty_after_filtering_names_the_filter(tmp_path):
    coco = clean_coco()
    write_coco(tmp_path, coco)
    with pytest.raises(ValueError) as exc:
        build(tmp_path, filter_cfg=dict(filter_empty_gt=True, min_size=64))
    msg = str(exc.value)
    assert "dataset '" in msg and "ann.json' is empty after filtering: " \
        'all 3 images were removed by filter_cfg=' in msg
    assert "'min_size': 64" in msg
    assert '(0 have no box of metainfo.classes=' \
        "('cat', 'dog') left, 3 are smaller than min_size)" in msg
    assert 'filter_cfg=dict(filter_empty_gt=False)' in msg


def test_all_boxes_of_other_classes_leaves_dataset_empty(tmp_path):
    coco = clean_coco()
    coco['categories'].append(dict(id=3, name='bird'))
    write_coco(tmp_path, coco)
    with pytest.raises(ValueError, match=r'\(3 have no box of '
                       r"metainfo.classes=\('bird',\) left"):
        build(tmp_path, classes=('bird', ),
              filter_cfg=dict(filter_empty_gt=True))


def test_file_without_images_is_refused(tmp_path):
    coco = clean_coco()
    coco.update(images=[], annotations=[])
    write_coco(tmp_path, coco)
    with pytest.raises(ValueError, match=r"dataset '.*ann.json' is empty: "
                       'the file lists no images'):
        build(tmp_path, test_mode=True)


def test_lazy_init_checks_on_full_init(tmp_path):
    coco = copy.deepcopy(clean_coco())
    coco['annotations'][0]['category_id'] = 9
    write_coco(tmp_path, coco)
    ds = build(tmp_path, lazy_init=True)
    with pytest.raises(ValueError, match='has category_id=9'):
        ds.full_init()
