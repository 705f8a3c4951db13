"""mmretina.CheckFiniteLossHook: a NaN/inf loss stops training with the
iteration and the loss term, before CheckpointHook can save NaN weights.

Real mmengine Runner and hooks; the model is a two-weight toy whose second
loss term turns NaN (or inf) at a chosen iteration, so a run takes well under
a second. The RetinaNet-level run is in tests/tools/test_train_robustness.py.
"""
import math
import os.path as osp

import pytest
import torch
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch import nn
from torch.utils.data import Dataset

from mmengine.config import Config

from mmretina.engine.checkpoint import load_checkpoint_file
from mmretina.engine.hooks import (CheckFiniteLossHook,
                                   ensure_finite_loss_guard)

# the Runners built here leave mmengine's current scope and logger alone
pytestmark = pytest.mark.usefixtures('runner_globals_kept')


class ToyModel(BaseModel):
    """y = w.x + b; losses ``loss_a`` (squared error) and ``loss_b`` (half
    of it), ``loss_b`` multiplied by ``bad`` on training call ``bad_at``."""

    def __init__(self, bad_at=None, bad=math.nan):
        super().__init__()
        self.linear = nn.Linear(2, 1)
        self.bad_at, self.bad, self.calls = bad_at, bad, 0

    def forward(self, inputs, labels=None, mode='tensor'):
        out = self.linear(inputs)
        if mode != 'loss':
            return out
        self.calls += 1
        loss = ((out - labels)**2).mean()
        loss_b = 0.5 * loss
        if self.calls == self.bad_at:
            loss_b = loss_b * self.bad
        return dict(loss_a=loss, loss_b=loss_b)


class ToyDataset(Dataset):

    def __len__(self):
        return 8

    def __getitem__(self, i):
        return dict(
            inputs=torch.tensor([i / 8, 1.0]), labels=torch.tensor([0.5]))


def train(work_dir, model, max_iters=4, ckpt_interval=2, hook=True,
          hook_interval=1):
    runner = Runner(
        model=model,
        work_dir=str(work_dir),
        experiment_name=f'finite_{osp.basename(work_dir)}',
        default_scope='mmdet',
        train_dataloader=dict(
            dataset=ToyDataset(),
            sampler=dict(type='InfiniteSampler', shuffle=False),
            batch_size=2,
            num_workers=0,
            collate_fn=dict(type='default_collate')),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
        default_hooks=dict(
            checkpoint=dict(
                type='CheckpointHook', interval=ckpt_interval,
                by_epoch=False),
            logger=dict(type='LoggerHook', interval=1)),
        custom_hooks=[
            dict(type='mmretina.CheckFiniteLossHook', interval=hook_interval)
        ] if hook else None,
        log_level='WARNING')
    runner.train()
    return runner


def load_state(path):
    return load_checkpoint_file(path, map_location='cpu')['state_dict']


def all_finite(state):
    return all(torch.isfinite(v).all() for v in state.values())


def test_without_the_hook_nan_weights_are_checkpointed(tmp_path):
    # the failure the hook exists for: iteration 4's NaN lands in iter_4.pth
    train(tmp_path, ToyModel(bad_at=4), hook=False)
    assert not all_finite(load_state(tmp_path / 'iter_4.pth'))


def test_nan_loss_stops_before_the_checkpoint_of_that_iteration(tmp_path):
    with pytest.raises(FloatingPointError) as exc:
        train(tmp_path, ToyModel(bad_at=4))
    msg = str(exc.value)
    assert msg.startswith('iteration 4: loss_b is nan (loss=nan, loss_a=')
    assert 'loss_b=nan). Training was stopped before saving; the last ' \
        f"checkpoint, '{tmp_path / 'iter_2.pth'}', predates this iteration " \
        'and is intact (resume with --resume ' in msg
    assert 'optim_wrapper.clip_grad=dict(max_norm=35, norm_type=2)' in msg
    assert not (tmp_path / 'iter_4.pth').exists()
    assert (tmp_path / 'last_checkpoint').read_text().strip() == \
        str(tmp_path / 'iter_2.pth')
    state = load_state(tmp_path / 'iter_2.pth')
    assert all_finite(state) and 'linear.weight' in state


def test_inf_before_any_checkpoint(tmp_path):
    with pytest.raises(FloatingPointError) as exc:
        train(tmp_path, ToyModel(bad_at=1, bad=math.inf))
    msg = str(exc.value)
    assert msg.startswith('iteration 1: loss_b is inf (')
    assert 'no checkpoint had been saved yet, and none was written' in msg
    assert not list(tmp_path.glob('*.pth'))


def test_finite_run_is_untouched(tmp_path):
    runner = train(tmp_path, ToyModel(), max_iters=2)
    assert runner.iter == 2 and (tmp_path / 'iter_2.pth').exists()
    names = [type(h).__name__ for h in runner.hooks]
    # after_train_iter runs hooks in this order: ours before the writers
    assert names.index('CheckFiniteLossHook') < names.index('LoggerHook')
    assert names.index('CheckFiniteLossHook') < names.index('CheckpointHook')


@pytest.mark.parametrize('interval', [0, 1.5])
def test_bad_interval(interval):
    with pytest.raises(ValueError, match='interval must be a positive int'):
        CheckFiniteLossHook(interval=interval)


def test_interval_above_one_never_saves_nan_weights(tmp_path):
    """Iteration 3 turns the weights NaN; the hook looks at iterations 5,
    10, ... only, but the checkpoint of iteration 4 is refused."""
    with pytest.raises(FloatingPointError) as exc:
        train(tmp_path, ToyModel(bad_at=3), max_iters=8, ckpt_interval=2,
              hook_interval=5)
    msg = str(exc.value)
    assert msg.startswith('iteration 4: the weights hold NaN or inf '
                          '(linear.weight, linear.bias); the checkpoint was '
                          'not saved.')
    assert 'interval=5' in msg
    assert not (tmp_path / 'iter_4.pth').exists()
    assert all_finite(load_state(tmp_path / 'iter_2.pth'))
    assert (tmp_path / 'last_checkpoint').read_text().strip() == \
        str(tmp_path / 'iter_2.pth')


BASE = osp.join(osp.dirname(__file__), '..', '..', '..', 'configs', '_base_',
                'default_runtime.py')


def test_guard_survives_a_config_that_writes_its_own_custom_hooks(tmp_path):
    """mmengine replaces lists: a config on mmretina's base that sets
    custom_hooks keeps the guard (it lives in default_hooks)."""
    cfg_file = tmp_path / 'user.py'
    cfg_file.write_text(
        f"_base_ = [{osp.abspath(BASE)!r}]\n"
        "custom_hooks = [dict(type='EMAHook')]\n")
    cfg = Config.fromfile(str(cfg_file))
    assert [h['type'] for h in cfg.custom_hooks] == ['EMAHook']
    assert cfg.default_hooks.check_finite_loss.type == \
        'mmretina.CheckFiniteLossHook'
    assert ensure_finite_loss_guard(cfg) is None  # nothing to add
    runner = Runner(
        model=ToyModel(),
        work_dir=str(tmp_path / 'work'),
        experiment_name=f'guard_{osp.basename(tmp_path)}',
        default_scope='mmdet',
        default_hooks=cfg.default_hooks,
        custom_hooks=cfg.custom_hooks)
    names = [type(h).__name__ for h in runner.hooks]
    assert 'CheckFiniteLossHook' in names and 'EMAHook' in names


def test_guard_is_added_where_a_config_has_none():
    cfg = Config(dict(custom_hooks=[dict(type='EMAHook')],
                      default_hooks=dict(logger=dict(type='LoggerHook'))))
    msg = ensure_finite_loss_guard(cfg)
    assert msg.startswith('added mmretina.CheckFiniteLossHook')
    assert cfg.default_hooks.check_finite_loss.type == \
        'mmretina.CheckFiniteLossHook'
    assert ensure_finite_loss_guard(cfg) is None  # idempotent
    # listed in custom_hooks counts as present
    cfg = Config(dict(custom_hooks=[dict(type='CheckFiniteLossHook')]))
    assert ensure_finite_loss_guard(cfg) is None
    assert 'check_finite_loss' not in (cfg.get('default_hooks') or {})


def test_guard_can_be_switched_off_explicitly():
    cfg = Config(dict(default_hooks=dict(check_finite_loss=None)))
    msg = ensure_finite_loss_guard(cfg)
    assert 'is off' in msg and 'check_finite_loss' not in cfg.default_hooks
