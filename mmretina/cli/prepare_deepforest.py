"""Build a small COCO-format tree-crown dataset from the DeepForest wheel
(:mod:`mmretina.datasets.converters.deepforest`)."""
import argparse
import sys

from mmretina.datasets.converters.deepforest import (PACKAGE, VERSION,
                                                     PrepareError, prepare)
from mmretina.datasets.converters.records import ConversionError


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog='mmretina convert deepforest',
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='examples:\n'
        '  mmretina convert deepforest --out-dir data/deepforest\n'
        '  mmretina convert deepforest --out-dir data/deepforest \\\n'
        f'      --wheel {PACKAGE}-{VERSION}-py3-none-any.whl\n')
    p.add_argument('--out-dir', default='data/deepforest')
    p.add_argument('--wheel', help='path to an already downloaded '
                   f'{PACKAGE}-{VERSION}-py3-none-any.whl (skips pip)')
    p.add_argument('--download-dir', default=None,
                   help='where pip puts the wheel (default: a temporary '
                   'directory that is removed afterwards)')
    p.add_argument('--tile-size', type=int, default=400)
    p.add_argument('--overlap', type=int, default=100,
                   help='train tile overlap in px (stride = tile - overlap)')
    p.add_argument('--min-visible', type=float, default=0.5,
                   help='keep a clipped box iff this fraction of its area '
                   'stays inside the tile')
    p.add_argument('--min-size', type=float, default=2.0,
                   help='drop clipped boxes with a side below this (px)')
    p.add_argument('--force', action='store_true',
                   help='rebuild even if the output already exists')
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        prepare(args.out_dir, args.wheel, args.download_dir, args.tile_size,
                args.overlap, args.min_visible, args.min_size, args.force)
    except (PrepareError, ConversionError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
