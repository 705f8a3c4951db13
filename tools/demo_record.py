"""The main job's record: what ``tools/run_demo.sh`` measured, as a record
of ``benchmarks/report.py`` (the README's results table renders it).

    python tools/demo_record.py accuracy WORK_DIR/test
    python tools/demo_record.py write CONFIG --job-s 778 --train-s 667 \\
        --test-dir WORK_DIR/test [--figure 'KEY=VALUE' ...] --out REC.json
    python tools/demo_record.py field --out REC.json CONFIG CHECKPOINT \\
        --coco data/deepforest/annotations/val.json \\
        --img-dir data/deepforest/images --out-dir WORK_DIR/field_test

``accuracy`` prints the test metrics of the latest ``tools/test.py`` run
under a work dir; ``write`` writes the record of the job: the CPU (and
whether it runs bf16 natively), the precision the config trains in there,
the whole job's and the training's seconds as the script timed them, the
test mAP50 / mAP, the date and the commit. ``field`` runs the field
evaluation (``tools/analysis_tools/eval_field.py`` with the arguments after
``--out REC.json``) and writes its table as a record: precision, recall,
mAP, mAP50 and the counts per image and overall (the GIS training guide
renders it).
"""
import argparse
import glob
import json
import os.path as osp
import sys
from typing import Dict, Optional, Sequence

sys.path.insert(0, osp.join(osp.dirname(osp.dirname(osp.abspath(
    __file__))), 'benchmarks'))
from report import table_record, write_record  # noqa: E402

COLUMNS = ('CPU (`lscpu` model name)', 'precision', 'whole job', 'training',
           'test `coco/bbox_mAP_50`', 'test `coco/bbox_mAP`')
METRICS = ('coco/bbox_mAP_50', 'coco/bbox_mAP')


def test_metrics(test_dir: str) -> Dict[str, float]:
    """The metrics of the latest ``tools/test.py`` run under ``test_dir``
    (mmengine writes them to ``<dir>/<timestamp>/<timestamp>.json``).

    Raises:
        FileNotFoundError: no run there, naming the folder.
    """
    runs = sorted(glob.glob(osp.join(test_dir, '*', '*.json')),
                  key=osp.getmtime)
    if not runs:
        raise FileNotFoundError(
            f'{test_dir}: no <timestamp>/<timestamp>.json of tools/test.py; '
            'run the evaluation step first')
    with open(runs[-1]) as f:
        return json.load(f)


def training_precision(optim_wrapper: Dict, bf16_native: bool) -> str:
    """'bf16' or 'fp32': what ``optim_wrapper`` (a config's) trains in on
    a CPU that runs bf16 natively or not (``mmretina.BF16OptimWrapper``'s
    rule: :func:`mmretina.engine.optimizers.bf16_enabled`)."""
    from mmretina.engine.optimizers import bf16_enabled
    if optim_wrapper.get('type') not in ('mmretina.BF16OptimWrapper',
                                         'BF16OptimWrapper'):
        return 'fp32'
    enabled = optim_wrapper.get('enabled', 'auto')
    return 'bf16' if bf16_enabled(enabled, bf16_native) else 'fp32'


def main_job_record(config: str, cpu: str, bf16_native: bool,
                    precision: str, job_s: int, train_s: int,
                    metrics: Dict[str, float],
                    figures: Optional[Dict[str, str]] = None,
                    commit: Optional[str] = None) -> Dict:
    """The record of one run of the main job.

    Args:
        config (str): the config trained.
        cpu (str): the CPU line of the run (``CPUInfo.summary()``).
        bf16_native (bool): whether the CPU runs bf16 natively.
        precision (str): what the training ran in ('bf16' or 'fp32').
        job_s (int): seconds of the whole job, install excluded.
        train_s (int): seconds of ``tools/train.py``.
        metrics (dict): the test metrics (``coco/bbox_mAP_50``,
            ``coco/bbox_mAP``).
        figures (dict, optional): more figures of the run by name (the
            deployed models' test mAP50).
        commit (str, optional): the code run (default: this clone's).

    Returns:
        dict: a record of ``benchmarks/report.py``, one row.
    """
    missing = [k for k in METRICS if k not in metrics]
    if missing:
        raise KeyError(f'test metrics lack {missing}; they have '
                       f'{sorted(metrics)}')
    row = [cpu, precision, f'{job_s} s', f'{train_s} s'] + [
        f'{metrics[k]:.3f}' for k in METRICS]
    record = table_record(
        'tools/run_demo.sh', cpu, COLUMNS, [row], argv=[], figures=figures,
        commit=commit, config=config,
        **{'bf16 native': 'yes' if bf16_native else 'no'})
    record['command'] = 'bash tools/run_demo.sh'
    return record


FIELD_COLUMNS = ('image', 'precision', 'recall', 'mAP', 'mAP50', 'matched',
                 'labels')


def field_record(summary: Dict, eval_argv: Sequence[str], cpu: str,
                 commit: Optional[str] = None) -> Dict:
    """The record of one field evaluation.

    Args:
        summary (dict): the ``summary.json`` ``eval_field.py`` wrote
            (:func:`mmretina.evaluation.field.field_summary`).
        eval_argv (list[str]): ``eval_field.py``'s arguments.
        cpu (str): the CPU line of the run.
        commit (str, optional): the code run (default: this clone's).

    Returns:
        dict: a record of ``benchmarks/report.py``: a row per image (its
        file name) and one for all, precision and recall at
        ``summary['iou_thr']`` with scores >= ``summary['score_thr']``.
    """

    def fmt(v):
        return '-' if v is None else f'{v:.3f}'

    def row(name, r):
        return [name, fmt(r['precision']), fmt(r['recall']), fmt(r['mAP']),
                fmt(r['mAP50']), str(r['tp']), str(r['n_gt']),
                str(r['n_pred'])]

    thr = summary['score_thr']
    columns = FIELD_COLUMNS + (f'detections >= {thr}', )
    rows = [row(osp.basename(k), r)
            for k, r in summary['per_raster'].items()]
    rows.append(row('overall (mean over images)', summary['overall']))
    notes = [f"Box precision / recall at IoU {summary['iou_thr']}, "
             f'detections >= {thr}, averaged over images; mAP and mAP50 '
             'over every detection.']
    return table_record('tools/analysis_tools/eval_field.py', cpu, columns,
                        rows, notes=notes, argv=list(eval_argv),
                        commit=commit)


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    sub = p.add_subparsers(dest='cmd', required=True)
    a = sub.add_parser('accuracy', help='print the latest test metrics')
    a.add_argument('test_dir')
    w = sub.add_parser('write', help='write the record of the job')
    w.add_argument('config')
    w.add_argument('--job-s', type=int, required=True,
                   help='seconds of the whole job, install excluded')
    w.add_argument('--train-s', type=int, required=True,
                   help='seconds of the training')
    w.add_argument('--test-dir', required=True,
                   help="tools/test.py's work dir")
    w.add_argument('--figure', action='append', default=[],
                   metavar='KEY=VALUE', help='another figure of the run')
    w.add_argument('--out', required=True)
    f = sub.add_parser('field', help='run the field evaluation and write '
                       'its record')
    f.add_argument('--out', required=True, help='the record (.json)')
    f.add_argument('eval_args', nargs=argparse.REMAINDER,
                   help="eval_field.py's arguments")
    args = p.parse_args(argv)
    if args.cmd == 'field':
        return field(args.eval_args, args.out)
    metrics = test_metrics(args.test_dir)
    if args.cmd == 'accuracy':
        print(', '.join(f'{k} {metrics.get(k, float("nan")):.3f}'
                        for k in METRICS))
        return 0
    from mmengine.config import Config

    from mmretina.utils.cpu_info import describe_cpu
    info = describe_cpu()
    precision = training_precision(
        Config.fromfile(args.config).optim_wrapper, info.bf16_native)
    bad = [f for f in args.figure if '=' not in f]
    if bad:
        p.error(f'--figure takes KEY=VALUE, got {bad}')
    figures = dict(f.split('=', 1) for f in args.figure)
    record = main_job_record(args.config, info.summary(), info.bf16_native,
                             precision, args.job_s, args.train_s, metrics,
                             figures)
    write_record(args.out, record)
    return 0


def field(eval_argv: Sequence[str], out: str) -> int:
    """Run ``eval_field.py`` with ``eval_argv``; on success write the record
    of its ``summary.json`` to ``out``. Returns its exit status."""
    from mmretina.cli import eval_field
    from mmretina.utils.cpu_info import describe_cpu
    eval_args = eval_field.parse_args(eval_argv)
    status = eval_field.main(eval_argv)
    if status:
        return status
    with open(osp.join(eval_args.out_dir, 'summary.json')) as f:
        summary = json.load(f)
    write_record(out, field_record(summary, eval_argv,
                                   describe_cpu().summary()))
    return 0


if __name__ == '__main__':
    sys.exit(main())
