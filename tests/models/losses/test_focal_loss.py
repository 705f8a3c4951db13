"""FocalLoss: paper facts, parity with mmdet, stability, fast path."""
import pytest
import torch
import torch.nn.functional as F
from mmdet.models.losses import FocalLoss as MMDetFocalLoss

from mmretina.models.losses import FocalLoss, focal_loss_sum


def single_loss(p_t, gamma, alpha=0.5):
    """Loss of one positive with probability p_t, through the module."""
    logit = torch.logit(torch.tensor([[p_t]], dtype=torch.float64))
    loss = FocalLoss(gamma=gamma, alpha=alpha, reduction='sum')
    return loss(logit, torch.ones(1, 1, dtype=torch.float64)).item()


def test_gamma_2_down_weights_easy_examples_like_the_paper():
    """Sec. 3.2: with gamma = 2, p_t = 0.9 -> 100x lower loss than CE,
    p_t ~ 0.968 -> ~1000x lower."""
    ce = -torch.log(torch.tensor(0.9, dtype=torch.float64)).item()
    assert ce / single_loss(0.9, 2.0, alpha=1.0) == pytest.approx(100, rel=1e-6)
    ce = -torch.log(torch.tensor(0.968, dtype=torch.float64)).item()
    ratio = ce / single_loss(0.968, 2.0, alpha=1.0)
    assert ratio == pytest.approx(1 / 0.032**2, rel=1e-6)
    assert 900 < ratio < 1000


def test_gamma_0_alpha_half_is_half_of_bce():
    gen = torch.Generator().manual_seed(0)
    pred = torch.randn(50, 6, generator=gen)
    target = (torch.rand(50, 6, generator=gen) > 0.7).float()
    loss = FocalLoss(gamma=0.0, alpha=0.5, reduction='mean')(pred, target)
    bce = F.binary_cross_entropy_with_logits(pred, target)
    torch.testing.assert_close(loss, 0.5 * bce)


def inputs(seed=0, n=300, k=7, scale=3.0):
    gen = torch.Generator().manual_seed(seed)
    pred = torch.randn(n, k, generator=gen) * scale
    labels = torch.randint(0, k + 1, (n, ), generator=gen)  # k = background
    weight = (torch.rand(n, generator=gen) > 0.2).float()
    return pred, labels, weight


def run(loss, pred, target, **kwargs):
    pred = pred.clone().requires_grad_(True)
    out = loss(pred, target, **kwargs)
    out.sum().backward()
    return out.detach(), pred.grad


# 'sum' with an avg_factor is an error, tested separately.
@pytest.mark.parametrize('reduction,avg_factor', [('none', None),
                                                  ('none', 37.0),
                                                  ('mean', None),
                                                  ('mean', 37.0),
                                                  ('sum', None)])
@pytest.mark.parametrize('one_hot', [False, True])
@pytest.mark.parametrize('with_weight', [False, True])
def test_values_and_grads_match_mmdet(reduction, one_hot, with_weight,
                                      avg_factor):
    pred, labels, weight = inputs()
    target = F.one_hot(labels, 8)[:, :7] if one_hot else labels
    kwargs = dict(weight=weight if with_weight else None,
                  avg_factor=avg_factor)
    cfg = dict(gamma=2.0, alpha=0.25, reduction=reduction, loss_weight=0.7)
    ours = run(FocalLoss(**cfg), pred, target, **kwargs)
    ref = run(MMDetFocalLoss(**cfg), pred, target, **kwargs)
    torch.testing.assert_close(ours[0], ref[0], rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(ours[1], ref[1], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize('override', ['none', 'mean', 'sum'])
def test_reduction_override_and_activated_match_mmdet(override):
    pred, labels, weight = inputs(1)
    for cfg in (dict(), dict(activated=True)):
        x = pred.sigmoid() if cfg else pred
        ours = FocalLoss(**cfg)(x, labels, weight, reduction_override=override)
        ref = MMDetFocalLoss(**cfg)(x, labels, weight,
                                    reduction_override=override)
        torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-7)


def test_sum_with_avg_factor_is_an_error_and_mean_adds_eps():
    pred, labels, _ = inputs(2)
    with pytest.raises(ValueError, match='avg_factor can not be used'):
        FocalLoss(reduction='sum')(pred, labels, avg_factor=3.0)
    zero = FocalLoss()(pred, labels, torch.zeros(len(labels)), avg_factor=0)
    assert torch.isfinite(zero) and zero == 0


def test_per_element_weight_matches_mmdet():
    pred, labels, _ = inputs(3)
    w = torch.rand(pred.numel())
    ours = FocalLoss()(pred, labels, w, avg_factor=10.0)
    ref = MMDetFocalLoss()(pred, labels, w, avg_factor=10.0)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-7)


def test_large_logits_stay_finite_and_exact():
    """Logits of +-100: the loss equals the float64 value, grads finite."""
    pred = torch.tensor([[100., -100.], [-100., 100.], [30., -30.]])
    labels = torch.tensor([0, 0, 2])
    out, grad = run(FocalLoss(reduction='sum'), pred, labels)
    ref = FocalLoss(reduction='sum')(pred.double(), labels)
    assert torch.isfinite(out) and torch.isfinite(grad).all()
    torch.testing.assert_close(out.double(), ref, rtol=1e-6, atol=1e-6)
    # a confident mistake costs alpha_t * |logit|: a missed positive at -100
    # (0.25 * 100), false positives at 100 and 30 ((1 - 0.25) * logit).
    assert out.item() == pytest.approx(0.25 * 100 + 0.75 * 100 + 0.75 * 30,
                                       rel=1e-6)


def as_map(rows, num_imgs=1, num_anchors=1, height=1):
    """(B*H*W*A, K) rows -> B x (A*K) x H x W map (mmdet's anchor order)."""
    k = rows.size(1)
    return rows.reshape(num_imgs, height, -1, num_anchors * k).permute(
        0, 3, 1, 2).contiguous()


def test_fp16_logits_are_computed_in_fp32():
    pred, labels, weight = inputs(4, scale=8.0)
    half = as_map(pred.half()).requires_grad_(True)
    out = focal_loss_sum([half], labels[None], weight[None])
    out.backward()
    assert out.dtype == torch.float32 and torch.isfinite(out)
    ref = focal_loss_sum([as_map(pred.half().float())], labels[None],
                         weight[None])
    torch.testing.assert_close(out, ref)
    assert half.grad.dtype == torch.float16
    assert torch.isfinite(half.grad).all()


def test_fp16_autocast_loss_matches_fp32():
    pred, labels, _ = inputs(6, scale=20.0)
    loss = FocalLoss()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        low = loss(pred.bfloat16(), labels, avg_factor=10.0)
    ref = loss(pred.bfloat16().float(), labels, avg_factor=10.0)
    assert torch.isfinite(low)
    torch.testing.assert_close(low.float(), ref, rtol=1e-2, atol=0)


@pytest.mark.parametrize('num_anchors,height', [(1, 1), (3, 4)])
def test_fused_sum_on_maps_equals_mmdet_on_rows(num_anchors, height):
    """Several levels of B x (A*K) x H x W maps, B = 2: the loss and the
    gradient equal mmdet's focal loss on the permuted rows."""
    gen = torch.Generator().manual_seed(5)
    k, num_imgs = 7, 2
    sizes = [(height, 5), (height, 3)]
    rows = [torch.randn(num_imgs * h * w * num_anchors, k, generator=gen) * 3
            for h, w in sizes]
    maps = [as_map(r, num_imgs, num_anchors, h).requires_grad_(True)
            for r, (h, _) in zip(rows, sizes)]
    labels = [torch.randint(0, k + 1, (num_imgs, len(r) // num_imgs),
                            generator=gen) for r in rows]
    weights = [torch.rand(num_imgs, len(r) // num_imgs, generator=gen)
               for r in rows]
    total = focal_loss_sum(maps, torch.cat(labels, 1), torch.cat(weights, 1),
                           num_anchors)
    total.backward()
    ref_rows = [r.clone().requires_grad_(True) for r in rows]
    ref = MMDetFocalLoss(reduction='sum')(
        torch.cat(ref_rows), torch.cat([lab.reshape(-1) for lab in labels]),
        torch.cat([w.reshape(-1) for w in weights]))
    ref.backward()
    torch.testing.assert_close(total, ref, rtol=1e-5, atol=1e-6)
    for m, r, (h, _) in zip(maps, ref_rows, sizes):
        torch.testing.assert_close(
            m.grad, as_map(r.grad, num_imgs, num_anchors, h), rtol=1e-5,
            atol=1e-8)


def test_bad_targets_are_explained():
    pred = torch.zeros(3, 4)
    with pytest.raises(ValueError, match=r'label targets must lie in \[0, 4\]'):
        FocalLoss()(pred, torch.tensor([0, 5, 1]))
    with pytest.raises(ValueError, match='one-hot targets must have the shape'):
        FocalLoss()(pred, torch.zeros(3, 5))
    with pytest.raises(ValueError, match='use_sigmoid=True'):
        FocalLoss(use_sigmoid=False)


def test_fp16_gradient_is_scaled_in_fp32_before_the_cast():
    """Under AMP the loss is multiplied by a scale (GradScaler: 2^16): the
    per-anchor gradients, below fp16's smallest subnormal (6e-8) for easy
    negatives, must survive until multiplied by it."""
    gen = torch.Generator().manual_seed(0)
    logits = (-12 + 2 * torch.randn(1, 4, 16, 16, generator=gen)).half()
    labels = torch.full((1, 256), 4, dtype=torch.long)
    labels[0, :5] = torch.tensor([0, 1, 2, 3, 0])
    weight = torch.ones(1, 256)
    scale = 2.0**16
    x = logits.clone().requires_grad_(True)
    (focal_loss_sum([x], labels, weight) * scale).backward()
    x32 = logits.float().requires_grad_(True)
    (focal_loss_sum([x32], labels, weight) * scale).backward()
    expected = x32.grad.half()
    tiny = (x32.grad.abs() / scale < 6e-8) & (expected != 0)
    assert tiny.sum() > 100  # the case is real: many such gradients
    assert x.grad.dtype == torch.float16
    torch.testing.assert_close(x.grad, expected, rtol=1e-3, atol=0)
