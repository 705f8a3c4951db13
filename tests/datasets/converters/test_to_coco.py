"""mmretina.cli.to_coco (tools/dataset_converters/to_coco.py): VOC XML,
CSV and YOLO txt to COCO json that mmretina.CocoDataset loads; splits,
class order, VOC's 1-based pixels, and bad input ending with the file and line.

Tiny images with known boxes are written by the tests; the converter runs
in-process (its ``main``), except one subprocess run of the command line.
"""
import json

import numpy as np
import pytest
from PIL import Image

from mmretina.cli import to_coco

# image name -> (width, height, [(x1, y1, x2, y2, label)]) in continuous
# 0-based pixels (the COCO convention the output must have)
BOXES = {
    'a.png': (40, 30, [(0, 0, 10, 10, 'cat'), (20, 5, 40, 30, 'dog')]),
    'b.png': (32, 32, [(4, 6, 12, 26, 'dog')]),
    'c.png': (24, 20, []),
    'd.png': (50, 40, [(10, 10, 30, 20, 'cat')]),
}


def write_images(img_dir):
    img_dir.mkdir(parents=True, exist_ok=True)
    for name, (w, h, _) in BOXES.items():
        Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(img_dir / name)


def voc_xml(name, w, h, boxes, one_based=True, size=True):
    off = 1 if one_based else 0
    objs = ''.join(
        f'  <object>\n    <name>{lab}</name>\n    <difficult>0</difficult>\n'
        f'    <bndbox>\n      <xmin>{x1 + off}</xmin>\n'
        f'      <ymin>{y1 + off}</ymin>\n      <xmax>{x2}</xmax>\n'
        f'      <ymax>{y2}</ymax>\n    </bndbox>\n  </object>\n'
        for x1, y1, x2, y2, lab in boxes)
    size_xml = (f'  <size>\n    <width>{w}</width>\n    <height>{h}</height>\n'
                '    <depth>3</depth>\n  </size>\n') if size else ''
    return (f'<annotation>\n  <filename>{name}</filename>\n{size_xml}{objs}'
            '</annotation>\n')


def make_voc(root, one_based=True):
    write_images(root / 'JPEGImages')
    (root / 'Annotations').mkdir()
    for name, (w, h, boxes) in BOXES.items():
        (root / 'Annotations' / (name[:-4] + '.xml')).write_text(
            voc_xml(name, w, h, boxes, one_based))
    return root


def make_csv(root):
    write_images(root / 'images')
    rows = ['image_path,xmin,ymin,xmax,ymax,label']
    for name, (_, _, boxes) in BOXES.items():
        rows += [f'{name},{x1},{y1},{x2},{y2},{lab}'
                 for x1, y1, x2, y2, lab in boxes] or [f'{name},0,0,0,0,cat']
    (root / 'boxes.csv').write_text('\n'.join(rows) + '\n')
    return root


def make_yolo(root, names=('dog', 'cat')):
    write_images(root / 'images')
    (root / 'labels').mkdir()
    (root / 'classes.txt').write_text('\n'.join(names) + '\n')
    for name, (w, h, boxes) in BOXES.items():
        if not boxes:
            continue  # no label file: an image without objects
        lines = [f'{names.index(lab)} {(x1 + x2) / 2 / w} {(y1 + y2) / 2 / h} '
                 f'{(x2 - x1) / w} {(y2 - y1) / h}'
                 for x1, y1, x2, y2, lab in boxes]
        (root / 'labels' / (name[:-4] + '.txt')).write_text(
            '\n'.join(lines) + '\n')
    return root


def run(argv, capsys):
    rc = to_coco.main([str(a) for a in argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def boxes_of(ann_path):
    """{file_name: sorted [(x1, y1, x2, y2, class name)]} of a COCO json."""
    with open(ann_path) as f:
        coco = json.load(f)
    names = {c['id']: c['name'] for c in coco['categories']}
    by_img = {im['id']: im['file_name'] for im in coco['images']}
    out = {im['file_name']: [] for im in coco['images']}
    for a in coco['annotations']:
        x, y, w, h = a['bbox']
        out[by_img[a['image_id']]].append(
            (round(x, 3), round(y, 3), round(x + w, 3), round(y + h, 3),
             names[a['category_id']]))
    return {k: sorted(v) for k, v in out.items()}, coco


def expected(names=None):
    return {n: sorted((float(x1), float(y1), float(x2), float(y2), lab)
                      for x1, y1, x2, y2, lab in b)
            for n, (_, _, b) in BOXES.items() if names is None or n in names}


def test_voc_one_based_pixels_and_classes_from_the_files(tmp_path, capsys):
    root = make_voc(tmp_path / 'voc')
    rc, out, err = run(['voc', '--ann-dir', root / 'Annotations',
                        '--img-dir', root / 'JPEGImages', '--out-dir',
                        tmp_path / 'out'], capsys)
    assert rc == 0, err
    got, coco = boxes_of(tmp_path / 'out' / 'annotations' / 'all.json')
    # xmin=1 in the XML is column 0: the boxes come back exactly
    assert got == expected()
    assert [c['name'] for c in coco['categories']] == ['cat', 'dog']
    assert {(i['file_name'], i['width'], i['height'])
            for i in coco['images']} == {
                (n, w, h) for n, (w, h, _) in BOXES.items()}
    assert 'mmretina.CocoDataset loads it: 4 images, 4 boxes' in out
    assert "classes = ('cat', 'dog')" in out and 'num_classes = 2' in out


def test_voc_zero_based_and_class_order(tmp_path, capsys):
    root = make_voc(tmp_path / 'voc', one_based=False)
    rc, _, err = run(['voc', '--ann-dir', root / 'Annotations', '--img-dir',
                      root / 'JPEGImages', '--out-dir', tmp_path / 'out',
                      '--voc-coords', 'zero-based', '--classes', 'dog,cat'],
                     capsys)
    assert rc == 0, err
    got, coco = boxes_of(tmp_path / 'out' / 'annotations' / 'all.json')
    assert got == expected()
    assert [(c['id'], c['name']) for c in coco['categories']] == [
        (1, 'dog'), (2, 'cat')]


def test_csv_with_split_ratio_and_seed(tmp_path, capsys):
    root = make_csv(tmp_path / 'csv')
    argv = ['csv', '--csv', root / 'boxes.csv', '--img-dir', root / 'images',
            '--out-dir', tmp_path / 'out', '--split', '0.5,0.5', '--seed', 3]
    rc, out, err = run(argv, capsys)
    assert rc == 0, err
    train, _ = boxes_of(tmp_path / 'out' / 'annotations' / 'train.json')
    val, _ = boxes_of(tmp_path / 'out' / 'annotations' / 'val.json')
    assert len(train) == len(val) == 2 and not set(train) & set(val)
    assert {**train, **val} == expected()  # 'c.png' kept, without boxes
    # same seed, same split
    rc, _, _ = run(argv[:-4] + ['--out-dir', tmp_path / 'again', '--split',
                                '0.5,0.5', '--seed', 3], capsys)
    again, _ = boxes_of(tmp_path / 'again' / 'annotations' / 'train.json')
    assert rc == 0 and again == train


def test_yolo_with_split_files(tmp_path, capsys):
    root = make_yolo(tmp_path / 'yolo')
    (root / 'train.txt').write_text('a.png\nb\nc.png\n')
    (root / 'val.txt').write_text('d\n')
    rc, out, err = run(['yolo', '--img-dir', root / 'images', '--label-dir',
                        root / 'labels', '--names', root / 'classes.txt',
                        '--out-dir', tmp_path / 'out', '--split-files',
                        f'train={root / "train.txt"}',
                        f'val={root / "val.txt"}'], capsys)
    assert rc == 0, err
    train, coco = boxes_of(tmp_path / 'out' / 'annotations' / 'train.json')
    val, _ = boxes_of(tmp_path / 'out' / 'annotations' / 'val.json')
    assert train == expected({'a.png', 'b.png', 'c.png'})
    assert val == expected({'d.png'})
    # the names file's order: line 0 = dog
    assert [c['name'] for c in coco['categories']] == ['dog', 'cat']


def test_yolo_data_yaml_names(tmp_path, capsys):
    root = make_yolo(tmp_path / 'yolo')
    (root / 'data.yaml').write_text('names:\n  0: dog\n  1: cat\n')
    rc, _, err = run(['yolo', '--img-dir', root / 'images', '--label-dir',
                      root / 'labels', '--names', root / 'data.yaml',
                      '--out-dir', tmp_path / 'out', '--no-check'], capsys)
    assert rc == 0, err
    got, _ = boxes_of(tmp_path / 'out' / 'annotations' / 'all.json')
    assert got == expected()


# ----------------------------------------------------------- bad input
def voc_error(tmp_path, capsys, xml, extra=()):
    root = make_voc(tmp_path / 'voc')
    bad = root / 'Annotations' / 'b.xml'
    bad.write_text(xml)
    rc, _, err = run(['voc', '--ann-dir', root / 'Annotations', '--img-dir',
                      root / 'JPEGImages', '--out-dir', tmp_path / 'out',
                      *extra], capsys)
    assert rc == 1
    return err, str(bad)


def test_voc_without_size(tmp_path, capsys):
    err, bad = voc_error(tmp_path, capsys,
                         voc_xml('b.png', 32, 32, BOXES['b.png'][2],
                                 size=False))
    assert err.startswith(f'error: {bad}:1: <annotation> has no <size>')


def test_voc_box_outside_the_image_names_the_line(tmp_path, capsys):
    xml = voc_xml('b.png', 32, 32, [(4, 6, 12, 26, 'dog'),
                                    (20, 20, 60, 30, 'cat')])
    err, bad = voc_error(tmp_path, capsys, xml)
    # the second <bndbox> starts on line 21
    assert err.startswith(
        f'error: {bad}:21: box xmin, ymin, xmax, ymax = (21, 21, 60, 30) '
        '(VOC 1-based; (20, 20, 60, 30) 0-based) lies outside the image '
        "'b.png' of 32x32 (w x h)")
    assert '--clip-boxes' in err


def test_voc_clip_boxes_clips_and_counts(tmp_path, capsys):
    root = make_voc(tmp_path / 'voc')
    (root / 'Annotations' / 'b.xml').write_text(
        voc_xml('b.png', 32, 32, [(20, 20, 60, 30, 'cat'),
                                  (40, 40, 50, 50, 'cat')]))
    rc, out, err = run(['voc', '--ann-dir', root / 'Annotations',
                        '--img-dir', root / 'JPEGImages', '--out-dir',
                        tmp_path / 'out', '--clip-boxes'], capsys)
    assert rc == 0, err
    got, _ = boxes_of(tmp_path / 'out' / 'annotations' / 'all.json')
    assert got['b.png'] == [(20.0, 20.0, 32.0, 30.0, 'cat')]
    assert 'note: 1 box(es) outside the image, dropped.' in out
    assert 'note: 1 box(es) partly outside the image, clipped.' in out


def test_voc_size_disagrees_with_the_image(tmp_path, capsys):
    err, bad = voc_error(tmp_path, capsys,
                         voc_xml('b.png', 64, 32, BOXES['b.png'][2]))
    assert err.startswith(f"error: {bad}:3: <size> says 64x32 (w x h) but "
                          "'b.png' is 32x32")


def test_malformed_xml(tmp_path, capsys):
    err, bad = voc_error(tmp_path, capsys, '<annotation>\n<filename>b.png'
                         '</filename>\n<size></annotation>\n')
    assert err.startswith(f'error: {bad}:3: not well-formed XML')


def test_unknown_class(tmp_path, capsys):
    root = make_csv(tmp_path / 'csv')
    argv = ['csv', '--csv', root / 'boxes.csv', '--img-dir', root / 'images',
            '--out-dir', tmp_path / 'out', '--classes', 'cat']
    rc, _, err = run(argv, capsys)
    assert rc == 1
    # line 3 of the CSV is a.png's dog
    assert err.startswith(f"error: {root / 'boxes.csv'}:3: class 'dog' is "
                          'not in --classes cat (found in the input: cat, '
                          'dog)')
    rc, out, err = run(argv + ['--skip-unknown'], capsys)
    assert rc == 0, err
    assert "2 box(es) of a class not in --classes ('dog'), dropped" in out


def test_missing_image(tmp_path, capsys):
    root = make_csv(tmp_path / 'csv')
    (root / 'images' / 'd.png').unlink()
    rc, _, err = run(['csv', '--csv', root / 'boxes.csv', '--img-dir',
                      root / 'images', '--out-dir', tmp_path / 'out'],
                     capsys)
    assert rc == 1
    assert err.startswith(f"error: {root / 'boxes.csv'}:6: image "
                          f"'{root / 'images' / 'd.png'}' does not exist")


def test_csv_bad_numbers_and_columns(tmp_path, capsys):
    root = make_csv(tmp_path / 'csv')
    csv_path = root / 'boxes.csv'
    csv_path.write_text('image_path,xmin,ymin,xmax,ymax,label\n'
                        'a.png,1,2,x,4,cat\n')
    rc, _, err = run(['csv', '--csv', csv_path, '--img-dir', root / 'images',
                      '--out-dir', tmp_path / 'out'], capsys)
    assert rc == 1 and err.startswith(f'error: {csv_path}:2: xmin,ymin,xmax,'
                                      'ymax = 1,2,x,4 are not all numbers')
    csv_path.write_text('image_path,xmin,ymin,label\na.png,1,2,cat\n')
    rc, _, err = run(['csv', '--csv', csv_path, '--img-dir', root / 'images',
                      '--out-dir', tmp_path / 'out'], capsys)
    assert rc == 1 and 'the header lacks the column(s) xmax, ymax' in err


def test_yolo_bad_lines(tmp_path, capsys):
    root = make_yolo(tmp_path / 'yolo')
    label = root / 'labels' / 'a.txt'
    argv = ['yolo', '--img-dir', root / 'images', '--label-dir',
            root / 'labels', '--names', root / 'classes.txt', '--out-dir',
            tmp_path / 'out']
    label.write_text('0 0.5 0.5 0.2 0.2\n5 0.5 0.5 0.2 0.2\n')
    rc, _, err = run(argv, capsys)
    assert rc == 1 and err.startswith(
        f'error: {label}:2: class 5 is not in the names file (2 names')
    label.write_text('0 0.5 0.5 0.2\n')
    rc, _, err = run(argv, capsys)
    assert rc == 1 and err.startswith(f'error: {label}:1: 4 values')
    label.write_text('0 0.9 0.5 0.6 0.2\n')  # x2 = 1.2 * width
    rc, _, err = run(argv, capsys)
    assert rc == 1 and err.startswith(
        f"error: {label}:1: box '0 0.9 0.5 0.6 0.2' = (24, 12, 48, 18) (x1, "
        "y1, x2, y2 in pixels) lies outside the image 'a.png' of 40x30")
    label.unlink()
    (root / 'labels' / 'zzz.txt').write_text('0 0.5 0.5 0.2 0.2\n')
    rc, _, err = run(argv, capsys)
    assert rc == 1 and 'zzz.txt: label file without an image' in err


def test_split_file_with_an_unknown_image(tmp_path, capsys):
    root = make_csv(tmp_path / 'csv')
    (root / 'train.txt').write_text('a.png\nnope.png\n')
    rc, _, err = run(['csv', '--csv', root / 'boxes.csv', '--img-dir',
                      root / 'images', '--out-dir', tmp_path / 'out',
                      '--split-files', f'train={root / "train.txt"}'],
                     capsys)
    assert rc == 1 and err.startswith(
        f"error: {root / 'train.txt'}:2: 'nope.png' is not an image of the "
        'input')


def test_split_that_gets_no_image(tmp_path, capsys):
    root = make_csv(tmp_path / 'csv')
    rc, _, err = run(['csv', '--csv', root / 'boxes.csv', '--img-dir',
                      root / 'images', '--out-dir', tmp_path / 'out',
                      '--split', '0.9,0.05,0.05'], capsys)
    assert rc == 1 and "split 'val' gets no image of the 4" in err


@pytest.mark.parametrize('argv', [['voc'], ['csv', '--csv', 'x.csv']])
def test_missing_required_arguments(argv, capsys):
    with pytest.raises(SystemExit):
        to_coco.main(argv)
    assert 'required' in capsys.readouterr().err
