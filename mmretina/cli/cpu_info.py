"""Describe the CPU, and estimate a config's training time on it.

    mmretina analyze cpu                       # one line
    mmretina analyze cpu --json                # the fields as JSON
    mmretina analyze cpu --estimate CONFIG     # + training time
"""
import argparse
import contextlib
import io
import json
from dataclasses import asdict

from mmretina.utils.cpu_info import describe_cpu
from mmretina.utils.train_estimate import estimate_training


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog='mmretina analyze cpu',
        description=__doc__.split('\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='examples:\n'
        '  mmretina analyze cpu\n'
        '  mmretina analyze cpu --estimate '
        'configs/retinanet_r18_fpn_deepforest.py\n')
    parser.add_argument('--json', action='store_true',
                        help='print the fields as JSON')
    parser.add_argument('--estimate', metavar='CONFIG',
                        help="also time a few of CONFIG's training "
                        'iterations and estimate the whole training')
    parser.add_argument('--steps', type=int, default=3,
                        help='timed iterations for --estimate (after 1 '
                        'warm-up)')
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    info = describe_cpu()
    est = None
    if args.estimate:
        # keep the dataset/model builders' chatter off the banner
        with contextlib.redirect_stdout(io.StringIO()):
            est = estimate_training(args.estimate, steps=args.steps)
    if args.json:
        fields = asdict(info)
        if est is not None:
            fields['estimate'] = asdict(est)
        print(json.dumps(fields))
    else:
        print(f'CPU: {info.summary()}')
        if est is not None:
            print(est.summary() + ' (timed here, now; a busy machine '
                  'takes longer)')


if __name__ == '__main__':
    main()
