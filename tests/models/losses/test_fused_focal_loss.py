"""The fused focal-loss kernel against the reference formula
(``sigmoid_focal_loss``, eq. 5): values and gradients, fp32 and bf16."""
import pytest
import torch
import torch.nn.functional as F

from mmretina.models.losses import (FocalLoss, cls_maps_to_rows,
                                    focal_loss_sum, sigmoid_focal_loss)


def make_maps(dtype, seed=0, k=5, num_anchors=3, num_imgs=2,
              sizes=((6, 7), (3, 4), (1, 2))):
    gen = torch.Generator().manual_seed(seed)
    maps = [(torch.randn(num_imgs, num_anchors * k, h, w, generator=gen) *
             4 - 2).to(dtype) for h, w in sizes]
    num = sum(h * w for h, w in sizes) * num_anchors
    labels = torch.randint(0, k + 1, (num_imgs, num), generator=gen)
    labels[torch.rand(num_imgs, num, generator=gen) < 0.7] = k  # background
    weights = (torch.rand(num_imgs, num, generator=gen) > 0.1).float()
    return maps, labels, weights, num_anchors


def reference(maps, labels, weights, num_anchors, gamma=2.0, alpha=0.25):
    """Eq. 5 elementwise on one-hot rows, weighted and summed in fp64."""
    rows, flat_labels, flat_weights = cls_maps_to_rows(
        maps, labels, weights, num_anchors)
    k = rows.size(1)
    target = F.one_hot(flat_labels, k + 1)[:, :k]
    loss = sigmoid_focal_loss(rows, target, gamma, alpha)
    return (loss.double() * flat_weights[:, None].double()).sum()


def grads_of(fn, maps):
    leaves = [m.detach().clone().requires_grad_(True) for m in maps]
    value = fn(leaves)
    value.backward()
    return value.detach(), [m.grad for m in leaves]


@pytest.mark.parametrize('gamma,alpha', [(2.0, 0.25), (1.5, 0.5), (0., 0.9)])
def test_fused_equals_reference_fp32(gamma, alpha):
    maps, labels, weights, a = make_maps(torch.float32)
    fused, g_fused = grads_of(
        lambda m: focal_loss_sum(m, labels, weights, a, gamma, alpha), maps)
    ref, g_ref = grads_of(
        lambda m: reference(m, labels, weights, a, gamma, alpha), maps)
    assert fused.dtype == torch.float32
    torch.testing.assert_close(fused.double(), ref, rtol=1e-6, atol=1e-6)
    for got, want in zip(g_fused, g_ref):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)


def test_fused_equals_reference_bf16():
    """bf16 maps: both compute in fp32 from the same bf16 values; the fused
    gradient is returned in bf16, the reference's is rounded to it too."""
    maps, labels, weights, a = make_maps(torch.bfloat16, seed=1)
    fused, g_fused = grads_of(
        lambda m: focal_loss_sum(m, labels, weights, a), maps)
    ref, g_ref = grads_of(
        lambda m: reference([x.float() for x in m], labels, weights, a),
        maps)
    assert fused.dtype == torch.float32
    torch.testing.assert_close(fused.double(), ref, rtol=1e-5, atol=1e-5)
    for got, want in zip(g_fused, g_ref):
        assert got.dtype == torch.bfloat16
        # one bf16 rounding of the same fp32 gradient (the two fp32
        # formulas differ by ~1e-16 where the gradient vanishes)
        torch.testing.assert_close(got.float(), want.float(), rtol=8e-3,
                                   atol=1e-7)


def test_fused_under_bf16_autocast_equals_reference():
    maps, labels, weights, a = make_maps(torch.float32, seed=2)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        fused = focal_loss_sum(maps, labels, weights, a)
    assert fused.dtype == torch.float32
    torch.testing.assert_close(fused.double(),
                               reference(maps, labels, weights, a),
                               rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize('cfg', [
    dict(), dict(loss_weight=0.7), dict(reduction='sum'),
    dict(reduction='none'), dict(activated=True)
])
def test_forward_maps_equals_forward_on_rows(cfg):
    """What the head calls: the maps' loss reduced as forward() reduces the
    rows (fused where it can, rows where it must)."""
    maps, labels, weights, a = make_maps(torch.float32, seed=4)
    if cfg.get('activated'):
        maps = [m.sigmoid() for m in maps]
    loss = FocalLoss(**cfg)
    avg_factor = None if cfg.get('reduction') == 'sum' else 17.0
    got, g_got = grads_of(
        lambda m: loss.forward_maps(m, labels, weights, a,
                                    avg_factor=avg_factor).sum(), maps)
    want, g_want = grads_of(
        lambda m: loss(*cls_maps_to_rows(m, labels, weights, a),
                       avg_factor=avg_factor).sum(), maps)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)
    for x, y in zip(g_got, g_want):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-8)


def test_forward_maps_sum_with_avg_factor_is_mmdets_error():
    maps, labels, weights, a = make_maps(torch.float32)
    with pytest.raises(ValueError, match='avg_factor can not be used'):
        FocalLoss(reduction='sum').forward_maps(maps, labels, weights, a,
                                                avg_factor=3.0)
