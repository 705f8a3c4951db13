"""Describe the CPU, and estimate a config's training time on it.

    python -m mmretina.cli.cpu_info            # one line
    python -m mmretina.cli.cpu_info --json     # the fields as JSON
    python -m mmretina.cli.cpu_info --estimate CONFIG   # + training time
"""
import argparse
import contextlib
import io
import json
from dataclasses import asdict

from mmretina.utils.cpu_info import describe_cpu
from mmretina.utils.train_estimate import estimate_training


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--json', action='store_true',
                        help='print the fields as JSON')
    parser.add_argument('--estimate', metavar='CONFIG',
                        help="also time a few of CONFIG's training "
                        'iterations and estimate the whole training')
    parser.add_argument('--steps', type=int, default=3,
                        help='timed iterations for --estimate (after 1 '
                        'warm-up)')
    args = parser.parse_args(argv)
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
