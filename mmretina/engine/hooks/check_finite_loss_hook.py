"""Stop training at the first NaN / inf loss, before it is checkpointed.

Once a loss is NaN, the backward pass has already written NaN into the
weights; mmengine's ``CheckpointHook`` would save them at the next
checkpoint iteration and point ``last_checkpoint`` (what ``--resume``
reads) at them. This hook runs after each training iteration, before
``CheckpointHook`` and ``LoggerHook`` (priority ``ABOVE_NORMAL``), and
raises ``FloatingPointError`` naming the iteration (1-based, as in the log
and in ``iter_<i>.pth``), the loss term and the last good checkpoint.

``mmretina.RetinaHead`` checks its own loss in the forward pass
(:func:`mmretina.models.dense_heads.monitor.check_finite_head_outputs`) and
raises first, before the weights change but without the iteration;
``tools/train.py`` adds it with :func:`non_finite_message`. The hook guards
the rest: mmdet's heads, other loss terms, a sum that overflows.
"""
import math
import os.path as osp
from typing import Dict, Optional, Union

import torch
from mmengine.dist import all_reduce, get_world_size
from mmengine.hooks import Hook

from ...registry import HOOKS

__all__ = [
    'CheckFiniteLossHook', 'non_finite_message', 'ensure_finite_loss_guard'
]

DATA_BATCH = Optional[Union[dict, tuple, list]]


@HOOKS.register_module()
class CheckFiniteLossHook(Hook):
    """Raise ``FloatingPointError`` when a logged loss is NaN or inf.

    ``outputs`` of ``after_train_iter`` is the model's parsed ``log_vars``:
    ``loss`` (the total) and each term (``loss_cls``, ``loss_bbox``, ...),
    scalar tensors or floats. Every key containing ``'loss'`` is checked;
    the message names the terms before the total, since a term tells where
    to look. In distributed training the ranks agree (one ``all_reduce`` of
    a flag), so all stop together instead of the healthy ones hanging in
    the next gradient synchronisation.

    Args:
        interval (int): check every ``interval`` iterations. Checking costs
            one host sync, which mmengine's logging does every iteration
            anyway. Defaults to 1.

    Keep its priority above ``CheckpointHook``'s (``VERY_LOW``): with a lower
    one the NaN weights of the iteration are saved before this hook runs.
    """

    priority = 'ABOVE_NORMAL'

    def __init__(self, interval: int = 1) -> None:
        if not isinstance(interval, int) or interval < 1:
            raise ValueError(
                f'CheckFiniteLossHook: interval must be a positive int, got '
                f'{interval!r}.')
        self.interval = interval

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch: DATA_BATCH = None,
                         outputs: Optional[Dict] = None) -> None:
        if not outputs or not self.every_n_train_iters(runner, self.interval):
            return
        values = {k: _as_float(v) for k, v in outputs.items() if 'loss' in k}
        bad = [k for k, v in values.items() if not math.isfinite(v)]
        if get_world_size() > 1:
            flag = torch.tensor([float(bool(bad))])
            all_reduce(flag, op='max')
            if flag.item() and not bad:
                raise FloatingPointError(
                    f'iteration {runner.iter + 1}: a loss is NaN or inf on '
                    'another rank; see that rank\'s error. '
                    + _advice(runner))
        if not bad:
            return
        # name a term (loss_cls, loss_bbox) rather than the total
        terms = [k for k in bad if k != 'loss'] or bad
        what = ', '.join(f'{k} is {values[k]}' for k in terms)
        all_values = ', '.join(f'{k}={v:.4g}' for k, v in values.items())
        raise FloatingPointError(
            f'iteration {runner.iter + 1}: {what} ({all_values}). '
            + _advice(runner))

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Refuse to save NaN / inf weights.

        With ``interval > 1`` the losses of some iterations are not looked
        at; whatever happened in them, a checkpoint is written only when
        every floating-point tensor of its ``state_dict`` is finite (one
        pass over the weights per checkpoint).
        """
        state = checkpoint.get('state_dict') or {}
        bad = [
            name for name, value in state.items()
            if isinstance(value, torch.Tensor) and value.is_floating_point()
            and not bool(torch.isfinite(value).all())
        ]
        if bad:
            # meta['iter']: iterations done, as in the file name iter_<i>
            done = checkpoint.get('meta', {}).get('iter', runner.iter)
            raise FloatingPointError(
                f'iteration {done}: the weights hold NaN or inf '
                f'({", ".join(bad[:5])}{" ..." if len(bad) > 5 else ""}); '
                'the checkpoint was not saved. A loss turned non-finite in '
                'an iteration CheckFiniteLossHook did not check (interval='
                f'{self.interval}). ' + _advice(runner))


GUARD_KEY = 'check_finite_loss'
_GUARD_TYPES = ('CheckFiniteLossHook', 'mmretina.CheckFiniteLossHook')


def ensure_finite_loss_guard(cfg) -> Optional[str]:
    """Make sure a training config registers :class:`CheckFiniteLossHook`.

    mmretina's base runtime lists it in ``default_hooks`` (a dict, merged key
    by key), so a config that writes its own ``custom_hooks`` (a list, which
    mmengine replaces) keeps it. A config that has it nowhere -- e.g. one on
    mmdet's own bases -- gets it added under ``default_hooks.
    check_finite_loss``. Setting that key to None turns the guard off (mmengine
    itself refuses None for a key it does not know, so it is removed here).

    Args:
        cfg (Config): the training config, changed in place.

    Returns:
        str | None: what was done, for the log; None if nothing was.
    """
    default_hooks = cfg.get('default_hooks') or {}
    hooks = list(default_hooks.values()) + list(cfg.get('custom_hooks') or [])
    if any(isinstance(h, dict) and h.get('type') in _GUARD_TYPES
           or isinstance(h, CheckFiniteLossHook) for h in hooks):
        return None
    if GUARD_KEY in default_hooks and default_hooks[GUARD_KEY] is None:
        del cfg.default_hooks[GUARD_KEY]
        return ('CheckFiniteLossHook is off (default_hooks.'
                f'{GUARD_KEY}=None): a NaN/inf loss may be checkpointed.')
    if cfg.get('default_hooks') is None:
        cfg.default_hooks = {}
    cfg.default_hooks[GUARD_KEY] = dict(type='mmretina.CheckFiniteLossHook')
    return ('added mmretina.CheckFiniteLossHook (default_hooks.'
            f'{GUARD_KEY}): the config had no finite-loss guard, so a NaN/inf '
            'loss would train on and could be checkpointed. Set default_hooks.'
            f'{GUARD_KEY}=None to train without it.')


def non_finite_message(runner, err: FloatingPointError) -> Optional[str]:
    """The message for a ``FloatingPointError`` that escaped
    ``runner.train()``, with the iteration and the checkpoint to resume
    from; None if ``err`` already says so (it came from this hook).

    Modules may raise before this hook sees the loss: mmretina's
    ``RetinaHead`` checks its loss in the forward pass (so before the
    weights change) but does not know the iteration. ``tools/train.py``
    re-raises such errors with this message.
    """
    msg = str(err)
    if msg.startswith('iteration '):
        return None
    # the loops count runner.iter up after an iteration's hooks: during a
    # failing iteration it is that iteration's 0-based index
    return f'iteration {runner.iter + 1}: {msg} ' + _advice(runner)


def _as_float(value) -> float:
    if isinstance(value, torch.Tensor):
        # a non-scalar log var is finite only if all its entries are
        value = value.detach().float()
        return value.sum().item() if value.numel() else 0.0
    return float(value)


def _last_checkpoint(work_dir: str) -> Optional[str]:
    path = osp.join(work_dir, 'last_checkpoint')
    if not osp.isfile(path):
        return None
    with open(path) as f:
        return f.read().strip() or None


def _advice(runner) -> str:
    last = _last_checkpoint(runner.work_dir)
    if last:
        saved = (f"Training was stopped before saving; the last checkpoint, "
                 f"'{last}', predates this iteration and is intact (resume "
                 f'with --resume {last}).')
    else:
        saved = ('Training was stopped; no checkpoint had been saved yet, '
                 'and none was written with these weights.')
    return (saved + ' Common causes: a learning rate too high for the batch '
            'size (optim_wrapper.optimizer.lr; --auto-scale-lr; a longer '
            'warm-up), no gradient clipping (optim_wrapper.clip_grad='
            'dict(max_norm=35, norm_type=2)), or bad boxes in the data.')
