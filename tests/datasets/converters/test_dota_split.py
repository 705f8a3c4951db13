"""DOTA patches (mmretina/datasets/converters/dota_split.py): windows,
kept and cut objects and padding by the rules of mmrotate's img_split.py
(not in the wheel: its formula is written out below), patch names, image
size bounds, and merging patch detections back (against mmrotate's
DOTAMetric.merge_results, which is in the wheel)."""
import json
import os
import os.path as osp
import struct
import zlib
from itertools import product
from math import ceil

import cv2
import numpy as np
import pytest
import torch

from mmretina.datasets.converters.dota import (ConversionError,
                                               read_dota_labels, read_task1,
                                               write_dota_labels, write_task1)
from mmretina.datasets.converters.dota_split import (
    PADDING_VALUE, TRUNCATED, load_split_config, merge_patch_results,
    parse_patch_name, patch_name, polygon_iof, read_image_size,
    sliding_windows, split_dota, window_objects)
from mmretina.structures.rotated import corners_to_rbox, rbox_corners


def script_windows(width, height, size, gap):
    """get_sliding_window of mmrotate 1.x's img_split.py, one size, before
    its image-rate filter (the formula as the script writes it)."""
    step = size - gap
    x_num = 1 if width <= size else ceil((width - size) / step + 1)
    x_start = [step * i for i in range(x_num)]
    if len(x_start) > 1 and x_start[-1] + size > width:
        x_start[-1] = width - size
    y_num = 1 if height <= size else ceil((height - size) / step + 1)
    y_start = [step * i for i in range(y_num)]
    if len(y_start) > 1 and y_start[-1] + size > height:
        y_start[-1] = height - size
    return [(x, y, x + size, y + size) for x, y in product(x_start, y_start)]


def box(x0, y0, x1, y1):
    return [x0, y0, x1, y0, x1, y1, x0, y1]


def test_windows_follow_the_script_formula():
    rng = np.random.default_rng(0)
    sizes = [(int(w), int(h)) for w, h in rng.integers(200, 6000, (300, 2))]
    sizes += [(1024, 1024), (1848, 1025), (1848, 1848), (1849, 1), (1, 1)]
    for (w, h), (size, gap) in product(sizes, [(1024, 200), (1024, 500),
                                                (800, 150), (512, 0)]):
        got = sliding_windows(w, h, [size], [gap], img_rate_thr=0)
        assert got.tolist() == [list(t) for t in script_windows(w, h, size,
                                                               gap)]


def test_windows_by_hand_and_the_image_rate_rule():
    # 2300 px: starts 824 apart, the last moved back to 2300 - 1024
    assert sliding_windows(2300, 1700).tolist() == [
        [0, 0, 1024, 1024], [0, 676, 1024, 1700], [824, 0, 1848, 1024],
        [824, 676, 1848, 1700], [1276, 0, 2300, 1024],
        [1276, 676, 2300, 1700]]
    # a narrow image: every window has 500 / 1024 < 0.6 on the image, the
    # largest share: all kept, reaching past the image
    narrow = sliding_windows(500, 3000)
    assert narrow[:, 1].tolist() == [0, 824, 1648, 1976]
    assert (narrow[:, 2] == 1024).all()
    # 400 px windows cover a 500 px image: the 1024 window (0.24) goes
    assert sliding_windows(500, 500, [1024, 400], [200, 100]).tolist() == [
        [0, 0, 400, 400], [0, 100, 400, 500], [100, 0, 500, 400],
        [100, 100, 500, 500]]
    assert sliding_windows(500, 500).tolist() == [[0, 0, 1024, 1024]]
    with pytest.raises(ValueError, match='gap must be'):
        sliding_windows(500, 500, [400], [400])


def test_patch_names_round_trip():
    assert patch_name('P0001', 1024, 824, 0) == 'P0001__1024__824___0'
    assert parse_patch_name('P0001__1024__824___0') == ('P0001', 824, 0)
    assert parse_patch_name('dir/P0001__1024__0___676.png') == \
        ('P0001', 0, 676)
    # DOTA devkit's names carry the rate; names may hold '__'
    assert parse_patch_name('P0001__1.0__0___676') == ('P0001', 0, 676)
    assert parse_patch_name('a__b__2048__10___20') == ('a__b', 10, 20)
    with pytest.raises(ValueError, match="'P0001' is not a patch name"):
        parse_patch_name('P0001')


def test_iof_equals_mmrotate_rotated_iof():
    """Rotated rectangles against windows: the shapely IoF equals mmcv's
    box_iou_rotated (mode='iof', mmrotate's arithmetic) within float32."""
    from mmretina.structures.rotated import rotated_iou
    rng = np.random.default_rng(1)
    rboxes = torch.tensor(np.c_[rng.uniform(0, 300, (60, 2)),
                                rng.uniform(5, 80, (60, 2)),
                                rng.uniform(-np.pi, np.pi, 60)])
    windows = np.array([[0, 0, 200, 200], [100, 50, 300, 250],
                        [-20, 150, 180, 350]])
    win_r = torch.tensor([[(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0, 0]
                          for x0, y0, x1, y1 in windows], dtype=torch.float64)
    iof, inside = polygon_iof(rbox_corners(rboxes).reshape(-1, 8).numpy(),
                              windows)
    ref = rotated_iou(rboxes, win_r, mode='iof').numpy()
    np.testing.assert_allclose(iof, ref, atol=2e-5)
    assert (iof[inside] == 1).all() and 0 < inside.sum() < inside.size


def test_bow_tie_and_degenerate_objects_do_not_stop_the_split():
    polys = np.array([[0, 0, 10, 10, 10, 0, 0, 10],  # corners out of order
                      [5, 5, 5, 5, 5, 5, 5, 5]], float)  # a point
    iof, inside = polygon_iof(polys, np.array([[0, 0, 5, 5], [0, 0, 20,
                                                              20]]))
    # make_valid: two triangles of 25 px2 meeting at (5, 5); the window
    # 0..5 holds the half of the left one above y = x: 12.5 of 50 px2
    np.testing.assert_allclose(iof[0], [0.25, 1.0])
    assert iof[1].tolist() == [0, 0] and inside[1].all()


def gradient(h, w):
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([xx % 256, yy % 256, (xx + yy) % 256], -1).astype(
        np.uint8)


# objects of a 1400 x 1100 image, and the windows (x, y) that keep them,
# cut (*) or whole; windows: x 0..1024 / 376..1400, y 0..1024 / 76..1100
OBJECTS = {
    'A': (box(100, 100, 200, 150), 0, {(0, 0), (0, 76)}),
    # 44 % inside x < 1024: left out there
    'B': (box(980, 500, 1080, 540), 0, {(376, 0), (376, 76)}),
    # 80 % inside x < 1024: kept and cut
    'C': (box(1000, 300, 1030, 330), 1, {(0, 0, '*'), (0, 76, '*'),
                                         (376, 0), (376, 76)}),
    'D': (box(1300, 1050, 1350, 1090), 1, {(376, 76)}),
    'E': ([700, 520, 730, 550, 700, 580, 670, 550], 0,
          {(0, 0), (0, 76), (376, 0), (376, 76)}),
    # 90 % above y = 1024: kept and cut there
    'F': (box(50, 1015, 90, 1025), 0, {(0, 0, '*'), (0, 76)}),
}


@pytest.fixture
def dota_dir(tmp_path):
    """images/ and labelTxt/ of two images: 1400 x 1100 with OBJECTS, and a
    900 x 700 one (one window, padded) without a label file."""
    img_dir, ann_dir = tmp_path / 'images', tmp_path / 'labelTxt'
    os.makedirs(img_dir)
    cv2.imwrite(str(img_dir / 'P0001.png'), gradient(1100, 1400))
    cv2.imwrite(str(img_dir / 'P0002.png'), gradient(700, 900))
    names = sorted(OBJECTS)
    write_dota_labels(str(ann_dir / 'P0001.txt'),
                      [OBJECTS[n][0] for n in names], names,
                      [OBJECTS[n][1] for n in names], gsd=0.5,
                      imagesource='GoogleEarth')
    return tmp_path


def test_split_writes_the_patches_and_objects_of_the_rules(dota_dir):
    out = str(dota_dir / 'split')
    result = split_dota([str(dota_dir / 'images')], out,
                        [str(dota_dir / 'labelTxt')], log=lambda s: None)
    names = sorted(osp.splitext(f)[0] for f in os.listdir(f'{out}/images'))
    assert names == ['P0001__1024__0___0', 'P0001__1024__0___76',
                     'P0001__1024__376___0', 'P0001__1024__376___76',
                     'P0002__1024__0___0']
    assert sorted(os.listdir(f'{out}/annfiles')) == [n + '.txt'
                                                     for n in names]
    seen = {n: set() for n in OBJECTS}
    img = gradient(1100, 1400)
    for name in names[:4]:
        _, x, y = parse_patch_name(name)
        patch = cv2.imread(f'{out}/images/{name}.png')
        np.testing.assert_array_equal(patch, img[y:y + 1024, x:x + 1024])
        lab = read_dota_labels(f'{out}/annfiles/{name}.txt')
        assert lab.gsd is None and lab.imagesource is None  # no header
        for poly, label, flag in zip(lab.polys, lab.labels, lab.difficult):
            # written whole, moved to the patch's pixels
            np.testing.assert_allclose(poly + np.tile([x, y], 4),
                                       OBJECTS[label][0], atol=1e-9)
            cut = flag == TRUNCATED
            assert flag == (TRUNCATED if cut else OBJECTS[label][1])
            seen[label].add((x, y, '*') if cut else (x, y))
    assert seen == {n: o[2] for n, o in OBJECTS.items()}
    # 900 x 700 in a 1024 window: padded at the right and bottom
    patch = cv2.imread(f'{out}/images/P0002__1024__0___0.png')
    np.testing.assert_array_equal(patch[:700, :900], gradient(700, 900))
    assert (patch[700:] == PADDING_VALUE).all()
    assert (patch[:, 900:] == PADDING_VALUE).all()
    assert read_dota_labels(f'{out}/annfiles/P0002__1024__0___0.txt') \
        .labels == []
    report = result['report']
    assert report['patches'] == 5
    assert report['objects in the patches'] == sum(
        len(o[2]) for o in OBJECTS.values())
    assert report['of which cut by a patch edge (difficult 2)'] == 3
    assert report['images without a label file (no objects)'] == 1


def test_rates_no_padding_and_iof_threshold(dota_dir):
    out = str(dota_dir / 'half')
    # rate 0.5: windows of 2048 px (gap 400) on the image as it is
    split_dota([str(dota_dir / 'images')], out, None, rates=[0.5],
               padding=False, log=lambda s: None)
    assert sorted(os.listdir(f'{out}/images')) == [
        'P0001__2048__0___0.png', 'P0002__2048__0___0.png']
    assert cv2.imread(f'{out}/images/P0001__2048__0___0.png').shape == \
        (1100, 1400, 3)
    polys = np.array([OBJECTS['B'][0]], float)
    windows = np.array([[0, 0, 1024, 1024]])
    for thr, kept in [(0.44, [0]), (0.45, [])]:
        idx, cut = window_objects(polys, windows, thr)[0]
        assert idx.tolist() == kept and cut.all()


def test_bad_inputs_name_the_file(dota_dir, tmp_path):
    with open(dota_dir / 'labelTxt' / 'P0001.txt', 'a') as f:
        f.write('1 2 3 4 5 6 7 ship 0\n')
    with pytest.raises(ConversionError, match=r'P0001.txt:9: 9 fields|'
                       r"P0001.txt:9: coordinate 8 is 'ship'"):
        split_dota([str(dota_dir / 'images')], str(tmp_path / 'a'),
                   [str(dota_dir / 'labelTxt')], log=lambda s: None)
    os.makedirs(tmp_path / 'full')
    open(tmp_path / 'full' / 'x', 'w').close()
    with pytest.raises(ConversionError, match='exists and is not empty'):
        split_dota([str(dota_dir / 'images')], str(tmp_path / 'full'))
    with pytest.raises(ConversionError, match='several sizes or several '
                       'rates, not both'):
        split_dota([str(dota_dir / 'images')], str(tmp_path / 'b'),
                   sizes=[1024, 512], gaps=[200, 100], rates=[0.5, 1])
    with pytest.raises(ConversionError, match='nope: no such image folder'):
        split_dota([str(tmp_path / 'nope')], str(tmp_path / 'c'))


def png_header(width, height):
    """A PNG of a header only: it declares its size and holds no pixel."""
    def chunk(kind, data):
        return (struct.pack('>I', len(data)) + kind + data +
                struct.pack('>I', zlib.crc32(kind + data)))
    return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack(
        '>IIBBBBB', width, height, 8, 2, 0, 0, 0)) + chunk(b'IEND', b''))


def test_image_sizes_are_bounded_from_the_header(tmp_path):
    for w, h, limit, said in [(12000, 12000, 10**8, '12000 x 12000 px'),
                              (100000, 100000, None,
                               r'100000 x 100000 px \(10000 megapixels')]:
        path = tmp_path / f'{w}.png'
        path.write_bytes(png_header(w, h))  # 70 bytes
        kw = {} if limit is None else dict(max_pixels=limit)
        with pytest.raises(ConversionError, match=rf'{path}: {said}.*'
                           'above the limit'):
            read_image_size(str(path), **kw)
    assert read_image_size(str(tmp_path / '12000.png')) == (12000, 12000)
    (tmp_path / 'P0001.png').write_bytes(b'not an image')
    with pytest.raises(ConversionError, match='P0001.png: neither PIL .* nor GDAL .* reads it'):
        read_image_size(str(tmp_path / 'P0001.png'))


def test_split_config_of_mmrotate_is_read_and_checked(tmp_path):
    # mmrotate 1.x's split_configs/dota1_0/ss_trainval.json
    cfg = dict(nproc=10, img_dirs=['data/DOTA/train/images/'],
               ann_dirs=['data/DOTA/train/labelTxt/'], sizes=[1024],
               gaps=[200], rates=[1.0], img_rate_thr=0.6, iof_thr=0.7,
               no_padding=False, padding_value=[104, 116, 124],
               save_dir='data/split_ss_dota/trainval/', save_ext='.png')
    (tmp_path / 'ss.json').write_text(json.dumps(cfg))
    assert load_split_config(str(tmp_path / 'ss.json')) == cfg
    for bad, said in [(dict(sizes=1024), 'sizes is 1024; give a list'),
                      (dict(iof_thr='0.7'), "iof_thr is '0.7'"),
                      (dict(no_padding=1), 'no_padding is 1; give a bool'),
                      (dict(size=[1024]), r"unknown keys \['size'\]")]:
        (tmp_path / 'bad.json').write_text(json.dumps(bad))
        with pytest.raises(ConversionError, match=said):
            load_split_config(str(tmp_path / 'bad.json'))


def detections_of_patches(out):
    """Each patch's labels as detections: rotated boxes in the patch's
    pixels (float32, as a model gives them), a score per object."""
    results = []
    for f in sorted(os.listdir(f'{out}/annfiles')):
        lab = read_dota_labels(f'{out}/annfiles/{f}')
        classes = sorted(OBJECTS)
        labels = np.array([classes.index(n) for n in lab.labels], np.int64)
        results.append(dict(
            img_id=f[:-4], bboxes=corners_to_rbox(lab.polys).numpy(),
            scores=(0.5 + labels / 10).astype(np.float32), labels=labels))
    return results


def test_merge_round_trip_gives_the_original_boxes(dota_dir):
    out = str(dota_dir / 'split')
    split_dota([str(dota_dir / 'images')], out, [str(dota_dir / 'labelTxt')],
               log=lambda s: None)
    results = detections_of_patches(out)
    assert sum(len(r['labels']) for r in results) == 15
    merged = merge_patch_results(results)
    assert sorted(merged) == ['P0001', 'P0002']
    assert merged['P0002']['bboxes'].shape == (0, 5)  # no detection
    m = merged['P0001']
    classes = sorted(OBJECTS)
    assert m['labels'].tolist() == list(range(len(classes)))
    want = corners_to_rbox(np.array([OBJECTS[n][0] for n in classes],
                                    float)).double()
    got = rbox_corners(torch.from_numpy(m['bboxes'])).numpy()
    want = rbox_corners(want).numpy()
    # the same rectangles (a square's corners may come in another order)
    dist = np.linalg.norm(got[:, :, None] - want[:, None], axis=-1)
    assert dist.min(axis=2).max() < 1e-3
    np.testing.assert_allclose(m['scores'], 0.5 + np.arange(6) / 10,
                               rtol=1e-6)


def test_merge_equals_mmrotate_dota_metric(tmp_path):
    pytest.importorskip('mmrotate')
    from mmrotate.evaluation.metrics import DOTAMetric
    rng = np.random.default_rng(0)
    results = []
    for name in ['P0001__1024__0___0', 'P0001__1024__824___0',
                 'P0001__1024__824___676', 'P0002__1024__0___0']:
        n = 40  # overlapping boxes: the NMS has work to do
        results.append(dict(
            img_id=name, bboxes=np.c_[
                rng.uniform(0, 1024, (n, 2)), rng.uniform(10, 90, (n, 2)),
                rng.uniform(-1.5, 1.5, n)].astype(np.float32),
            scores=rng.uniform(0.05, 1, n).astype(np.float32),
            labels=rng.integers(0, 3, n)))
    classes = ('plane', 'ship', 'harbor')
    metric = DOTAMetric(merge_patches=True)
    metric.dataset_meta = dict(classes=classes)
    metric.merge_results(results, str(tmp_path / 'ref'))
    merged = merge_patch_results(results)
    assert sum(len(m['scores']) for m in merged.values()) < 160
    write_task1(str(tmp_path / 'ours'), merged, classes)
    for c in classes:
        ref = read_task1(str(tmp_path / 'ref' / f'Task1_{c}.txt'))
        ours = read_task1(str(tmp_path / 'ours' / f'Task1_{c}.txt'))
        assert ours.image_ids == ref.image_ids and len(ref.image_ids) > 10
        # the metric rounds to 0.01
        np.testing.assert_allclose(ours.polys, ref.polys, atol=0.0051)
        np.testing.assert_allclose(ours.scores, ref.scores, atol=0.0051)
