"""mmengine's JSON logs: the one reader of ``vis_data/scalars.json``
(:func:`read_scalars`, used by the curves and the ablation runner), training
curves and iteration times.

    python tools/analysis_tools/analyze_logs.py plot_curve LOG [LOG ...] \
        [--keys loss coco/bbox_mAP_50] [--legend A B] [--title T] \
        [--out curves.png]
    python tools/analysis_tools/analyze_logs.py cal_train_time LOG [LOG ...] \
        [--include-outliers]

The commands and arguments of mmdet 3.3.0's ``analyze_logs.py``. That tool
imports seaborn (not installed here, and it would pull pandas only to set a
plot style) and reads the mmdet 2.x log layout (a val line per epoch,
``--eval-interval`` to find it, ``--start-epoch``); this one reads what
mmengine 0.10 writes:

* a LOG is ``vis_data/scalars.json`` (or the ``<timestamp>.json`` beside
  it), or a work dir: then every session in it
  (``WORK_DIR/<timestamp>/vis_data/scalars.json``, several when the run
  was resumed) is read in order, a later session's values replacing an
  earlier one's at the same step;
* train records (``loss``, ``loss_cls``, ``lr``, ``time``, ...) are drawn
  against the iteration, val records (``coco/bbox_mAP``, ...) against
  the epoch of an epoch-based run (``step``) or the iteration;
* a key may be given in full (``coco/bbox_mAP_50``) or by its last part
  (``bbox_mAP_50``), as in mmdet.

Each key gets its own panel; several logs are drawn into the same panels.
"""
import json
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence

import numpy as np

__all__ = ['EVENT_KEYS', 'Log', 'log_files', 'read_scalars', 'load_log',
           'plot_curve', 'cal_train_time']

# keys of the records that say why a run stopped (written by tools/train.py)
EVENT_KEYS = ('diverged_at_iter', )


class Log:
    """The scalars of one run.

    Attributes:
        name (str): the path given.
        train (dict[int, dict]): train records by iteration.
        val (dict[int, dict]): val records by step (epoch or iteration).
        by_epoch (bool): the train records carry an ``epoch``.
    """

    def __init__(self, name: str, train: Dict[int, dict],
                 val: Dict[int, dict]) -> None:
        self.name = name
        self.train = dict(sorted(train.items()))
        self.val = dict(sorted(val.items()))
        self.by_epoch = any('epoch' in r for r in self.train.values())

    def keys(self) -> List[str]:
        found = []
        for records in (self.train, self.val):
            for record in records.values():
                found += [k for k in record if k not in found]
        return found

    def series(self, key: str):
        """(xs, ys, x label) of ``key``; raises KeyError if absent."""
        for records, is_val in ((self.train, False), (self.val, True)):
            full = _resolve(key, records)
            if full is None:
                continue
            pts = [(step, r[full]) for step, r in records.items()
                   if full in r]
            xlabel = 'epoch' if is_val and self.by_epoch else 'iteration'
            return ([p[0] for p in pts], [p[1] for p in pts], xlabel)
        raise KeyError(
            f'{self.name} has no {key!r}; it has: {", ".join(self.keys())}')


def _resolve(key: str, records: Dict[int, dict]) -> Optional[str]:
    """``key`` or the one full key whose last '/'-part is ``key``."""
    names = set()
    for record in records.values():
        names.update(record)
    if key in names:
        return key
    matches = sorted(n for n in names if n.split('/')[-1] == key)
    if len(matches) > 1:
        raise KeyError(f'{key!r} is ambiguous: {", ".join(matches)}')
    return matches[0] if matches else None


def log_files(path: str) -> List[str]:
    """The JSON files of ``path``: itself, or the sessions of a work
    dir in time order."""
    if osp.isfile(path):
        return [path]
    if not osp.isdir(path):
        raise FileNotFoundError(f'no such log file or work dir: {path}')
    files = [
        osp.join(path, stamp, 'vis_data', 'scalars.json')
        for stamp in sorted(os.listdir(path))
        if osp.isfile(osp.join(path, stamp, 'vis_data', 'scalars.json'))
    ]
    if not files:
        raise FileNotFoundError(
            f'{path} holds no mmengine log (<timestamp>/vis_data/'
            'scalars.json); pass the json file itself')
    return files


def read_scalars(path: str) -> Dict[str, Dict[int, dict]]:
    """The records of mmengine's scalars log(s) at ``path`` (a json file or
    a work dir: all its sessions in time order, a later session's record
    replacing an earlier one's at the same step), by kind:

    * ``train``: records with ``loss`` or ``lr``, by iteration;
    * ``events``: records of what stopped a run (``diverged_at_iter``, as
      ``tools/train.py`` logs it), by step;
    * ``val``: the others (``coco/bbox_mAP``, ..., or only ``time`` when the
      evaluator returned nothing), by step (epoch or iteration).

    Raises FileNotFoundError (no log) or ValueError (a line that is not an
    mmengine record, naming the file and line).
    """
    out = dict(train={}, val={}, events={})
    for file in log_files(path):
        with open(file) as f:
            for num, line in enumerate(f, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as err:
                    raise ValueError(f'{file}, line {num}: not JSON ({err})'
                                     ) from None
                if not isinstance(record, dict) or 'step' not in record:
                    raise ValueError(
                        f'{file}, line {num}: no "step"; is this an '
                        'mmengine scalars log?')
                if 'loss' in record or 'lr' in record:
                    out['train'][record.get('iter', record['step'])] = record
                elif any(k in record for k in EVENT_KEYS):
                    out['events'][record['step']] = record
                else:
                    out['val'][record['step']] = record
    return out


def load_log(path: str) -> Log:
    """Read ``path`` (a json log or a work dir) into a :class:`Log`."""
    records = read_scalars(path)
    if not records['train'] and not records['val']:
        raise ValueError(f'{path}: the log is empty')
    return Log(path, records['train'], records['val'])


def plot_curve(logs: Sequence[Log], keys: Sequence[str], out: Optional[str],
               legend: Optional[Sequence[str]] = None,
               title: Optional[str] = None) -> None:
    import matplotlib
    if out:
        matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    if legend is not None and len(legend) != len(logs):
        raise ValueError(f'{len(legend)} legend entries for {len(logs)} '
                         'logs')
    names = legend or [log.name for log in logs]
    series = {key: [log.series(key) for log in logs] for key in keys}
    cols = min(len(keys), 3)
    rows = -(-len(keys) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.6 * rows),
                             squeeze=False)
    for ax, key in zip(axes.flat, keys):
        for name, (xs, ys, xlabel) in zip(names, series[key]):
            is_val = xlabel == 'epoch' or len(xs) < 30
            ax.plot(xs, ys, marker='o' if is_val else None,
                    linewidth=1.0 if is_val else 0.6, label=name)
        ax.set_xlabel(xlabel)
        ax.set_title(key)
        ax.grid(alpha=0.3)
        if 'loss' in key:
            ax.set_yscale('log')
        if len(logs) > 1:
            ax.legend(fontsize='small')
    for ax in list(axes.flat)[len(keys):]:
        ax.axis('off')
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    if out:
        os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
        fig.savefig(out, dpi=100)
        print(f'save curve to: {out}')
    else:
        plt.show()
    plt.close(fig)


def cal_train_time(logs: Sequence[Log], include_outliers: bool = False
                   ) -> List[dict]:
    """Mean seconds per iteration of each epoch (or of the whole run for
    iteration-based logs), printed as mmdet does; returns the figures."""
    summaries = []
    for log in logs:
        print(f'{"-" * 5}Analyze train time of {log.name}{"-" * 5}')
        groups: Dict[int, List[float]] = {}
        for record in log.train.values():
            if 'time' in record:
                groups.setdefault(record.get('epoch', 1), []).append(
                    record['time'])
        if not include_outliers:
            # the first logged window of an epoch includes loader start-up
            groups = {e: t[1:] for e, t in groups.items() if len(t) > 1}
        if not groups:
            raise KeyError(
                f'{log.name}: too few train records with a "time" per '
                'epoch; log more often (default_hooks.logger.interval) or '
                'pass --include-outliers')
        epochs = sorted(groups)
        means = np.array([np.mean(groups[e]) for e in epochs])
        slowest, fastest = int(means.argmax()), int(means.argmin())
        summary = dict(slowest_epoch=epochs[slowest],
                       slowest=float(means[slowest]),
                       fastest_epoch=epochs[fastest],
                       fastest=float(means[fastest]),
                       std=float(means.std()), mean=float(means.mean()))
        print(f'slowest epoch {summary["slowest_epoch"]}, average time is '
              f'{summary["slowest"]:.4f} s/iter')
        print(f'fastest epoch {summary["fastest_epoch"]}, average time is '
              f'{summary["fastest"]:.4f} s/iter')
        print(f'time std over epochs is {summary["std"]:.4f}')
        print(f'average iter time: {summary["mean"]:.4f} s/iter\n')
        summaries.append(summary)
    return summaries
