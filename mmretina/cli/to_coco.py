"""Convert Pascal-VOC XML, a CSV of boxes or YOLO txt labels to COCO json.

    # Pascal VOC: one XML per image (classes read from the files, sorted)
    python tools/dataset_converters/to_coco.py voc \\
        --ann-dir data/voc/Annotations --img-dir data/voc/JPEGImages \\
        --out-dir data/mine --split 0.8,0.2
    # a CSV: image_path,xmin,ymin,xmax,ymax,label (DeepForest and many tools)
    python tools/dataset_converters/to_coco.py csv --csv boxes.csv \\
        --img-dir data/images --out-dir data/mine --classes cat,dog
    # YOLO: class cx cy w h (normalised) per image, names one per line
    python tools/dataset_converters/to_coco.py yolo --img-dir data/images \\
        --label-dir data/labels --names classes.txt --out-dir data/mine \\
        --split-files train=train.txt val=val.txt

(``mmretina convert labels`` is the same command.) Writes
``OUT_DIR/annotations/<split>.json`` (``all.json`` without a split), with
``file_name`` relative to ``--img-dir`` (the images are not copied), then
loads each file with ``mmretina.CocoDataset`` (``--no-check`` skips this) and
prints the dataset lines to paste into a config.

Conventions
-----------
* Output boxes are COCO ``[x, y, w, h]`` in continuous pixel coordinates: the
  image spans ``[0, W] x [0, H]`` and a box covering the pixel columns
  ``0..9`` is ``x=0, w=10``.
* **VOC** coordinates are 1-based pixel indices, inclusive: by default
  ``xmin - 1, ymin - 1`` are taken and ``xmax, ymax`` kept, so
  ``(1, 1, W, H)`` is the whole image (detectron2 does the same; mmdet's
  ``VOCDataset`` subtracts 1 from all four). ``--voc-coords zero-based``
  keeps the numbers as they are (e.g. the DeepForest XMLs).
  ``<difficult>1</difficult>`` objects are kept with ``iscrowd=0`` unless
  ``--skip-difficult``. XML with a DTD or entity declarations is refused.
* **CSV** coordinates are taken as continuous 0-based pixels. A row whose
  box is ``0,0,0,0`` adds the image with no box.
* **YOLO** ``cx cy w h`` are fractions of the image width / height; an image
  without a label file is an image without objects.

Classes are numbered 1..K in the order of ``--classes`` / ``--classes-file``
(VOC, CSV; default: the names found, sorted) or of ``--names`` (YOLO: line
``i`` is class ``i``; a YAML with ``names:`` as in YOLO's data.yaml works too).
``mmretina.CocoDataset`` wants ``metainfo=dict(classes=...)`` in this order;
the printed config lines have it.

Splits: ``--split 0.8,0.1,0.1`` (train, val, test; images shuffled with
``--seed``) or ``--split-files train=a.txt val=b.txt`` (one image per line,
its path relative to ``--img-dir`` or its stem, as in VOC's ImageSets).

Errors name the file and the line: an XML without ``<size>``, a box outside
the image (``--clip-boxes`` clips / drops them instead, counted), an unknown
class (``--skip-unknown`` drops them, counted), a missing image, a malformed
line. The library: :mod:`mmretina.datasets.converters`.
"""
import argparse
import sys
from collections import Counter, OrderedDict

from mmretina.datasets.converters.convert import (check_with_mmretina,
                                                  config_lines,
                                                  convert_to_coco)
from mmretina.datasets.converters.records import ConversionError, read_lines


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog='mmretina convert labels',
        description=__doc__.split('\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split('\n', 1)[1] + '\nexamples:\n'
        '  mmretina convert labels voc --ann-dir data/voc/Annotations \\\n'
        '      --img-dir data/voc/JPEGImages --out-dir data/mine \\\n'
        '      --split 0.8,0.2\n'
        '  mmretina convert labels csv --csv boxes.csv \\\n'
        '      --img-dir data/images --out-dir data/mine\n')
    sub = p.add_subparsers(dest='format', required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument('--img-dir', required=True,
                        help='image root; file names in the json are '
                        'relative to it (use it as data_prefix.img)')
    common.add_argument('--out-dir', required=True,
                        help='writes OUT_DIR/annotations/<split>.json')
    g = common.add_mutually_exclusive_group()
    g.add_argument('--split', help='ratios train,val[,test], e.g. 0.8,0.2 '
                   '(default: one file, all.json)')
    g.add_argument('--split-files', nargs='+', metavar='NAME=FILE',
                   help='image lists, e.g. train=train.txt val=val.txt')
    common.add_argument('--seed', type=int, default=0,
                        help='shuffle seed for --split (default %(default)s)')
    common.add_argument('--clip-boxes', action='store_true',
                        help='clip boxes partly outside the image, drop '
                        'those outside or degenerate (default: error)')
    common.add_argument('--no-check', action='store_true',
                        help='do not load the output with '
                        'mmretina.CocoDataset')
    cls = argparse.ArgumentParser(add_help=False)
    cg = cls.add_mutually_exclusive_group()
    cg.add_argument('--classes', help='class names in order, comma '
                    'separated (default: the names found, sorted)')
    cg.add_argument('--classes-file', help='class names, one per line')
    cls.add_argument('--skip-unknown', action='store_true',
                     help='drop boxes of classes not in --classes '
                     '(default: error)')

    v = sub.add_parser('voc', parents=[common, cls],
                       help='Pascal-VOC XML, one per image')
    v.add_argument('--ann-dir', required=True, help='folder of .xml files')
    v.add_argument('--voc-coords', choices=('one-based', 'zero-based'),
                   default='one-based',
                   help='one-based (VOC, default): xmin-1, ymin-1, xmax, '
                   'ymax; zero-based: take the numbers as they are')
    v.add_argument('--skip-difficult', action='store_true',
                   help='drop objects marked <difficult>1</difficult>')
    c = sub.add_parser('csv', parents=[common, cls],
                       help='CSV: image_path,xmin,ymin,xmax,ymax,label')
    c.add_argument('--csv', required=True, help='the CSV file')
    y = sub.add_parser('yolo', parents=[common],
                       help='YOLO txt: class cx cy w h (normalised)')
    y.add_argument('--label-dir', help='folder of .txt files mirroring '
                   '--img-dir (default: --img-dir)')
    y.add_argument('--names', required=True, help='class names, one per '
                   'line (line i = class i), or a YOLO data.yaml')
    return p.parse_args(argv)


def parse_split_files(items):
    out = OrderedDict()
    for item in items or ():
        name, sep, path = item.partition('=')
        if not sep or not name or not path:
            raise ConversionError(
                f'--split-files {item!r}: expected NAME=FILE, e.g. '
                'train=train.txt.')
        out[name] = path
    return out


def convert(args):
    """:func:`convert_to_coco` with the command line's arguments."""
    classes = None
    if getattr(args, 'classes', None):
        classes = [c.strip() for c in args.classes.split(',')]
    elif getattr(args, 'classes_file', None):
        classes = [s for _, s in read_lines(args.classes_file)]
    return convert_to_coco(
        args.format, args.img_dir, args.out_dir,
        ann_dir=getattr(args, 'ann_dir', None),
        csv_path=getattr(args, 'csv', None),
        label_dir=getattr(args, 'label_dir', None),
        names_file=getattr(args, 'names', None), classes=classes,
        skip_unknown=getattr(args, 'skip_unknown', False),
        one_based=getattr(args, 'voc_coords', 'one-based') == 'one-based',
        skip_difficult=getattr(args, 'skip_difficult', False),
        clip_boxes=args.clip_boxes,
        ratios=([float(r) for r in args.split.split(',')]
                if args.split else None),
        split_files=parse_split_files(args.split_files), seed=args.seed)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        out, classes = convert(args)
        for name, o in out.items():
            coco = o['coco']
            n_empty = len(coco['images']) - len(
                {a['image_id'] for a in coco['annotations']})
            per_class = Counter(a['category_id'] for a in coco['annotations'])
            counts = ', '.join(f'{n} {per_class[i + 1]}'
                               for i, n in enumerate(classes))
            line = (f"{name}: {o['path']}: {len(coco['images'])} images "
                    f"({n_empty} without boxes), "
                    f"{len(coco['annotations'])} boxes ({counts})")
            if not args.no_check:
                line += ('; mmretina.CocoDataset loads it: '
                         + check_with_mmretina(o['path'], args.img_dir,
                                               classes))
            print(line)
    except ConversionError as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    print(config_lines(out, classes, args.img_dir))
    return 0


if __name__ == '__main__':
    sys.exit(main())
