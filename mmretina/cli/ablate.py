"""Rerun the ablations of "Focal Loss for Dense Object Detection" (Table 1)
at a fixed budget and write each table beside the paper's numbers
(:mod:`mmretina.analysis.ablations`).

    python tools/analysis_tools/ablate.py GROUP [--epochs N | --iters N]
        [--seeds K] [--work-dir DIR] [--variants NAME ...]
        [--cfg-options key=value ...] [--table-only]
    python tools/analysis_tools/ablate.py list
"""
import argparse
import os.path as osp
import sys

from mmengine.config import DictAction

from mmretina.analysis.ablations import (GROUPS, dataset_summary, run_group,
                                         write_outputs)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog='mmretina analyze ablate',
        description='Train the variants of one of the paper\'s ablations at '
        'a fixed budget and write its table beside the paper\'s numbers',
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='examples:\n'
        '  mmretina analyze ablate list\n'
        '  mmretina analyze ablate b --epochs 12 --seeds 2\n')
    parser.add_argument('group', choices=sorted(GROUPS) + ['list'],
                        help='a, b, c, e, or list to show the variants')
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument('--epochs', type=int,
                        help='epochs per run (epoch-based configs; default '
                        '20)')
    budget.add_argument('--iters', type=int,
                        help='iterations per run (iteration-based configs)')
    parser.add_argument('--seeds', type=int, default=1,
                        help='seeds per variant (0 .. K-1; default '
                        '%(default)s)')
    parser.add_argument('--work-dir', default='work_dirs/ablations',
                        help='where runs and tables go')
    parser.add_argument('--variants', nargs='+',
                        help='only these variants (config stems)')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='overrides applied to every variant (e.g. data paths)')
    parser.add_argument('--table-only', action='store_true',
                        help='train nothing; write the table of the runs '
                        'that are finished')
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error(f'--seeds must be at least 1, got {args.seeds}')
    if args.epochs is None and args.iters is None:
        args.epochs = 20
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.group == 'list':
        for group in GROUPS.values():
            print(f'{group.key}: {group.title}')
            for v in group.variants:
                print(f'    {v.name:24s} {v.config}')
        return 0
    group = GROUPS[args.group]
    work_dir = osp.abspath(args.work_dir)
    budget = (f'{args.epochs} epoch{"s" if args.epochs != 1 else ""}'
              if args.epochs is not None else f'{args.iters} iterations')
    try:
        records, failures = run_group(
            group, work_dir, args.seeds, args.epochs, args.iters,
            variants=args.variants, cfg_options=args.cfg_options,
            train=not args.table_only)
    except ValueError as err:
        print(f'ablate.py: error: {err}', file=sys.stderr)
        return 2
    table = write_outputs(group, records, work_dir, budget, args.seeds,
                          dataset_summary(records[0]['config']))
    print(table)
    print(f'wrote {osp.join(work_dir, group.key)}/table.md, table.png, '
          'results.json')
    if failures:
        print(f'{len(failures)} run(s) failed (run again to retry):',
              file=sys.stderr)
        for failure in failures:
            print(f'  {failure.splitlines()[0]}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
