"""Training curves and iteration times from mmengine's JSON logs
(:mod:`mmretina.analysis.logs`).

    python tools/analysis_tools/analyze_logs.py plot_curve LOG [LOG ...] \\
        [--keys loss coco/bbox_mAP_50] [--legend A B] [--title T] \\
        [--out curves.png]
    python tools/analysis_tools/analyze_logs.py cal_train_time LOG [LOG ...] \\
        [--include-outliers]
"""
import argparse
import sys

from mmretina.analysis.logs import cal_train_time, load_log, plot_curve


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog='mmretina analyze logs', description='Analyze JSON logs',
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='examples:\n'
        '  mmretina analyze logs plot_curve work_dirs/r50 \\\n'
        '      --keys loss coco/bbox_mAP_50 --out curves.png\n'
        '  mmretina analyze logs cal_train_time work_dirs/r50\n')
    sub = parser.add_subparsers(dest='task', required=True)
    plt_parser = sub.add_parser('plot_curve', help='plot training curves')
    plt_parser.add_argument('json_logs', nargs='+',
                            help='scalars.json files or work dirs')
    plt_parser.add_argument('--keys', nargs='+', default=['bbox_mAP'],
                            help='scalars to plot, e.g. loss '
                            'coco/bbox_mAP_50')
    plt_parser.add_argument('--title', help='title of the figure')
    plt_parser.add_argument('--legend', nargs='+',
                            help='one name per log (default: the paths)')
    plt_parser.add_argument(
        '--out', help='image file (default: show the figure in a window)')
    time_parser = sub.add_parser('cal_train_time',
                                 help='average time per iteration')
    time_parser.add_argument('json_logs', nargs='+',
                             help='scalars.json files or work dirs')
    time_parser.add_argument(
        '--include-outliers', action='store_true',
        help='keep the first record of every epoch')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        logs = [load_log(path) for path in args.json_logs]
        if args.task == 'plot_curve':
            plot_curve(logs, args.keys, args.out, args.legend, args.title)
        else:
            cal_train_time(logs, args.include_outliers)
    except (OSError, ValueError, KeyError) as err:
        msg = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f'analyze_logs.py: error: {msg}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
