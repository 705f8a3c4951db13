"""Tests of mmretina.datasets.converters.deepforest and its command line
(tools/dataset_converters/prepare_deepforest.py) on synthetic data.

Nothing is downloaded: a tiny fake ``deepforest`` wheel (a zip with the same
``deepforest/data/`` layout as the real one) is built in ``tmp_path``.
"""
import io
import json
import os
import os.path as osp
import subprocess
import zipfile

import numpy as np
import pytest
from PIL import Image

from mmretina.cli import prepare_deepforest as cli


@pytest.fixture(scope='module')
def pdf():
    from mmretina.datasets.converters import deepforest
    return deepforest


# ----------------------------------------------------------------- tiling
def test_tile_starts(pdf):
    assert pdf.tile_starts(1000, 400, 300) == [0, 300, 600]
    assert pdf.tile_starts(1249, 400, 300) == [0, 300, 600, 849]
    assert pdf.tile_starts(400, 400, 300) == [0]
    assert pdf.tile_starts(250, 400, 300) == [0]
    # last tile is shifted to end at the border, none go past it
    for length in (401, 700, 701, 2299, 2472):
        s = pdf.tile_starts(length, 400, 300)
        assert s[0] == 0 and s[-1] + 400 == length
        assert all(b - a <= 300 for a, b in zip(s, s[1:]))
    with pytest.raises(ValueError):
        pdf.tile_starts(100, 0, 10)


def test_tile_windows_cover_image(pdf):
    w, h = 950, 620
    wins = pdf.tile_windows(w, h, 400, 300)
    cover = np.zeros((h, w), bool)
    for x0, y0, x1, y1 in wins:
        assert (x1 - x0, y1 - y0) == (400, 400)
        assert 0 <= x0 and x1 <= w and 0 <= y0 and y1 <= h
        cover[y0:y1, x0:x1] = True
    assert cover.all()
    assert len(wins) == 3 * 2


def test_clip_boxes_rule(pdf):
    win = (100, 100, 500, 500)
    boxes = np.array([
        [150, 150, 190, 200],  # fully inside -> kept, shifted
        [80, 200, 120, 240],   # 50% inside (x 100..120 of 80..120) -> kept
        [70, 300, 110, 340],   # 25% inside -> dropped
        [480, 480, 530, 530],  # 16% inside -> dropped
        [0, 0, 50, 50],        # outside -> dropped
        [300, 499, 340, 540],  # 1 px tall sliver -> dropped (min_size)
        [500, 120, 530, 160],  # zero width after clipping
    ], dtype=float)
    out, keep = pdf.clip_boxes(boxes, win, min_visible=0.5, min_size=2)
    assert keep.tolist() == [0, 1]
    np.testing.assert_allclose(out, [[50, 50, 90, 100], [0, 100, 20, 140]])
    # a looser rule keeps the 25% box, clipped to the tile
    out, keep = pdf.clip_boxes(boxes, win, min_visible=0.2, min_size=2)
    assert keep.tolist() == [0, 1, 2]
    np.testing.assert_allclose(out[2], [0, 200, 10, 240])
    # every kept box lies in the tile
    assert (out >= 0).all() and (out <= 400).all()
    # empty input
    out, keep = pdf.clip_boxes(np.zeros((0, 4)), win)
    assert out.shape == (0, 4) and keep.size == 0


def test_grid_windows_partition_image(pdf):
    wins = pdf.grid_windows(1249, 1035, 3)
    assert len(wins) == 9
    cover = np.zeros((1035, 1249), int)
    for x0, y0, x1, y1 in wins:
        cover[y0:y1, x0:x1] += 1
        assert 416 <= x1 - x0 <= 417 and 345 <= y1 - y0 <= 345
    assert (cover == 1).all()
    with pytest.raises(ValueError, match='cannot cut 2x2 into 3x3'):
        pdf.grid_windows(2, 2, 3)


def test_sanitize_boxes(pdf):
    b = pdf.sanitize_boxes([[-5, 2, 30, 40], [10, 10, 10, 20],
                            [90, 90, 120, 130]], 100, 100)
    np.testing.assert_allclose(b, [[0, 2, 30, 40], [90, 90, 100, 100]])


def test_coco_builder_structure(pdf):
    cb = pdf.CocoBuilder()
    i1 = cb.add_image('a.png', 400, 300, [[10, 20, 50, 80], [0, 0, 5, 5]])
    i2 = cb.add_image('b.png', 400, 400, np.zeros((0, 4)))
    coco = cb.to_dict()
    assert (i1, i2) == (1, 2)
    assert coco['categories'] == [
        dict(id=1, name='tree', supercategory='plant')]
    assert [im['file_name'] for im in coco['images']] == ['a.png', 'b.png']
    assert coco['images'][0]['width'] == 400
    assert coco['images'][0]['height'] == 300
    a = coco['annotations']
    assert [x['id'] for x in a] == [1, 2]
    assert all(x['image_id'] == 1 and x['category_id'] == 1
               and x['iscrowd'] == 0 for x in a)
    assert a[0]['bbox'] == [10, 20, 40, 60] and a[0]['area'] == 2400
    json.dumps(coco)  # serialisable


def test_parsers(pdf):
    xml = ('<annotation><object><name>Dead</name><bndbox><xmin>1</xmin>'
           '<ymin>2</ymin><xmax>30</xmax><ymax>40</ymax></bndbox></object>'
           '</annotation>')
    boxes, labels = pdf.parse_voc(xml)
    assert boxes.tolist() == [[1, 2, 30, 40]] and labels == ['Dead']
    table = pdf.parse_csv('image_path,xmin,ymin,xmax,ymax,label\n'
                          'dir/A.tif,1,2,3,4,Tree\nA.tif,5,6,7,8,Tree\n'
                          'B.png,0,0,9,9,Alive\n')
    assert table['A'][0].tolist() == [[1, 2, 3, 4], [5, 6, 7, 8]]
    assert table['B'][1] == ['Alive']
    assert pdf.parse_csv('a,b\n1,2\n') == {}


# ------------------------------------------------------------ fake wheel
def _png(w, h, seed, fmt='PNG'):
    rng = np.random.RandomState(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.randint(0, 255, (h, w, 3), np.uint8)).save(buf, fmt)
    return buf.getvalue()


def _voc(name, w, h, boxes, label='Tree'):
    objs = ''.join(
        f'<object><name>{label}</name><difficult>0</difficult><bndbox>'
        f'<xmin>{b[0]}</xmin><ymin>{b[1]}</ymin><xmax>{b[2]}</xmax>'
        f'<ymax>{b[3]}</ymax></bndbox></object>' for b in boxes)
    return (f'<annotation><filename>{name}</filename><size><width>{w}'
            f'</width><height>{h}</height><depth>3</depth></size>{objs}'
            '</annotation>')


YELL1, YELL2 = ('2019_YELL_2_528000_4978000_image_crop2',
                '2019_YELL_2_541000_4977000_image_crop')


def make_fake_wheel(path, drop=()):
    """A zip with the real wheel's layout: two 'large' YELL images with VOC
    XML, OSBS_029 as .tif with a CSV only, SOAP_061 with Dead/Alive XML."""
    d = 'deepforest/data/'
    files = {
        'deepforest/__init__.py': '',
        # YELL1: 600x450 -> tiles x in {0, 200}, y in {0, 50}
        d + YELL1 + '.png': _png(600, 450, 0),
        d + YELL1 + '.xml': _voc(YELL1 + '.png', 600, 450,
                                 [[10, 10, 50, 50], [380, 100, 420, 140],
                                  [550, 400, 600, 450]]),
        d + YELL2 + '.png': _png(400, 400, 1),
        d + YELL2 + '.xml': _voc(YELL2 + '.png', 400, 400,
                                 [[100, 100, 140, 150]]),
        d + 'OSBS_029.tif': _png(400, 400, 2, 'TIFF'),
        d + 'OSBS_029.csv': 'image_path,xmin,ymin,xmax,ymax,label\n'
                            'OSBS_029.tif,203,67,227,90,Tree\n'
                            'OSBS_029.tif,256,99,288,140,Tree\n',
        d + 'SOAP_061.png': _png(400, 400, 3),
        d + 'SOAP_061.xml': _voc('SOAP_061.png', 400, 400,
                                 [[149, 105, 173, 129]], 'Dead'),
        d + 'example.csv': 'image_path,xmin,ymin,xmax,ymax,label\n'
                           f'{YELL2}.png,1,1,20,20,Tree\n',
        'deepforest-2.1.0.dist-info/WHEEL': 'Wheel-Version: 1.0\n',
    }
    with zipfile.ZipFile(path, 'w') as zf:
        for name, data in files.items():
            if not any(k in name for k in drop):
                zf.writestr(name, data)
    return str(path)


def _load(out, split):
    with open(osp.join(out, 'annotations', f'{split}.json')) as f:
        return json.load(f)


def test_convert_fake_wheel_and_idempotency(pdf, tmp_path, capsys):
    wheel = make_fake_wheel(tmp_path / 'deepforest-2.1.0-py3-none-any.whl')
    out = str(tmp_path / 'out')
    assert cli.main(['--wheel', wheel, '--out-dir', out]) == 0
    msg = capsys.readouterr().out
    for split, n in (('train', 5), ('val', 2), ('choose_train', 4),
                     ('choose_val', 9)):
        assert f'{split:12s}: {n:3d} images' in msg

    train, val = _load(out, 'train'), _load(out, 'val')
    for coco in (train, val):
        assert coco['categories'] == [
            dict(id=1, name='tree', supercategory='plant')]
        ids = [im['id'] for im in coco['images']]
        assert len(set(ids)) == len(ids)
        assert {a['image_id'] for a in coco['annotations']} <= set(ids)
        for im in coco['images']:
            with Image.open(osp.join(out, 'images', im['file_name'])) as pil:
                assert pil.size == (im['width'], im['height'])
        for a in coco['annotations']:
            x, y, w, h = a['bbox']
            im = coco['images'][a['image_id'] - 1]
            assert w >= 2 and h >= 2 and x >= 0 and y >= 0
            assert x + w <= im['width'] and y + h <= im['height']
            assert a['category_id'] == 1

    names = [im['file_name'] for im in train['images']]
    assert names == [f'{YELL1}_x0_y0.png', f'{YELL1}_x200_y0.png',
                     f'{YELL1}_x0_y50.png', f'{YELL1}_x200_y50.png',
                     f'{YELL2}_x0_y0.png']
    per_image = [sum(a['image_id'] == im['id'] for a in train['annotations'])
                 for im in train['images']]
    # box [380,100,420,140] is inside tiles x=200 fully and x=0 only half
    # (x 380..400 of 380..420 = 50%: kept); the corner box only in x200,y50
    assert per_image == [2, 1, 1, 2, 1]
    # the YELL2 XML (1 box) wins over example.csv
    assert train['annotations'][-1]['bbox'] == [100, 100, 40, 50]
    # val: OSBS from its CSV (tif -> png), SOAP 'Dead' mapped to tree
    assert [im['file_name'] for im in val['images']] == [
        'OSBS_029.png', 'SOAP_061.png']
    assert len(val['annotations']) == 3

    # the choosing split: a spatial hold-out of the training site. YELL2
    # (400x400) is cut into 3x3 non-overlapping tiles; none of its pixels
    # is in choose_train, which is YELL1's tiles only.
    ctrain, cval = _load(out, 'choose_train'), _load(out, 'choose_val')
    assert [im['file_name'] for im in ctrain['images']] == names[:4]
    assert ctrain['annotations'] == [
        a for a in train['annotations'] if a['image_id'] <= 4]
    assert all(im['file_name'].startswith(f'{YELL2}_hold_')
               for im in cval['images'])
    assert [(im['width'], im['height']) for im in cval['images'][:3]] == [
        (133, 133), (134, 133), (133, 133)]
    # its one box [100,100,140,150] crosses the tile edges at 133: only the
    # top-left piece keeps >= half its area
    assert [(a['image_id'], a['bbox']) for a in cval['annotations']] == [
        (1, [100, 100, 33, 33])]

    # second run: no-op
    before = {f: os.stat(osp.join(out, 'images', f)).st_mtime_ns
              for f in os.listdir(osp.join(out, 'images'))}
    ann_mtime = os.stat(osp.join(out, 'annotations', 'train.json')).st_mtime
    assert cli.main(['--wheel', wheel, '--out-dir', out]) == 0
    assert 'nothing to do' in capsys.readouterr().out
    after = {f: os.stat(osp.join(out, 'images', f)).st_mtime_ns
             for f in os.listdir(osp.join(out, 'images'))}
    assert before == after
    assert os.stat(osp.join(out, 'annotations',
                            'train.json')).st_mtime == ann_mtime

    # a missing image means "not prepared" again
    os.remove(osp.join(out, 'images', 'SOAP_061.png'))
    assert not pdf.is_prepared(out)

    # --force redoes it, with other options honoured
    assert cli.main(['--wheel', wheel, '--out-dir', out, '--force',
                     '--tile-size', '300', '--overlap', '0']) == 0
    assert 'nothing to do' not in capsys.readouterr().out
    assert pdf.is_prepared(out)
    # 600x450 -> x {0, 300} x y {0, 150}; 400x400 -> {0, 100} x {0, 100}
    assert len(_load(out, 'train')['images']) == 4 + 4


def test_wheel_missing_data(pdf, tmp_path, capsys):
    wheel = make_fake_wheel(tmp_path / 'bad.whl', drop=('SOAP_061',))
    out = str(tmp_path / 'out')
    assert cli.main(['--wheel', wheel, '--out-dir', out]) == 1
    err = capsys.readouterr().err
    assert err.startswith('error:') and 'SOAP_061' in err
    assert 'Traceback' not in err
    assert not osp.exists(osp.join(out, 'annotations', 'val.json'))

    # image present but no annotations at all
    wheel = make_fake_wheel(tmp_path / 'noann.whl', drop=('OSBS_029.csv',))
    assert cli.main(['--wheel', wheel, '--out-dir', out]) == 1
    assert 'no annotations' in capsys.readouterr().err

    # not a zip / not there
    junk = tmp_path / 'junk.whl'
    junk.write_text('not a zip')
    assert cli.main(['--wheel', str(junk), '--out-dir', out]) == 1
    assert 'not a valid wheel' in capsys.readouterr().err
    assert cli.main(['--wheel', str(tmp_path / 'nope.whl'),
                     '--out-dir', out]) == 1
    assert 'wheel not found' in capsys.readouterr().err


def test_force_with_bad_wheel_keeps_output(pdf, tmp_path, capsys):
    good = make_fake_wheel(tmp_path / 'good.whl')
    bad = make_fake_wheel(tmp_path / 'bad.whl', drop=(YELL1 + '.png',))
    out = str(tmp_path / 'out')
    assert cli.main(['--wheel', good, '--out-dir', out]) == 0
    assert cli.main(['--wheel', bad, '--out-dir', out, '--force']) == 1
    assert pdf.is_prepared(out)


def test_pip_download_failure_is_reported(pdf, tmp_path, capsys,
                                          monkeypatch):
    calls = []

    def fake_run(cmd, **kwargs):
        calls.append(cmd)
        return subprocess.CompletedProcess(
            cmd, 1, stdout='',
            stderr='ERROR: No matching distribution found for deepforest')

    monkeypatch.setattr(pdf.subprocess, 'run', fake_run)
    rc = cli.main(['--out-dir', str(tmp_path / 'out'),
                   '--download-dir', str(tmp_path / 'dl')])
    assert rc == 1
    err = capsys.readouterr().err
    assert 'pip download deepforest==2.1.0' in err and '--wheel' in err
    assert 'No matching distribution' in err
    assert 'Traceback' not in err
    assert calls and 'download' in calls[0] and '--no-deps' in calls[0]
    assert 'deepforest==2.1.0' in calls[0]


def test_download_reuses_cached_wheel(pdf, tmp_path, monkeypatch, capsys):
    dl = tmp_path / 'dl'
    dl.mkdir()
    make_fake_wheel(dl / 'deepforest-2.1.0-py3-none-any.whl')

    def no_run(*a, **k):
        raise AssertionError('pip must not run when the wheel is cached')

    monkeypatch.setattr(pdf.subprocess, 'run', no_run)
    out = str(tmp_path / 'out')
    assert cli.main(['--out-dir', out, '--download-dir', str(dl)]) == 0
    assert pdf.is_prepared(out)
