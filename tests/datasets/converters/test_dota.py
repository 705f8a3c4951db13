"""DOTA's text formats (mmretina/datasets/converters/dota.py): labels and
task-1 files round trip; untrusted files (bad lines, huge files, missing
files) are refused with the file and line named; mmrotate's DOTADataset
reads what is written."""
import os
import os.path as osp

import numpy as np
import pytest

from mmretina.datasets.converters.dota import (
    MAX_LABEL_BYTES, ConversionError, check_dota_layout, dota_config_lines,
    read_dota_labels, read_task1, write_dota_labels, write_task1)

DOTA_V1 = """imagesource:GoogleEarth
gsd:0.146343590398
2753 2408 2861 2385 2888 2468 2805 2502 plane 0
3445.0 3391.0 3484.0 3409.0 3478.0 3422.0 3437.0 3402.0 large-vehicle 1
1.5 2.25 10 2.25 10 20.75 1.5 20.75 ship
"""


def write(path, text, mode='w'):
    with open(path, mode) as f:
        f.write(text)
    return str(path)


def test_reads_dota_v1_file_with_headers_and_optional_flag(tmp_path):
    lab = read_dota_labels(write(tmp_path / 'P0001.txt', DOTA_V1))
    assert lab.imagesource == 'GoogleEarth'
    assert lab.gsd == pytest.approx(0.146343590398)
    np.testing.assert_array_equal(lab.polys[0], [2753, 2408, 2861, 2385,
                                                 2888, 2468, 2805, 2502])
    np.testing.assert_array_equal(lab.polys[2], [1.5, 2.25, 10, 2.25, 10,
                                                 20.75, 1.5, 20.75])
    assert lab.polys.dtype == np.float64
    assert lab.labels == ['plane', 'large-vehicle', 'ship']
    # no flag: not difficult (mmrotate's loader)
    np.testing.assert_array_equal(lab.difficult, [0, 1, 0])


def test_gsd_null_empty_file_and_blank_lines(tmp_path):
    lab = read_dota_labels(write(tmp_path / 'a.txt',
                                 'imagesource:GF2\ngsd:null\n\n'))
    assert lab.gsd is None and lab.imagesource == 'GF2'
    assert lab.polys.shape == (0, 8) and lab.labels == []
    assert read_dota_labels(write(tmp_path / 'b.txt', '')).polys.shape == \
        (0, 8)


def test_labels_round_trip_exactly(tmp_path):
    rng = np.random.default_rng(0)
    polys = rng.uniform(-50, 5000, (40, 8)).round(6)
    polys[0] = [0.1, 1e-6, 123456.5, 2, 3, 4, 5, 6]
    labels = [['plane', 'ship', 'small-vehicle'][i % 3] for i in range(40)]
    diff = rng.integers(0, 3, 40)
    path = str(tmp_path / 'x.txt')
    write_dota_labels(path, polys, labels, diff, gsd=0.125,
                      imagesource='GoogleEarth')
    back = read_dota_labels(path)
    np.testing.assert_array_equal(back.polys, polys)
    assert back.labels == labels
    np.testing.assert_array_equal(back.difficult, diff)
    assert (back.gsd, back.imagesource) == (0.125, 'GoogleEarth')
    with open(path) as f:
        lines = f.read().splitlines()
    assert lines[:2] == ['imagesource:GoogleEarth', 'gsd:0.125']
    assert lines[2].startswith('0.1 1e-06 123456.5 2.0 3.0 ')


def test_written_floats_are_rounded_to_a_micro_pixel(tmp_path):
    path = str(tmp_path / 'x.txt')
    # 1234.56 - 824 is 410.55999999999995 in float64
    write_dota_labels(path, [[1234.56 - 824, 0, 1, 0, 1, 1, -0.0, 1]],
                      ['ship'])
    with open(path) as f:
        assert f.read() == '410.56 0.0 1.0 0.0 1.0 1.0 0.0 1.0 ship 0\n'


@pytest.mark.parametrize('line,fault', [
    ('1 2 3 4 5 6 7 plane 0', "coordinate 8 is 'plane'"),
    ('1 2 3 4 5 6 7 plane', '8 fields'),
    ('1 2 3 4 5 6 7 8 plane 0 extra', '11 fields'),
    ('1 2 x 4 5 6 7 8 plane 0', "coordinate 3 is 'x'"),
    ('1 2 3 4 nan 6 7 8 plane 0', "coordinate 5 is 'nan'"),
    ('1 2 3 4 5 6 7 inf plane 0', "coordinate 8 is 'inf'"),
    ('1 2 3 4 5 6 7 8 plane yes', "difficult flag 'yes'"),
    ('1 2 3 4 5 6 7 8 plane -1', "difficult flag '-1'"),
    ('gsd:-0.5', "'gsd:-0.5'; give the ground sample distance in metres"),
    ('gsd:abc', "'gsd:abc'; give the ground sample distance in metres"),
])
def test_bad_line_names_file_line_and_fault(tmp_path, line, fault):
    # line 2 is blank: the bad line is line 3 of the file
    path = write(tmp_path / 'P0002.txt',
                 'imagesource:GoogleEarth\n \n' + line + '\n')
    with pytest.raises(ConversionError) as e:
        read_dota_labels(path)
    assert f'{path}:3: ' in str(e.value)
    assert fault in str(e.value)


def test_unknown_class_and_late_header_are_refused(tmp_path):
    path = write(tmp_path / 'a.txt', '1 2 3 4 5 6 7 8 ship 0\n'
                 '1 2 3 4 5 6 7 8 boat 0\n')
    assert read_dota_labels(path).labels == ['ship', 'boat']
    with pytest.raises(ConversionError, match=rf"{path}:2: class 'boat' is "
                       r"not one of \['ship'\]"):
        read_dota_labels(path, classes=['ship'])
    path = write(tmp_path / 'b.txt', '1 2 3 4 5 6 7 8 ship 0\ngsd:0.1\n')
    with pytest.raises(ConversionError, match=rf'{path}:2: .*header'):
        read_dota_labels(path)
    path = write(tmp_path / 'c.txt', 'gsd:0.1\ngsd:0.2\n')
    with pytest.raises(ConversionError, match=rf'{path}:2: a second gsd'):
        read_dota_labels(path)


def test_huge_long_missing_and_binary_files_are_refused(tmp_path):
    huge = str(tmp_path / 'huge.txt')
    with open(huge, 'wb') as f:  # sparse: nothing is written to disk
        f.truncate(MAX_LABEL_BYTES + 1)
    with pytest.raises(ConversionError, match=rf'{huge}: 32.0 MiB, above '
                       'the limit of 32.0 MiB'):
        read_dota_labels(huge)
    long = write(tmp_path / 'long.txt', '1 2 3 4 5 6 7 8 ship 0\n' * 11)
    with pytest.raises(ConversionError, match=rf'{long}: 11 lines, above '
                       'the limit of 10'):
        read_dota_labels(long, max_lines=10)
    assert len(read_dota_labels(long, max_lines=11).labels) == 11
    missing = str(tmp_path / 'P9999.txt')
    with pytest.raises(ConversionError, match=rf'{missing}: no such file'):
        read_dota_labels(missing)
    binary = write(tmp_path / 'img.txt', b'\x89PNG\r\n\x1a\n\xff\xfe', 'wb')
    with pytest.raises(ConversionError, match=rf'{binary}: not UTF-8'):
        read_dota_labels(binary)


def test_writer_refuses_what_the_format_cannot_hold(tmp_path):
    path = str(tmp_path / 'x.txt')
    with pytest.raises(ValueError, match='without spaces'):
        write_dota_labels(path, np.zeros((1, 8)), ['red pine'])
    with pytest.raises(ValueError, match='NaN or inf'):
        write_dota_labels(path, np.full((1, 8), np.nan), ['ship'])
    with pytest.raises(ValueError, match='1 polygons, 2 labels'):
        write_dota_labels(path, np.zeros((1, 8)), ['ship', 'ship'])
    assert not osp.exists(path)


def test_task1_round_trip_from_rotated_boxes(tmp_path):
    import torch

    from mmretina.structures.rotated import rbox_corners
    merged = {
        'P0001': dict(bboxes=np.array([[100.5, 200.25, 40, 10, 0.3],
                                       [10, 20, 8, 4, -1.0]]),
                      scores=np.array([0.9, 0.25]), labels=np.array([1, 0])),
        'P0002': dict(bboxes=np.array([[5, 6, 7, 8, 0.0]]),
                      scores=np.array([0.5]), labels=np.array([1])),
    }
    paths = write_task1(str(tmp_path / 'task1'), merged, ['plane', 'ship'])
    assert [osp.basename(p) for p in paths] == ['Task1_plane.txt',
                                                'Task1_ship.txt']
    plane, ship = (read_task1(p) for p in paths)
    assert plane.image_ids == ['P0001'] and ship.image_ids == ['P0001',
                                                              'P0002']
    np.testing.assert_array_equal(ship.scores, [0.9, 0.5])
    want = rbox_corners(torch.tensor(
        [[100.5, 200.25, 40, 10, 0.3], [5, 6, 7, 8, 0.0]],
        dtype=torch.float64)).reshape(-1, 8).numpy()
    np.testing.assert_allclose(ship.polys, want, atol=5e-7)
    with pytest.raises(ValueError, match='label 2 is not an index'):
        write_task1(str(tmp_path / 'bad'), {'P0001': dict(
            bboxes=np.zeros((1, 5)), scores=[1.0], labels=[2])},
            ['plane', 'ship'])


def test_task1_bad_line_names_file_and_line(tmp_path):
    path = write(tmp_path / 'Task1_ship.txt',
                 'P0001 0.9 1 2 3 4 5 6 7 8\nP0001 0.9 1 2 3 4 5 6 7\n')
    with pytest.raises(ConversionError, match=rf'{path}:2: 9 fields'):
        read_task1(path)


def test_mmrotate_dota_dataset_reads_what_is_written(tmp_path):
    pytest.importorskip('mmrotate')
    ann, img = tmp_path / 'annfiles', tmp_path / 'images'
    write_dota_labels(str(ann / 'a__1024__0___0.txt'),
                      [[1.5, 2, 30, 2, 30, 10.25, 1.5, 10.25]], ['ship'],
                      [2])
    write_dota_labels(str(ann / 'b__1024__0___0.txt'), np.zeros((0, 8)), [])
    os.makedirs(img)
    for name in ('a__1024__0___0', 'b__1024__0___0'):
        write(img / f'{name}.png', b'', 'wb')
    assert check_dota_layout(str(ann), str(img), ['plane', 'ship']) == \
        '2 images, 1 objects'
    from mmrotate.datasets import DOTADataset
    ds = DOTADataset(ann_file=str(ann) + '/', data_prefix=dict(
        img_path=str(img) + '/'), metainfo=dict(classes=('plane', 'ship')),
        pipeline=[], test_mode=True, serialize_data=False)
    inst = {d['img_id']: d['instances'] for d in ds.data_list}
    assert inst['a__1024__0___0'] == [dict(
        bbox=[1.5, 2.0, 30.0, 2.0, 30.0, 10.25, 1.5, 10.25], bbox_label=1,
        ignore_flag=0)]
    assert inst['b__1024__0___0'] == []
    with pytest.raises(ConversionError, match="no class 'ship'.*--classes"):
        check_dota_layout(str(ann), str(img), ['plane'])
    os.remove(img / 'b__1024__0___0.png')
    with pytest.raises(ConversionError, match='1 label files without their '
                       'image'):
        check_dota_layout(str(ann), str(img), ['plane', 'ship'])


def test_config_lines_are_python_with_relative_paths(tmp_path):
    root = str(tmp_path / 'out')
    text = dota_config_lines(root, {'train': (f'{root}/train/annfiles',
                                              f'{root}/train/images')},
                             ['ship'], 'tif')
    scope = {}
    exec(text, scope)  # the lines paste into a config as they are
    assert scope['train_dataset'] == dict(
        type='DOTADataset', data_root=root + '/',
        ann_file='train/annfiles/',
        data_prefix=dict(img_path='train/images/'), img_suffix='tif',
        metainfo=dict(classes=('ship', )))
    assert scope['num_classes'] == 1
