#!/usr/bin/env python
"""Write the oriented demo set (DeepForest backgrounds, synthetic vehicles
and boats at any angle, DOTA layout, split by background):
:func:`mmretina.datasets.converters.oriented_demo.make_oriented_demo`.

    python tools/dataset_converters/make_oriented_demo.py data/oriented_demo
"""
import argparse
import sys

from mmretina.datasets.converters.oriented_demo import (NUM_IMAGES,
                                                        make_oriented_demo)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Write the oriented demo set in DOTA layout: '
        'OUT/{train,val,test}/{images,annfiles}/')
    parser.add_argument('out_dir', help='output folder (e.g. '
                        'data/oriented_demo)')
    parser.add_argument('--wheel', help='the deepforest==2.1.0 wheel '
                        '(default: $MMRETINA_DEEPFOREST_WHEEL or '
                        '~/.cache/mmretina/)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--size', type=int, default=256,
                        help='image side in px (default 256)')
    for split, count in NUM_IMAGES.items():
        parser.add_argument(f'--{split}', type=int, default=count,
                            help=f'{split} images (default {count})')
    parser.add_argument('--objects', type=int, nargs=2, default=(20, 45),
                        metavar=('MIN', 'MAX'),
                        help='objects per image (default 20 45)')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        make_oriented_demo(
            args.out_dir, wheel=args.wheel, seed=args.seed, size=args.size,
            num_images={s: getattr(args, s) for s in NUM_IMAGES},
            min_objects=args.objects[0], max_objects=args.objects[1])
    except (FileNotFoundError, ValueError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
