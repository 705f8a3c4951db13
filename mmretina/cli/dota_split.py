"""Cut DOTA's large images and labels into patches (mmrotate's img_split).

The options and rules of mmrotate 1.x's ``img_split.py``
(``tools/data/dota/split`` in mmrotate's repository), whose split configs
(``split_configs/ss_trainval.json``, ...) --base-json reads.

Writes SAVE_DIR/images/{image}__{size}__{x}___{y}.png and
SAVE_DIR/annfiles/{same}.txt (DOTA labels in the patch's pixels; difficult
2 where the patch's edge cuts the object), the layout of mmrotate's
DOTADataset, checks it with DOTADataset and prints the config lines.

Windows of --sizes px start (size - gap) apart, the last row and column
moved back to the image's edge, and of int(size / rate) px for each of
--rates; windows with no more than --img-rate-thr of their area on the image
are dropped (unless none has more). An object goes to a patch when at least
--iof-thr of its area lies in it; it is written whole. Patches that reach
past the image are padded with --padding-value (BGR) unless --no-padding.
Options given on the command line override --base-json's. Detections on
the patches are merged back per image with rotated NMS by
mmretina.datasets.converters.dota_split.merge_patch_results. The library:
:mod:`mmretina.datasets.converters.dota_split`.
"""
import argparse
import os.path as osp
import re
import sys

from mmretina.datasets.converters.dota_split import (GAP, IMG_RATE_THR,
                                                     IOF_THR, MAX_PIXELS,
                                                     PADDING_VALUE, SIZE)
from mmretina.datasets.converters.records import ConversionError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog='mmretina dota split',
        description=__doc__.split('\n', 1)[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split('\n\n', 1)[1] + '\nexamples:\n'
        '  mmretina dota split --img-dirs data/DOTA/val/images \\\n'
        '      --ann-dirs data/DOTA/val/labelTxt --save-dir '
        'data/split_ss_dota/val\n'
        '  mmretina dota split --img-dirs data/DOTA/test/images \\\n'
        '      --save-dir data/split_ms_dota/test --gaps 500 '
        '--rates 0.5 1.0 1.5 --nproc 2\n'
        '  mmretina dota split --base-json ss_trainval.json\n')
    p.add_argument('--base-json', help='one of mmrotate\'s split configs '
                   '(split_configs/ss_trainval.json): its values are the '
                   'defaults of the other options')
    p.add_argument('--img-dirs', nargs='+', help='folders of images')
    p.add_argument('--ann-dirs', nargs='+', help='their label folders '
                   '(labelTxt), one per image folder; omit for a test set')
    p.add_argument('--save-dir', help='a new folder for images/ and '
                   'annfiles/')
    p.add_argument('--sizes', nargs='+', type=int, default=[SIZE],
                   help=f'window sides, px (default {SIZE})')
    p.add_argument('--gaps', nargs='+', type=int, default=[GAP],
                   help=f'overlap of neighbouring windows, px, one per size '
                   f'(default {GAP})')
    p.add_argument('--rates', nargs='+', type=float, default=[1.0],
                   help='windows of size / rate px for each rate (the image '
                   'is not resized); default 1.0')
    p.add_argument('--img-rate-thr', type=float, default=IMG_RATE_THR,
                   help='drop windows with no more than this share on the '
                   f'image (default {IMG_RATE_THR})')
    p.add_argument('--iof-thr', type=float, default=IOF_THR,
                   help='an object goes to a patch with at least this share '
                   f'of its area inside (default {IOF_THR})')
    p.add_argument('--no-padding', action='store_true',
                   help='cut patches at the image\'s edge instead of padding '
                   'them to the window\'s side')
    p.add_argument('--padding-value', nargs='+', type=int,
                   default=list(PADDING_VALUE),
                   help='padding, one value or B G R (default '
                   f'{" ".join(map(str, PADDING_VALUE))}, as mmrotate\'s '
                   'split configs)')
    p.add_argument('--save-ext', default='.png',
                   choices=['.png', '.jpg', '.bmp', '.tif'],
                   help='the patches\' format (default .png)')
    p.add_argument('--classes', help='class names, comma separated: refuse '
                   'labels of others (default: DOTA-v1.0\'s 15 for the '
                   'check)')
    p.add_argument('--max-pixels', type=int, default=MAX_PIXELS,
                   help='refuse images declaring more pixels (default '
                   f'{MAX_PIXELS}, OpenCV\'s limit: 3.2 GB decoded)')
    p.add_argument('--nproc', type=int, default=1,
                   help='images split in parallel (default 1)')
    p.add_argument('--no-check', action='store_true',
                   help='do not load the output with mmrotate\'s '
                   'DOTADataset')
    return p


def parse_args(argv=None):
    return _parser().parse_args(argv)


def _with_base_json(argv) -> argparse.Namespace:
    """Options again, with --base-json's values as the defaults (the
    command line wins)."""
    from mmretina.datasets.converters.dota_split import load_split_config
    parser = _parser()
    args = parser.parse_args(argv)
    if args.base_json:
        parser.set_defaults(**load_split_config(args.base_json))
        args = parser.parse_args(argv)
    return args


def main(argv=None) -> int:
    parse_args(argv)  # --help, and argparse's errors, before reading files
    from mmretina.datasets.converters.dota import (check_dota_layout,
                                                   dota_config_lines)
    from mmretina.datasets.converters.dota_split import split_dota
    try:
        args = _with_base_json(argv)
        if not args.img_dirs or not args.save_dir:
            raise ConversionError('give --img-dirs and --save-dir (or a '
                                  '--base-json that has them)')
        classes = ([c.strip() for c in args.classes.split(',')]
                   if args.classes else None)
        result = split_dota(
            args.img_dirs, args.save_dir, args.ann_dirs, sizes=args.sizes,
            gaps=args.gaps, rates=args.rates,
            img_rate_thr=args.img_rate_thr, iof_thr=args.iof_thr,
            padding=not args.no_padding,
            padding_value=args.padding_value, ext=args.save_ext,
            classes=classes, max_pixels=args.max_pixels, nproc=args.nproc)
        for reason, n in result['report'].items():
            if n:
                print(f'  {reason}: {n}')
        line = f"{result['ann_dir']}: {len(result['patches'])} patches"
        if not args.no_check:
            line += ("; mmrotate's DOTADataset loads it: " + check_dota_layout(
                result['ann_dir'], result['img_dir'], classes,
                args.save_ext[1:]))
        print(line)
    except (ConversionError, ImportError, ValueError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    name = re.sub(r'\W', '_', osp.basename(osp.normpath(args.save_dir)))
    print(dota_config_lines(
        args.save_dir, {name if name.isidentifier() else 'dota':
                        (result['ann_dir'], result['img_dir'])},
        classes, args.save_ext[1:]))
    return 0


if __name__ == '__main__':
    sys.exit(main())
