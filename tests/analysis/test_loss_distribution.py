"""mmretina.analysis.loss_distribution (tools/analysis_tools/loss_cdf.py,
Figure 4): the curves from their
definition, and the tool on a tiny trained RetinaNet."""
import csv
import os.path as osp

import numpy as np
import pytest
import torch

from mmretina.analysis import loss_distribution as loss_cdf
from mmretina.cli import loss_cdf as cli


def test_cumulative_loss_by_hand():
    # negatives with p = 0.5 and p = sigmoid(-inf-ish): the easy one holds
    # nearly nothing; with gamma = 0 the losses are -log(1 - p)
    logits = torch.tensor([0.0, -2.0])
    p = torch.sigmoid(logits).double()
    ce = -torch.log(1 - p)
    curve = loss_cdf.cumulative_loss(logits, 0.0, gamma=0)
    assert curve == pytest.approx([float(ce[1] / ce.sum()), 1.0])
    fl = p**2 * ce
    curve = loss_cdf.cumulative_loss(logits, 0.0, gamma=2)
    assert curve == pytest.approx([float(fl[1] / fl.sum()), 1.0])
    # positives: the loss of p_t = p
    curve = loss_cdf.cumulative_loss(torch.tensor([3.0, 0.0]), 1.0, gamma=0)
    assert curve[0] == pytest.approx(
        float(np.log1p(np.exp(-3.0)) / (np.log1p(np.exp(-3.0)) + np.log(2))))


def test_hardest_share_and_sampling():
    curve = np.cumsum([1, 1, 1, 1, 6]) / 10  # the hardest of 5 holds 0.6
    assert loss_cdf.hardest_share(curve, 0.2) == pytest.approx(0.6)
    assert loss_cdf.hardest_share(curve, 0.4) == pytest.approx(0.7)
    xs, ys = loss_cdf.sample_curve(curve, 6)
    assert xs == pytest.approx([0, .2, .4, .6, .8, 1])
    assert ys == pytest.approx([0, .1, .2, .3, .4, 1])


def test_negative_share_grows_with_gamma_from_the_definition():
    # FL_gamma / CE = p^gamma grows with p, and the loss sorts the samples
    # by p for every gamma: the hardest 20% hold a larger share for larger
    # gamma whatever the logits (here: a spread like a trained model's)
    logits = torch.randn(20000, generator=torch.Generator().manual_seed(0))
    logits = logits * 2.5 - 5
    shares = [loss_cdf.hardest_share(loss_cdf.cumulative_loss(
        logits, 0.0, g)) for g in (0, 0.5, 1, 2)]
    assert all(a < b for a, b in zip(shares, shares[1:])), shares


def test_bad_inputs():
    with pytest.raises(ValueError, match='gamma must be >= 0'):
        loss_cdf.cumulative_loss(torch.zeros(3), 0.0, -1)
    with pytest.raises(ValueError, match='no sample of this kind'):
        loss_cdf.cumulative_loss(torch.zeros(0), 1.0, 2)
    with pytest.raises(SystemExit):
        cli.parse_args(['missing.py', 'missing.pth'])


@pytest.fixture(scope='module')
def trained(tools_helpers, tiny_data, tmp_path_factory):
    """The tiny RetinaNet (R18, 32 channels, 128 px) after 8 iterations."""
    root = tmp_path_factory.mktemp('loss_cdf')
    config = tools_helpers.write_tiny_config(
        str(root / 'tiny.py'), tiny_data, max_iters=8, ckpt_interval=8)
    work = str(root / 'work')
    proc = tools_helpers.python_tool('train.py', config, '--work-dir', work,
                                     '--cfg-options',
                                     'optim_wrapper.optimizer.lr=0.02')
    assert proc.returncode == 0, proc.stdout[-3000:]
    return config, osp.join(work, 'iter_8.pth'), root


def test_tool_writes_figure_and_csv(tools_helpers, trained):
    config, ckpt, root = trained
    out = str(root / 'fig4.png')
    proc = tools_helpers.python_tool('analysis_tools/loss_cdf.py', config,
                                     ckpt, '--out', out, '--points', '11')
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert osp.getsize(out) > 10000
    rows = list(csv.DictReader(open(str(root / 'fig4.csv'))))
    assert len(rows) == 2 * 4 * 11
    curve = {}
    for row in rows:
        curve.setdefault((row['kind'], float(row['gamma'])), []).append(
            float(row['cumulative_loss']))
    for values in curve.values():
        assert values[0] == 0 and values[-1] == pytest.approx(1)
        assert all(a <= b + 1e-9 for a, b in zip(values, values[1:]))
    # at fraction 0.8 the CDF is 1 - (share of the hardest 20%)
    neg_at_08 = [curve[('negative', g)][8] for g in (0, 0.5, 1, 2)]
    assert all(a > b for a, b in zip(neg_at_08, neg_at_08[1:])), neg_at_08
    # the 8 tiny images: every valid anchor is a sample of 2 classes
    assert 'positive and' in proc.stdout and 'hardest 20%' in proc.stdout


def test_tool_counts_match_the_head_targets(tools_helpers, trained):
    """The positives are the (anchor, class) pairs of the head's positive
    anchors; every other pair of a valid, non-ignored anchor is negative."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmengine.runner import Runner, load_checkpoint
    from mmdet.registry import MODELS
    config, ckpt, _ = trained
    cfg = Config.fromfile(config)
    init_default_scope('mmdet')
    model = MODELS.build(cfg.model)
    load_checkpoint(model, ckpt, map_location='cpu', logger='silent')
    model.eval()
    loader = Runner.build_dataloader(loss_cdf.val_loader_cfg(cfg))
    pos, neg = loss_cdf.collect_logits(model, loader, max_images=2)
    batch = next(iter(loader))
    data = model.data_preprocessor(batch, False)
    with torch.no_grad():
        scores, _ = model.bbox_head(model.extract_feat(data['inputs']))
    metas = [s.metainfo for s in data['data_samples']]
    sizes = [tuple(s.shape[-2:]) for s in scores]
    anchors, valid = model.bbox_head.get_anchors(sizes, metas, 'cpu')
    targets = model.bbox_head.get_targets(
        torch.cat(anchors[0]), torch.stack([torch.cat(v) for v in valid]),
        [s.gt_instances for s in data['data_samples']], metas)
    k = model.bbox_head.num_classes
    used = int((targets.label_weights > 0).sum())
    num_pos = int(((targets.labels < k) & (targets.label_weights > 0)).sum())
    assert pos.numel() == num_pos > 0
    assert neg.numel() == used * k - num_pos
