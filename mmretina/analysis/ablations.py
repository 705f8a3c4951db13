"""Rerun the ablations of "Focal Loss for Dense Object Detection" (Table 1).

    python tools/analysis_tools/ablate.py GROUP [--epochs N | --iters N]
        [--seeds K] [--work-dir DIR] [--variants NAME ...]
        [--cfg-options key=value ...] [--table-only]
    python tools/analysis_tools/ablate.py list

GROUP is one of

* ``a``: Table 1a, alpha-balanced CE (gamma = 0) over the paper's alphas;
* ``b``: Table 1b, gamma with the paper's best alpha for each;
* ``c``: Table 1c, anchor density (#scales x #aspect ratios per location);
* ``e``: sec. 5.1 "Network Initialization": CE and FL with and without the
  prior initialisation pi = 0.01 (the paper reports that CE without it
  diverges). This is not a panel of Table 1 (the paper's Table 1e is the
  speed/accuracy trade-off); the letter follows the issue that asked for it.

Every variant is a config under ``configs/ablations/`` that inherits the
DeepForest demo recipe and changes one thing. Each variant x seed is trained
with ``mmretina.cli.train`` (``tools/train.py``) at the same budget
(``--epochs`` / ``--iters`` rescale the schedule, see
:func:`apply_budget`), evaluated on the val set at the end of training,
and the group's table is written in the paper's layout with the paper's
numbers beside ours:

    DIR/GROUP/table.md     Markdown table (mean +- std over seeds)
    DIR/GROUP/table.png    the same as a figure
    DIR/GROUP/results.json every run's numbers
    DIR/runs/<hash>/       one run: run_config.py, train.log, result.json,
                           mmengine's logs and the final checkpoint

Runs are keyed by the hash of their resolved config (variant, budget and
seed included), so identical variants of different groups share one run
(e.g. b's gamma = 2 / alpha = .25 is the demo, as is e's ``fl_prior``), a
finished run is never repeated, and an interrupted one resumes from its last
checkpoint (the work dir is claimed with
:func:`mmretina.engine.resume.claim_work_dir`). A run that stops on a
NaN/inf loss (``mmretina.CheckFiniteLossHook`` or the head's check) is a
result, recorded as "diverged at iteration N" -- read from the run's scalars
log, where ``tools/train.py`` writes ``diverged_at_iter`` -- any other
failure is reported and retried on the next call.

``tools/analysis_tools/ablate.py`` is the command line over
:func:`run_group` and :func:`write_outputs`.
"""
import json
import math
import os
import os.path as osp
import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence, Tuple

from mmengine.config import Config

from mmretina.engine.resume import claim_work_dir, config_hash
from mmretina.utils.paths import resource_root
from .logs import read_scalars

__all__ = [
    'METRICS', 'METRIC_NAMES', 'PAPER_SOURCE', 'DIVERGED', 'Variant', 'Group',
    'GROUPS', 'apply_budget', 'prepare_run', 'read_result', 'final_metrics',
    'divergence', 'train_run', 'run_group', 'describe', 'summarise',
    'markdown_table', 'plot_table', 'dataset_summary', 'write_outputs'
]


# The metrics of CocoMetric that Table 1 reports (AP, AP50, AP75).
METRICS = ('coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/bbox_mAP_75')
METRIC_NAMES = ('AP', 'AP50', 'AP75')
PAPER_SOURCE = ('Lin et al., "Focal Loss for Dense Object Detection", '
                'arXiv:1708.02002v2, Table 1 (COCO minival, ResNet-50-FPN, '
                '600 px, 90k iterations of 16 images)')
DIVERGED = 'diverged'


class Variant:
    """One row of a table.

    Args:
        name (str): short name, the config's file stem.
        config (str): config path relative to the repository.
        labels (tuple[str]): the row's values of the group's columns.
        paper (tuple[float, float, float] | str | None): the paper's (AP,
            AP50, AP75) in percent, ``'diverged'``, or None (not reported).
        paper_note (str): a note on the paper's figure (where it comes
            from if not the group's table).
    """

    def __init__(self, name: str, config: str, labels: Tuple[str, ...],
                 paper=None, paper_note: str = '') -> None:
        self.name = name
        self.config = config
        self.labels = labels
        self.paper = paper
        self.paper_note = paper_note


class Group:
    """A table: its title, label columns and variants."""

    def __init__(self, key: str, title: str, columns: Tuple[str, ...],
                 variants: List[Variant], note: str = '') -> None:
        self.key = key
        self.title = title
        self.columns = columns
        self.variants = variants
        self.note = note


def _cfg(group_dir: str, stem: str) -> str:
    return f'configs/ablations/{group_dir}/{stem}.py'


def _alpha_tag(alpha: str) -> str:
    return alpha.replace('.', 'p')


def _groups() -> Dict[str, Group]:
    # Paper numbers: arXiv:1708.02002v2, Table 1a-c (AP, AP50, AP75).
    table_a = [('.10', (0.0, 0.0, 0.0)), ('.25', (10.8, 16.0, 11.7)),
               ('.50', (30.2, 46.7, 32.8)), ('.75', (31.1, 49.4, 33.0)),
               ('.90', (30.8, 49.7, 32.3)), ('.99', (28.7, 47.4, 29.9)),
               ('.999', (25.1, 41.7, 26.1))]
    table_b = [('0', '.75', (31.1, 49.4, 33.0)),
               ('0.1', '.75', (31.4, 49.9, 33.1)),
               ('0.2', '.75', (31.9, 50.7, 33.4)),
               ('0.5', '.50', (32.9, 51.7, 35.2)),
               ('1', '.25', (33.7, 52.0, 36.2)),
               ('2', '.25', (34.0, 52.5, 36.5)),
               ('5', '.25', (32.2, 49.6, 34.8))]
    table_c = [(1, 1, (30.3, 49.0, 31.8)), (2, 1, (31.9, 50.0, 34.0)),
               (3, 1, (31.8, 49.4, 33.7)), (1, 3, (32.4, 52.3, 33.9)),
               (2, 3, (34.2, 53.1, 36.5)), (3, 3, (34.0, 52.5, 36.5)),
               (4, 3, (33.8, 52.1, 36.2))]
    groups = [
        Group('a', 'Table 1a: varying alpha for CE loss (gamma = 0)',
              ('alpha', ), [
                  Variant(f'ce_alpha0{_alpha_tag(a)}',
                          _cfg('a_ce_alpha', f'ce_alpha0{_alpha_tag(a)}'),
                          (a, ), paper) for a, paper in table_a
              ]),
        Group('b', 'Table 1b: varying gamma for FL (with the best alpha)',
              ('gamma', 'alpha'), [
                  Variant(
                      f'fl_gamma{g.replace(".", "p")}_alpha0{_alpha_tag(a)}',
                      _cfg('b_fl_gamma', f'fl_gamma{g.replace(".", "p")}'
                           f'_alpha0{_alpha_tag(a)}'), (g, a), paper)
                  for g, a, paper in table_b
              ]),
        Group('c', 'Table 1c: varying anchor scales and aspects',
              ('#sc', '#ar'), [
                  Variant(f'anchors_{s}sc_{r}ar',
                          _cfg('c_anchors', f'anchors_{s}sc_{r}ar'),
                          (str(s), str(r)), paper) for s, r, paper in table_c
              ],
              note='The demo recipe has 3 scales x 1 ratio (ratio 1: tree '
              'crowns are round); its assigner thresholds (0.4 / 0.3) are '
              'kept for every row.'),
        Group('e', 'Sec. 5.1 "Network Initialization": the prior pi = 0.01',
              ('loss', 'init'), [
                  Variant('ce_no_prior', _cfg('e_init', 'ce_no_prior'),
                          ('CE', 'bias 0'), DIVERGED,
                          'paper, sec. 5.1: "fails quickly, with the '
                          'network diverging during training"'),
                  Variant('ce_prior', _cfg('e_init', 'ce_prior'),
                          ('CE', 'prior .01'), (30.2, None, None),
                          'paper, sec. 5.1: "a respectable AP of 30.2" '
                          '(= Table 1a, alpha .50)'),
                  Variant('fl_no_prior', _cfg('e_init', 'fl_no_prior'),
                          ('FL', 'bias 0'), None,
                          'not reported by the paper (n/r)'),
                  Variant('fl_prior', _cfg('e_init', 'fl_prior'),
                          ('FL', 'prior .01'), (34.0, 52.5, 36.5),
                          'paper: Table 1b, gamma 2 / alpha .25'),
              ],
              note='CE is the focal loss with gamma = 0 and alpha = .5 '
              '(half the standard CE; a constant factor). Not a panel of '
              'Table 1: the paper states the result in sec. 5.1.'),
    ]
    return {g.key: g for g in groups}


GROUPS = _groups()


# ----------------------------------------------------------------------
# budget
# ----------------------------------------------------------------------
def apply_budget(cfg: Config, epochs: Optional[int] = None,
                 iters: Optional[int] = None, seed: int = 0) -> Config:
    """Rescale ``cfg``'s schedule to a budget of ``epochs`` (epoch-based
    loop) or ``iters`` (iteration-based loop), in place.

    What changes: the loop length; validation every quarter of the run and
    at its end; schedulers whose ``end`` / ``T_max`` / ``milestones`` are
    given in the loop's unit (a cosine over the old length now spans the
    new one, milestones move proportionally); schedulers in the other unit
    (the warm-up, in iterations) are cut to half the run if longer; the
    checkpoint interval (one checkpoint at the end); the momentum of an
    ``EMAHook`` (its time constant keeps its share of the run: with the
    demo's 0.002 over 4000 iterations, a 400-iteration run would otherwise
    validate a model that is 45% its random initialisation); the seed.

    Returns:
        Config: ``cfg``.
    """
    loop = cfg.train_cfg
    by_epoch = 'max_epochs' in loop
    if by_epoch == (epochs is None) or (epochs is None) == (iters is None):
        unit = 'epochs' if by_epoch else 'iterations'
        raise ValueError(
            f'this config trains for a number of {unit} '
            f"({loop.get('type', 'loop')}); give the budget with "
            f"{'--epochs' if by_epoch else '--iters'}")
    new = epochs if by_epoch else iters
    if new < 1:
        raise ValueError(f'the budget must be at least 1, got {new}')
    key = 'max_epochs' if by_epoch else 'max_iters'
    old = loop[key]
    loop[key] = new
    loop['val_interval'] = max(1, new // 4)
    iters_per_epoch = _iters_per_epoch(cfg) if by_epoch else 1
    total_iters = new * iters_per_epoch

    scheds = cfg.get('param_scheduler') or []
    if isinstance(scheds, dict):
        scheds = [scheds]
    for sched in scheds:
        if sched.get('by_epoch', True) == by_epoch:
            for name in ('end', 'T_max'):
                if sched.get(name) == old:
                    sched[name] = new
            if 'milestones' in sched:
                sched['milestones'] = sorted({
                    max(1, min(new, round(m * new / old)))
                    for m in sched['milestones']
                })
        elif by_epoch and sched.get('end', 0) > total_iters // 2:
            # a warm-up in iterations under an epoch loop
            sched['end'] = max(1, total_iters // 2)

    ckpt = cfg.get('default_hooks', {}).get('checkpoint')
    if ckpt is not None:
        ckpt['interval'] = new
    for hook in cfg.get('custom_hooks', []):
        if hook.get('type') == 'EMAHook' and 'momentum' in hook:
            hook['momentum'] = min(0.5, hook['momentum'] * old / new)
    cfg.randomness = dict(cfg.get('randomness', {}), seed=seed)
    return cfg


def _iters_per_epoch(cfg: Config) -> int:
    """Iterations per epoch of the train loader (for the warm-up cap).

    Counts the annotation file's images if it can be read; the cap only
    needs an estimate, so an unreadable file counts as one iteration."""
    loader = cfg.train_dataloader
    dataset = loader.dataset
    try:
        with open(osp.join(dataset.get('data_root', ''),
                           dataset.ann_file)) as f:
            num = len(json.load(f)['images'])
    except (OSError, KeyError, TypeError, ValueError):
        return 1
    return max(1, math.ceil(num / loader.batch_size))


# ----------------------------------------------------------------------
# runs
# ----------------------------------------------------------------------
def prepare_run(variant: Variant, work_dir: str, seed: int,
                epochs: Optional[int], iters: Optional[int],
                cfg_options: Optional[dict]) -> Tuple[str, str]:
    """Write the run's resolved config; returns (config path, run dir).

    The run dir is named by the hash of that config, so a change of
    budget, seed, option or recipe gives a new run."""
    cfg = Config.fromfile(osp.join(resource_root(), variant.config))
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    apply_budget(cfg, epochs=epochs, iters=iters, seed=seed)
    config_dir = osp.join(work_dir, 'configs')
    os.makedirs(config_dir, exist_ok=True)
    tmp = osp.join(config_dir, f'.{variant.name}_seed{seed}.{os.getpid()}.py')
    cfg.dump(tmp)
    digest = config_hash(tmp)
    path = osp.join(config_dir, f'{variant.name}_seed{seed}_{digest}.py')
    os.replace(tmp, path)
    return path, osp.join(work_dir, 'runs', digest)


def read_result(run_dir: str) -> Optional[dict]:
    path = osp.join(run_dir, 'result.json')
    if not osp.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def final_metrics(run_dir: str) -> Optional[dict]:
    """The val metrics of the last validation in ``run_dir``'s mmengine
    logs (``<timestamp>/vis_data/scalars.json``, all sessions of a resumed
    run, read by :func:`mmretina.analysis.logs.read_scalars`), with its
    ``step``; None if there was no validation.

    A validation without COCO metrics is one where the model detected
    nothing above the score threshold (mmdet's ``CocoMetric`` then logs
    "The testing results of the whole dataset is empty" and returns no
    metric): its AP is 0, recorded with ``no_detections=True``.
    """
    try:
        val = read_scalars(run_dir)['val']
    except FileNotFoundError:
        return None
    if not val:
        return None
    last = val[max(val)]
    if METRICS[0] not in last:
        return dict({k: 0.0 for k in METRICS}, step=last['step'],
                    no_detections=True)
    return {k: last[k] for k in METRICS + ('step', ) if k in last}


def divergence(run_dir: str) -> Optional[int]:
    """The iteration at which the run in ``run_dir`` stopped on a NaN/inf
    loss (the ``diverged_at_iter`` record ``tools/train.py`` writes to the
    scalars log), or None."""
    try:
        events = read_scalars(run_dir)['events']
    except FileNotFoundError:
        return None
    found = [r['diverged_at_iter'] for _, r in sorted(events.items())
             if 'diverged_at_iter' in r]
    return int(found[-1]) if found else None


def train_run(config: str, run_dir: str, log) -> dict:
    """Train (or resume) one run with ``mmretina.cli.train`` (what
    ``tools/train.py`` runs) and return its result: ``{'status': 'done',
    metrics..., 'step'}`` or ``{'status': 'diverged', 'iteration': N,
    'message': ...}``. Raises RuntimeError on any other failure."""
    moved = claim_work_dir(config, run_dir)
    if moved:
        log(f'  {run_dir} held a run of another config: moved to {moved}')
    train_log = osp.join(run_dir, 'train.log')
    cmd = [sys.executable, '-m', 'mmretina.cli.train', config,
           '--work-dir', run_dir, '--resume']
    # the child imports this very mmretina
    package_parent = osp.dirname(
        osp.dirname(osp.dirname(osp.abspath(__file__))))
    env = dict(os.environ)
    env['PYTHONPATH'] = package_parent + os.pathsep + env.get(
        'PYTHONPATH', '')
    start = time.time()
    with open(train_log, 'a') as out:
        out.write(f'\n$ {" ".join(cmd)}\n')
        out.flush()
        offset = out.tell()
        rc = subprocess.call(cmd, stdout=out, stderr=subprocess.STDOUT,
                             env=env, cwd=resource_root())
    seconds = round(time.time() - start, 1)
    with open(train_log) as f:
        f.seek(offset)
        text = f.read()
    if rc != 0:
        iteration = divergence(run_dir)
        if iteration is not None:
            # the error's last line, for the record (not parsed)
            lines = text.strip().splitlines()
            return dict(status=DIVERGED, iteration=iteration,
                        message=(lines[-1] if lines else '')[:500],
                        seconds=seconds)
        tail = '\n'.join(text.strip().splitlines()[-15:])
        raise RuntimeError(f'training failed (exit code {rc}); the end of '
                           f'{train_log}:\n{tail}')
    metrics = final_metrics(run_dir)
    if metrics is None:
        raise RuntimeError(f'training finished but {run_dir} holds no '
                           f'validation result ({METRICS[0]})')
    return dict(status='done', seconds=seconds, **metrics)


def run_group(group: Group, work_dir: str, seeds: int,
              epochs: Optional[int], iters: Optional[int],
              variants: Optional[Sequence[str]] = None,
              cfg_options: Optional[dict] = None, train: bool = True,
              log=print) -> Tuple[List[dict], List[str]]:
    """Train the missing runs of ``group`` (of ``variants`` only, if
    given) and collect the results; the group's other variants are
    included where a run of this budget and seed has finished.

    Returns:
        tuple[list[dict], list[str]]: one record per variant x seed
        (``variant``, ``seed``, ``config``, ``run_dir``, ``result`` or
        None) and the failures.
    """
    chosen = group.variants
    if variants:
        names = [v.name for v in group.variants]
        unknown = sorted(set(variants) - set(names))
        if unknown:
            raise ValueError(f'group {group.key} has no variant '
                             f'{", ".join(unknown)}; it has: '
                             f'{", ".join(names)}')
        chosen = [v for v in group.variants if v.name in variants]
    records, failures = [], []
    total = len(chosen) * seeds
    count = 0
    for variant in group.variants:
        for seed in range(seeds):
            config, run_dir = prepare_run(variant, work_dir, seed, epochs,
                                          iters, cfg_options)
            result = read_result(run_dir)
            if variant not in chosen:
                # not asked for: in the table only if it was run before
                if result is not None:
                    records.append(
                        dict(variant=variant.name, seed=seed, config=config,
                             run_dir=run_dir, result=result))
                continue
            count += 1
            what = f'[{count}/{total}] {group.key} {variant.name} seed {seed}'
            if result is None and train:
                log(f'[ablate {time.strftime("%H:%M:%S")}] {what}: training '
                    f'-> {run_dir}')
                try:
                    result = train_run(config, run_dir, log)
                except RuntimeError as err:
                    failures.append(f'{what}: {err}')
                    log(f'  FAILED: {err}')
                    result = None
                else:
                    result['variant'] = variant.name
                    result['config'] = config
                    with open(osp.join(run_dir, 'result.json'), 'w') as f:
                        json.dump(result, f, indent=1)
            elif result is not None:
                log(f'[ablate] {what}: done before ({run_dir})')
            if result is not None:
                log(f'  {describe(result)}')
            records.append(
                dict(variant=variant.name, seed=seed, config=config,
                     run_dir=run_dir, result=result))
    return records, failures


def describe(result: dict) -> str:
    if result['status'] == DIVERGED:
        return f'diverged at iteration {result["iteration"]}'
    vals = ', '.join(f'{n} {100 * result[m]:.1f}'
                     for n, m in zip(METRIC_NAMES, METRICS) if m in result)
    return f'{vals} ({result.get("seconds", "?")} s)'


# ----------------------------------------------------------------------
# table
# ----------------------------------------------------------------------
def summarise(group: Group, records: List[dict]) -> List[dict]:
    """Per variant: mean and sample std (over seeds) of each metric in
    percent, the numbers of finished, diverged and missing seeds."""
    rows = []
    for variant in group.variants:
        mine = [r for r in records if r['variant'] == variant.name]
        if not mine:
            continue
        done = [r['result'] for r in mine
                if r['result'] and r['result']['status'] == 'done']
        diverged = [r['result'] for r in mine
                    if r['result'] and r['result']['status'] == DIVERGED]
        stats = {}
        for name, key in zip(METRIC_NAMES, METRICS):
            vals = [100 * res[key] for res in done if key in res]
            if vals:
                mean = sum(vals) / len(vals)
                std = (math.sqrt(sum((v - mean)**2 for v in vals) /
                                 (len(vals) - 1)) if len(vals) > 1 else None)
                stats[name] = (mean, std)
        rows.append(
            dict(variant=variant, stats=stats, done=len(done),
                 diverged=[d['iteration'] for d in diverged],
                 missing=len(mine) - len(done) - len(diverged),
                 seconds=[res['seconds'] for res in done + diverged
                          if 'seconds' in res]))
    return rows


def _fmt(stat) -> str:
    if stat is None:
        return ''
    mean, std = stat
    return f'{mean:.1f}' if std is None else f'{mean:.1f} ± {std:.1f}'


def _paper_cells(paper) -> List[str]:
    if paper is None:
        return ['n/r'] * 3
    if paper == DIVERGED:
        return ['diverges', '', '']
    return ['' if v is None else f'{v:.1f}' for v in paper]


def markdown_table(group: Group, rows: List[dict], budget: str,
                   seeds: int, data: str) -> str:
    head = list(group.columns) + [
        'paper AP', 'paper AP50', 'paper AP75', 'ours AP', 'ours AP50',
        'ours AP75', 'runs'
    ]
    lines = [
        f'### {group.title}', '',
        f'Ours: {data}, COCO bbox AP x 100 at the end of training, '
        f'{budget} per run, ' + (
            f'mean ± std over {seeds} seeds (runs: the seeds finished)'
            if seeds > 1 else '1 seed') + f'. Paper: {PAPER_SOURCE}.',
        ''
    ]
    if group.note:
        lines += [group.note, '']
    lines += ['| ' + ' | '.join(head) + ' |',
              '|' + '---|' * len(head)]
    notes = []
    for row in rows:
        v = row['variant']
        ours = [_fmt(row['stats'].get(n)) for n in METRIC_NAMES]
        if row['diverged'] and not row['done']:
            ours = [f'diverged (iter {", ".join(map(str, row["diverged"]))})',
                    '', '']
        runs = f'{row["done"]}'
        if row['diverged']:
            runs += f' + {len(row["diverged"])} diverged'
            if row['done']:
                notes.append(f'{v.name}: {len(row["diverged"])} seed(s) '
                             f'diverged at iteration(s) '
                             f'{", ".join(map(str, row["diverged"]))}')
        if row['missing']:
            runs += f' ({row["missing"]} missing)'
        if v.paper_note:
            notes.append(f'{" / ".join(v.labels)}: {v.paper_note}')
        lines.append('| ' + ' | '.join(
            list(v.labels) + _paper_cells(v.paper) + ours + [runs]) + ' |')
    if notes:
        lines += [''] + [f'- {n}' for n in notes]
    lines.append('')
    return '\n'.join(lines)


def plot_table(group: Group, rows: List[dict], budget: str, data: str,
               out: str) -> None:
    """Paper AP and our AP / AP50 per variant, side by side."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    labels = ['/'.join(r['variant'].labels) for r in rows]
    xs = list(range(len(rows)))
    fig, (ax_p, ax_o) = plt.subplots(1, 2, figsize=(11, 4), sharex=True)
    paper = [r['variant'].paper for r in rows]
    pxs = [x for x, p in zip(xs, paper) if isinstance(p, tuple)]
    ax_p.plot(pxs, [paper[x][0] for x in pxs], 'ks-', label='AP')
    p50 = [x for x in pxs if paper[x][1] is not None]
    ax_p.plot(p50, [paper[x][1] for x in p50], 'k^--', label='AP50',
              alpha=0.6)
    for x, p in zip(xs, paper):
        if p == DIVERGED:
            ax_p.annotate('diverges', (x, 0), ha='center', va='bottom',
                          color='red')
    ax_p.set_title('paper (COCO minival, R50-FPN)')
    for name, style in (('AP', 'o-'), ('AP50', '^--')):
        pts = [(x, r['stats'][name]) for x, r in zip(xs, rows)
               if name in r['stats']]
        if pts:
            ax_o.errorbar([p[0] for p in pts], [p[1][0] for p in pts],
                          yerr=[p[1][1] or 0 for p in pts], fmt=style,
                          capsize=3, label=name)
    for x, r in zip(xs, rows):
        if r['diverged'] and not r['done']:
            ax_o.annotate(f'diverged\n(iter {r["diverged"][0]})', (x, 0),
                          ha='center', va='bottom', color='red')
    ax_o.set_title(f'ours ({budget} per run)')
    for ax in (ax_p, ax_o):
        ax.set_xticks(xs)
        ax.set_xticklabels(labels, rotation=30)
        ax.set_xlabel(' / '.join(group.columns))
        ax.set_ylabel('AP (%)')
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    fig.suptitle(group.title)
    fig.text(0.5, 0.005, f'ours: {data}', ha='center', va='bottom',
             fontsize='small')
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(out, dpi=100)
    plt.close(fig)


def dataset_summary(config: str) -> str:
    """'val set NAME (I images, B boxes)' of a run config's evaluator."""
    ann_file = Config.fromfile(config).val_evaluator.ann_file
    try:
        with open(osp.join(resource_root(), ann_file)) as f:
            coco = json.load(f)
    except (OSError, ValueError):
        return f'val set {ann_file}'
    return (f'val set {ann_file} ({len(coco["images"])} images, '
            f'{len(coco["annotations"])} boxes)')


def write_outputs(group: Group, records: List[dict], work_dir: str,
                  budget: str, seeds: int, data: str) -> str:
    rows = summarise(group, records)
    out_dir = osp.join(work_dir, group.key)
    os.makedirs(out_dir, exist_ok=True)
    table = markdown_table(group, rows, budget, seeds, data)
    with open(osp.join(out_dir, 'table.md'), 'w') as f:
        f.write(table)
    with open(osp.join(out_dir, 'results.json'), 'w') as f:
        json.dump(dict(group=group.key, title=group.title, budget=budget,
                       seeds=seeds, paper_source=PAPER_SOURCE,
                       runs=records), f, indent=1)
    plot_table(group, rows, budget, data, osp.join(out_dir, 'table.png'))
    return table
