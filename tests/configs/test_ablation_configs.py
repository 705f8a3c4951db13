"""configs/ablations/**: every variant builds, says what its name says, and
differs from the DeepForest demo recipe in that one thing only."""
import functools
import glob
import math
import os.path as osp
import re

import pytest
import torch
from mmengine.config import Config

from mmdet.registry import MODELS

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEMO = osp.join(REPO_ROOT, 'configs',
                'retinanet_r18_fpn_deepforest_320px_200e.py')
CONFIGS = sorted(
    glob.glob(osp.join(REPO_ROOT, 'configs', 'ablations', '*', '*.py')))
HEAD = 'model.bbox_head.'


def _number(tag: str) -> float:
    return float(tag.replace('p', '.'))


def expected(path: str) -> dict:
    """The head settings the file name promises, as flat keys."""
    name = osp.splitext(osp.basename(path))[0]
    if m := re.fullmatch(r'ce_alpha(\w+)', name):
        return {HEAD + 'loss_cls.gamma': 0.0,
                HEAD + 'loss_cls.alpha': _number(m[1])}
    if m := re.fullmatch(r'fl_gamma(\w+)_alpha(\w+)', name):
        return {HEAD + 'loss_cls.gamma': _number(m[1]),
                HEAD + 'loss_cls.alpha': _number(m[2])}
    if m := re.fullmatch(r'anchors_(\d)sc_(\d)ar', name):
        return {HEAD + 'anchor_generator.scales_per_octave': int(m[1]),
                HEAD + 'anchor_generator.ratios':
                [1.0] if m[2] == '1' else [0.5, 1.0, 2.0]}
    if m := re.fullmatch(r'(ce|fl)_(no_)?prior', name):
        keys = {HEAD + 'loss_cls.gamma': 0.0 if m[1] == 'ce' else 2.0,
                HEAD + 'loss_cls.alpha': 0.5 if m[1] == 'ce' else 0.25}
        if m[2]:
            keys[HEAD + 'init_cfg'] = dict(type='Normal', layer='Conv2d',
                                           std=0.01)
        return keys
    raise AssertionError(f'unexpected ablation config name {name}')


def flatten(value, prefix=''):
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if isinstance(item, dict) and key != 'init_cfg':
                out.update(flatten(item, f'{prefix}{key}.'))
            else:
                out[f'{prefix}{key}'] = item
        return out
    return {prefix.rstrip('.'): value}


@functools.lru_cache()
def demo_flat() -> dict:
    return flatten(Config.fromfile(DEMO).to_dict())


def test_the_four_groups_are_complete():
    names = {osp.relpath(c, osp.join(REPO_ROOT, 'configs', 'ablations'))
             for c in CONFIGS}
    assert sum(n.startswith('a_ce_alpha/') for n in names) == 7
    assert sum(n.startswith('b_fl_gamma/') for n in names) == 7
    assert sum(n.startswith('c_anchors/') for n in names) == 7
    assert sum(n.startswith('e_init/') for n in names) == 4


@pytest.mark.parametrize('path', CONFIGS,
                         ids=[osp.basename(c)[:-3] for c in CONFIGS])
def test_variant_changes_one_thing(path):
    cfg = flatten(Config.fromfile(path).to_dict())
    demo = demo_flat()
    promised = expected(path)
    for key, value in promised.items():
        assert cfg[key] == value, key
    changed = {k for k in set(cfg) | set(demo) if cfg.get(k) != demo.get(k)}
    assert changed <= set(promised), changed - set(promised)


@pytest.mark.parametrize('path', CONFIGS,
                         ids=[osp.basename(c)[:-3] for c in CONFIGS])
def test_variant_builds(path):
    cfg = Config.fromfile(path)
    model = MODELS.build(cfg.model)
    head = model.bbox_head
    gen = cfg.model.bbox_head.anchor_generator
    assert head.num_base_priors == gen.scales_per_octave * len(gen.ratios)
    assert head.loss_cls.gamma == cfg.model.bbox_head.loss_cls.gamma
    if 'e_init' in path:
        model.init_weights()
        bias = head.retina_cls.bias.detach()
        prior = -math.log((1 - 0.01) / 0.01)  # sec. 4.1, pi = 0.01
        want = 0.0 if 'no_prior' in path else prior
        assert torch.allclose(bias, torch.full_like(bias, want))
        # p = 0.5 (no prior) or 0.01 at every anchor at the start
        x = torch.zeros(1, 3, 64, 64)
        scores, _ = head(model.neck(model.backbone(x)))
        p = torch.sigmoid(scores[0]).mean().item()
        assert p == pytest.approx(0.5 if 'no_prior' in path else 0.01,
                                  abs=0.02)
