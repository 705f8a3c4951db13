"""Command line of the anchor analysis (:mod:`mmretina.analysis.anchors`):
``tools/analysis_tools/analyze_anchors.py`` and
``mmretina analyze anchors``."""
import argparse
import os.path as osp
import sys

from mmretina.analysis import anchors


def parse_args(argv=None):
    from mmengine.config import DictAction
    p = argparse.ArgumentParser(
        prog='mmretina analyze anchors',
        description=anchors.__doc__.split('\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=anchors.__doc__.split('\n', 1)[1] + '\nexamples:\n'
        '  mmretina analyze anchors configs/retinanet_r50_fpn_1x_coco.py '
        '\\\n'
        '      --optimize --out-dir work_dirs/anchors\n')
    p.add_argument('config')
    p.add_argument('--optimize', action='store_true',
                   help='search octave_base_scale, scales_per_octave and '
                   'ratios')
    p.add_argument('--anchors-per-location', type=int, default=None,
                   help='budget for --optimize (default: the config\'s)')
    p.add_argument('--out-dir', default=None,
                   help='write anchor_analysis.png / .json here (default: '
                   'work_dirs/<config name>/)')
    p.add_argument('--seed', type=int, default=0,
                   help='seed for the random resize / rotation draws')
    p.add_argument('--max-images', type=int, default=None,
                   help='analyse only the first N training images')
    p.add_argument('--exact', action='store_true',
                   help='IoU with every anchor (slow), and positives with '
                   'competition between objects')
    p.add_argument('--cfg-options', nargs='+', action=DictAction)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    import mmretina  # noqa: F401  (registers mmretina.*)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    out_dir = args.out_dir or osp.join(
        'work_dirs', osp.splitext(osp.basename(args.config))[0])
    try:
        anchors.analyze(cfg, out_dir, args.optimize,
                        args.anchors_per_location, args.seed,
                        args.max_images, args.exact)
    except anchors.AnalysisError as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())


if __name__ == '__main__':
    sys.exit(main())
