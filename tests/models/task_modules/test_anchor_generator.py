"""AnchorGenerator: same anchors, order and valid flags as mmdet's."""
import pytest
import torch
from mmdet.models.task_modules.prior_generators import \
    AnchorGenerator as MMDetAnchorGenerator

from mmretina.models.task_modules import AnchorGenerator

SETTINGS = {
    'retinanet': dict(
        octave_base_scale=4,
        scales_per_octave=3,
        ratios=[0.5, 1.0, 2.0],
        strides=[8, 16, 32, 64, 128]),
    'rpn_scales': dict(scales=[8], ratios=[0.5, 1.0, 2.0],
                       strides=[4, 8, 16, 32, 64]),
    'scale_minor': dict(scales=[2, 4], ratios=[0.5, 2.0], strides=[16, 32],
                        scale_major=False),
    'base_sizes_centers': dict(
        scales=[1.0], ratios=[1.0, 3.0], strides=[(8, 16), (16, 32)],
        base_sizes=[10, 30], centers=[(4.0, 8.0), (8.0, 16.0)]),
    'center_offset': dict(scales=[3.0], ratios=[1.0], strides=[8, 16],
                          center_offset=0.5),
}
FEATS = [(13, 17), (7, 9), (4, 5), (2, 3), (1, 2)]


@pytest.mark.parametrize('name', list(SETTINGS))
def test_grid_priors_and_valid_flags_match_mmdet(name):
    cfg = SETTINGS[name]
    ours, ref = AnchorGenerator(**cfg), MMDetAnchorGenerator(**cfg)
    feats = FEATS[:ours.num_levels]
    assert ours.num_base_priors == ref.num_base_priors
    assert ours.num_levels == ref.num_levels
    for a, b in zip(ours.base_anchors, ref.base_anchors):
        assert torch.equal(a, b)
    for a, b in zip(ours.grid_priors(feats, device='cpu'),
                    ref.grid_priors(feats, device='cpu')):
        assert torch.equal(a, b)
    for pad in [(100, 130), (97, 61), (8, 8)]:
        for a, b in zip(ours.valid_flags(feats, pad, 'cpu'),
                        ref.valid_flags(feats, pad, 'cpu')):
            assert torch.equal(a, b)
    pads = [(100, 130), (97, 61), (8, 8)]
    batch = ours.batch_valid_flags(feats, pads, 'cpu')
    for flags, pad in zip(batch, pads):
        assert torch.equal(flags, torch.cat(ref.valid_flags(feats, pad,
                                                            'cpu')))
    idx = torch.tensor([0, 1, 5, 17, 40])
    for lvl, feat in enumerate(feats):
        n = feat[0] * feat[1] * ours.num_base_priors[lvl]
        sel = idx[idx < n]
        assert torch.equal(
            ours.sparse_priors(sel, feat, lvl, device='cpu'),
            ref.sparse_priors(sel, feat, lvl, device='cpu'))
    with pytest.warns(UserWarning):
        old = ours.grid_anchors(feats, device='cpu')
    for a, b in zip(old, ref.grid_priors(feats, device='cpu')):
        assert torch.equal(a, b)


def test_anchor_order_is_cell_major_then_ratio():
    gen = AnchorGenerator(strides=[16], ratios=[0.5, 1.0, 2.0], scales=[1.0])
    anchors = gen.grid_priors([(2, 3)], device='cpu')[0]
    assert anchors.shape == (2 * 3 * 3, 4)
    # index (y * W + x) * A + a: anchor 4 is cell (0, 1), ratio 1.0
    assert torch.equal(anchors[4], gen.base_anchors[0][1] +
                       torch.tensor([16., 0., 16., 0.]))
    # second row of cells starts at (1 * 3 + 0) * 3 = 9
    assert torch.equal(anchors[9], gen.base_anchors[0][0] +
                       torch.tensor([0., 16., 0., 16.]))


def test_retinanet_anchor_areas_follow_the_paper():
    """Sec. 4: areas 32^2 on P3, scales 2^{0,1/3,2/3}, ratios 1:2,1:1,2:1."""
    gen = AnchorGenerator(**SETTINGS['retinanet'])
    base = gen.base_anchors[0]
    wh = base[:, 2:] - base[:, :2]
    areas = (wh[:, 0] * wh[:, 1]).view(3, 3)
    expected = (32 * 2**(torch.arange(3) / 3))**2
    torch.testing.assert_close(areas, expected.expand(3, 3))
    torch.testing.assert_close((wh[:, 1] / wh[:, 0]).view(3, 3)[:, 0],
                               torch.tensor([0.5, 1.0, 2.0]))


def test_bad_arguments_say_what_is_wrong():
    with pytest.raises(ValueError, match='either scales or octave'):
        AnchorGenerator(strides=[8], ratios=[1.0])
    with pytest.raises(ValueError, match='either scales or octave'):
        AnchorGenerator(strides=[8], ratios=[1.0], scales=[1],
                        octave_base_scale=4, scales_per_octave=3)
    with pytest.raises(ValueError, match='center_offset'):
        AnchorGenerator(strides=[8], ratios=[1.0], scales=[1],
                        center_offset=2)
    gen = AnchorGenerator(strides=[8, 16], ratios=[1.0], scales=[1])
    with pytest.raises(ValueError, match='2 levels'):
        gen.grid_priors([(4, 4)], device='cpu')
