"""The oriented demo set (mmretina.datasets.converters.oriented_demo):
deterministic by seed, split by background, 3:1 objects wholly in their
image that never overlap, packed so that their enclosing boxes do, and
readable by mmrotate's DOTADataset."""
import filecmp
import json
import os
import os.path as osp

import numpy as np
import pytest
import torch

from mmretina.datasets.converters.dota import read_dota_labels
from mmretina.datasets.converters.oriented_demo import (CLASSES,
                                                        SPLIT_BACKGROUNDS,
                                                        draw_scene,
                                                        make_oriented_demo,
                                                        object_corners)
from mmretina.structures import pairwise_iou
from mmretina.structures.rotated import corners_to_rbox, rotated_iou

SMALL = dict(train=2, val=1, test=2)


@pytest.fixture(scope='module')
def wheel():
    from tests.df_fixtures import _wheel
    return _wheel()


@pytest.fixture(scope='module')
def demo(wheel, tmp_path_factory):
    out = str(tmp_path_factory.mktemp('oriented_demo'))
    summary = make_oriented_demo(out, wheel=wheel, seed=3, size=192,
                                 num_images=SMALL, log=lambda s: None)
    return out, summary


def labels_of(root, split):
    ann = osp.join(root, split, 'annfiles')
    return {f[:-4]: read_dota_labels(osp.join(ann, f))
            for f in sorted(os.listdir(ann))}


def test_object_corners_front_left_first_clockwise():
    c = object_corners((10, 20), 6, 2, 0.0)  # heading +x, y down
    np.testing.assert_allclose(c, [[13, 19], [13, 21], [7, 21], [7, 19]])
    # shoelace area > 0 in image coordinates (y down): clockwise on screen
    x, y = c[:, 0], c[:, 1]
    assert 0.5 * np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y) == 12


def test_same_seed_same_set_other_seed_another(demo, wheel, tmp_path):
    root, summary = demo
    again = str(tmp_path / 'again')
    assert make_oriented_demo(again, wheel=wheel, seed=3, size=192,
                              num_images=SMALL, log=lambda s: None) == summary
    for split, n in SMALL.items():
        for sub in ('images', 'annfiles'):
            names = sorted(os.listdir(osp.join(root, split, sub)))
            assert len(names) == n
            _, mismatch, errors = filecmp.cmpfiles(
                osp.join(root, split, sub), osp.join(again, split, sub),
                names, shallow=False)
            assert mismatch == [] and errors == []
    other = str(tmp_path / 'other')
    make_oriented_demo(other, wheel=wheel, seed=4, size=192,
                       num_images=dict(train=1), log=lambda s: None)
    assert not filecmp.cmp(osp.join(root, 'train/annfiles/train_0000.txt'),
                           osp.join(other, 'train/annfiles/train_0000.txt'),
                           shallow=False)


def test_splits_by_background(demo):
    root, summary = demo
    seen = [set(b) for b in SPLIT_BACKGROUNDS.values()]
    assert not (seen[0] & seen[1] or seen[0] & seen[2] or seen[1] & seen[2])
    with open(osp.join(root, 'oriented_demo.json')) as f:
        written = json.load(f)
    assert written == json.loads(json.dumps(summary))
    for split, info in written['splits'].items():
        assert info['backgrounds'] == list(SPLIT_BACKGROUNDS[split])
        assert info['objects'] == sum(
            len(l.labels) for l in labels_of(root, split).values())


def test_objects_whole_elongated_and_not_overlapping(demo):
    root, _ = demo
    for split in SMALL:
        for name, lab in labels_of(root, split).items():
            assert len(lab.labels) >= 10, name
            assert set(lab.labels) <= set(CLASSES)
            corners = lab.polys.reshape(-1, 4, 2)
            assert corners.min() >= 0.5 and corners.max() <= 191.5
            length = np.linalg.norm(corners[:, 0] - corners[:, 3], axis=1)
            width = np.linalg.norm(corners[:, 0] - corners[:, 1], axis=1)
            assert np.all((length / width > 2.4) & (length / width < 3.7))
            rboxes = corners_to_rbox(corners).float()
            iou = rotated_iou(rboxes, rboxes)
            iou.fill_diagonal_(0)
            # touching, never overlapping (0.02: a shared anti-aliased edge)
            assert iou.max() < 0.02, name


def test_packed_so_that_enclosing_boxes_overlap_and_miss(demo):
    """What the set is for: neighbours whose axis-aligned boxes overlap
    while the objects do not, and objects that their own enclosing box does
    not match at rotated IoU 0.5 (a 3:1 rectangle more than 18.4 degrees
    from an axis)."""
    root, _ = demo
    crowded = missed = total = 0
    for lab in labels_of(root, 'train').values():
        c = lab.polys.reshape(-1, 4, 2)
        h = torch.tensor(np.c_[c.min(1), c.max(1)], dtype=torch.float32)
        iou = pairwise_iou(h, h)
        iou.fill_diagonal_(0)
        crowded += int((iou.max(1).values >= 0.1).sum())
        as_rbox = torch.cat([(h[:, :2] + h[:, 2:]) / 2, h[:, 2:] - h[:, :2],
                             torch.zeros(len(h), 1)], 1)
        best = rotated_iou(as_rbox, corners_to_rbox(c).float(),
                           aligned=True)
        missed += int((best < 0.5).sum())
        total += len(c)
    assert crowded / total > 0.3
    assert 0.3 < missed / total < 0.9


def test_read_by_mmrotate_dota_dataset(demo):
    from mmretina.utils.mmrotate import require_mmrotate
    require_mmrotate()
    from mmrotate.datasets import DOTADataset
    root, _ = demo
    ds = DOTADataset(data_root=root, ann_file='test/annfiles/',
                     data_prefix=dict(img_path='test/images/'),
                     metainfo=dict(classes=CLASSES), pipeline=[],
                     test_mode=True)
    assert len(ds) == SMALL['test']
    info = ds.get_data_info(0)
    lab = labels_of(root, 'test')['test_0000']
    assert len(info['instances']) == len(lab.labels)
    assert [CLASSES[i['bbox_label']] for i in info['instances']] == \
        lab.labels


def test_draw_scene_keeps_the_background_outside_objects():
    rng = np.random.default_rng(0)
    bg = np.full((128, 128, 3), 90, np.uint8)
    img, corners, labels = draw_scene(bg, rng, 10, 20)
    assert img.shape == bg.shape and img.dtype == np.uint8
    assert 10 <= len(labels) <= 20 and corners.shape == (len(labels), 4, 2)
    assert abs(float(img[:3, :3].mean()) - 90) < 20  # noise, maybe shade


def test_missing_wheel_says_how_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError, match='pip download deepforest'):
        make_oriented_demo(str(tmp_path), wheel=str(tmp_path / 'no.whl'))
