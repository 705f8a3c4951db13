"""The head's training monitors: one warning for unmatched ground truths,
NaN / inf head outputs named by map and level."""
import logging

import pytest
import torch
from mmengine.logging import MMLogger

from mmretina.models.dense_heads.monitor import (UnmatchedGtMonitor,
                                                check_finite_head_outputs)


def warnings_of(updates, **kwargs):
    monitor = UnmatchedGtMonitor('TestHead', **kwargs)
    logger = MMLogger.get_instance('mmretina_head_monitor_test')
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger.addHandler(handler)
    try:
        for matched, total in updates:
            monitor.update(torch.tensor(float(matched)),
                           torch.tensor(float(total)))
    finally:
        logger.removeHandler(handler)
    return [r.getMessage() for r in records
            if 'got no positive anchor' in r.getMessage()], monitor


def test_one_warning_after_the_counted_steps():
    # 3 steps of (matched, total): 6 of 12 ground truths unmatched = 50%
    found, monitor = warnings_of([(2, 4), (3, 4), (1, 4), (0, 4), (0, 4)],
                                 iters=3)
    assert len(found) == 1
    assert found[0].startswith('TestHead: over the first 3 training steps')
    assert '50% of the 12 ground truths' in found[0]
    assert monitor.steps == 3  # later steps are not counted


def test_no_warning_at_or_below_the_share_or_without_ground_truth():
    assert warnings_of([(9, 10)] * 4, iters=4)[0] == []  # 10% unmatched
    assert warnings_of([(0, 0)] * 4, iters=4)[0] == []
    assert warnings_of([(0, 10)] * 3, iters=4)[0] == []  # not yet decided


def maps(level_shapes=((2, 9, 8, 8), (2, 9, 4, 4))):
    gen = torch.Generator().manual_seed(0)
    return [torch.randn(*s, generator=gen) for s in level_shapes]


def test_finite_outputs_pass():
    check_finite_head_outputs('TestHead', maps(), maps(), torch.tensor(1.),
                              torch.tensor(2.))


@pytest.mark.parametrize('which,level', [(0, 1), (1, 0)])
def test_non_finite_output_is_named_by_map_and_level(which, level):
    outs = [maps(), maps()]
    outs[which][level][1, 3, 2, 2] = float('inf') if which else float('-inf')
    name = 'box deltas' if which else 'classification scores'
    with pytest.raises(FloatingPointError,
                       match=f'TestHead: the {name} of level {level} hold 1 '
                       'NaN/inf values'):
        check_finite_head_outputs('TestHead', *outs, torch.tensor(1.),
                                  torch.tensor(2.))


def test_non_finite_loss_of_finite_outputs_points_at_the_targets():
    with pytest.raises(FloatingPointError,
                       match='loss_bbox=nan.*outputs are finite'):
        check_finite_head_outputs('TestHead', maps(), maps(),
                                  torch.tensor(1.), torch.tensor(float('nan')))


def test_fp16_maps_whose_sum_overflows_fp16_are_finite():
    big = [torch.full((1, 9, 64, 64), 60000., dtype=torch.float16)]
    check_finite_head_outputs('TestHead', big, big, torch.tensor(1.),
                              torch.tensor(1.))
