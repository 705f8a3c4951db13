"""pairwise_iou / aligned_iou: mmdet's bbox_overlaps floats, hand cases."""
import pytest
import torch
from mmdet.structures.bbox import bbox_overlaps

from mmretina.structures import aligned_iou, pairwise_iou


def random_boxes(shape, gen, degenerate=False):
    xy = torch.rand(*shape, 2, generator=gen) * 100
    wh = torch.rand(*shape, 2, generator=gen) * 50
    if degenerate:
        wh = wh - 10  # some inverted and zero-size boxes
    return torch.cat([xy, xy + wh], -1)


def test_hand_computed_iou():
    a = torch.tensor([[0., 0., 10., 10.]])
    b = torch.tensor([[5., 0., 15., 10.], [20., 20., 30., 30.],
                      [0., 0., 10., 10.], [2., 2., 4., 4.]])
    # overlap 50, union 150; disjoint; identical; contained 4 / 100
    expected = torch.tensor([[50 / 150, 0., 1., 0.04]])
    torch.testing.assert_close(pairwise_iou(a, b), expected)
    torch.testing.assert_close(aligned_iou(a, b), expected[0])


@pytest.mark.parametrize('degenerate', [False, True])
def test_pairwise_equals_mmdet_bbox_overlaps_bit_for_bit(degenerate):
    gen = torch.Generator().manual_seed(0)
    gts = random_boxes((3, 7), gen, degenerate)  # B x G x 4, batched
    priors = random_boxes((50, ), gen, degenerate)
    ours = pairwise_iou(gts, priors)
    assert ours.shape == (3, 7, 50)
    assert torch.equal(ours, bbox_overlaps(gts, priors.expand(3, -1, -1)))


@pytest.mark.parametrize('degenerate', [False, True])
def test_aligned_equals_mmdet_and_the_pairwise_diagonal(degenerate):
    gen = torch.Generator().manual_seed(1)
    a = random_boxes((40, ), gen, degenerate)
    b = random_boxes((40, ), gen, degenerate)
    ours = aligned_iou(a, b)
    assert torch.equal(ours, bbox_overlaps(a, b, is_aligned=True))
    assert torch.equal(ours, pairwise_iou(a, b).diagonal())


def test_aligned_broadcasts_and_keeps_float64():
    gen = torch.Generator().manual_seed(2)
    a = random_boxes((5, 1), gen).double()
    b = random_boxes((6, ), gen).double()
    out = aligned_iou(a, b)
    assert out.shape == (5, 6) and out.dtype == torch.float64
    assert torch.equal(out, pairwise_iou(a[:, 0], b))


def test_empty_boxes_and_empty_sets():
    point = torch.tensor([[3., 3., 3., 3.]])
    assert pairwise_iou(point, point).item() == 0  # 0 / eps, not NaN
    assert pairwise_iou(torch.zeros(0, 4), point).shape == (0, 1)
    assert pairwise_iou(point, torch.zeros(0, 4)).shape == (1, 0)


def test_workspace_is_used_and_checked():
    gen = torch.Generator().manual_seed(3)
    a, b = random_boxes((4, ), gen), random_boxes((9, ), gen)
    workspace = torch.empty(3 * 4 * 9)
    out = pairwise_iou(a, b, workspace)
    assert out.data_ptr() == workspace.data_ptr()
    assert torch.equal(out, pairwise_iou(a, b))
    with pytest.raises(ValueError, match='workspace holds 10 elements'):
        pairwise_iou(a, b, torch.empty(10))
    with pytest.raises(ValueError, match='boxes2 must be M x 4'):
        pairwise_iou(a, b[None])
