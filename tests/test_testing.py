"""mmretina.testing: what the shared test fixtures promise."""
import logging

import torch
from mmengine.logging import MMLogger
from mmengine.model import BaseModel
from mmengine.registry import DefaultScope
from torch import nn

from mmretina.testing import scope_and_logger_kept


class _Toy(BaseModel):

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 1)

    def forward(self, inputs, mode='tensor'):
        out = self.linear(inputs)
        return dict(loss=out.pow(2).mean()) if mode == 'loss' else out


def _train_a_runner(work_dir):
    from mmengine.runner import Runner
    runner = Runner(
        model=_Toy(), work_dir=str(work_dir),
        experiment_name=f'kept_{id(work_dir)}',
        default_scope='mmengine',
        train_dataloader=dict(
            dataset=[dict(inputs=torch.ones(2))] * 4, batch_size=2,
            num_workers=0,
            sampler=dict(type='InfiniteSampler', shuffle=False),
            collate_fn=dict(type='default_collate')),
        train_cfg=dict(by_epoch=False, max_iters=2),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
        default_hooks=dict(checkpoint=None), log_level='WARNING')
    runner.train()
    return runner


def test_a_runner_leaves_the_scope_and_logger_it_found(tmp_path):
    scope = DefaultScope.get_current_instance()
    logger = MMLogger.get_current_instance()
    scopes, loggers = list(DefaultScope._instance_dict), list(
        MMLogger._instance_dict)
    with scope_and_logger_kept():
        runner = _train_a_runner(tmp_path)
        # what a Runner leaves behind without the block
        assert DefaultScope.get_current_instance() is runner.default_scope
        assert DefaultScope.get_current_instance().scope_name == 'mmengine'
        assert MMLogger.get_current_instance() is runner.logger
        files = [h for h in runner.logger.handlers
                 if isinstance(h, logging.FileHandler)]
        assert files and files[0].stream is not None
    assert DefaultScope.get_current_instance() is scope
    assert MMLogger.get_current_instance() is logger
    assert list(DefaultScope._instance_dict) == scopes
    assert list(MMLogger._instance_dict) == loggers
    assert files[0].stream is None  # closed
    assert files[0] not in runner.logger.handlers
