"""Figure 4 of "Focal Loss for Dense Object Detection": where the loss goes.

    python tools/analysis_tools/loss_cdf.py CONFIG CKPT \
        [--gammas 0 0.5 1 2] [--out fig4.png] [--csv fig4.csv] \
        [--max-images N] [--device cpu] [--cfg-options ...]

The paper (sec. 5.1, "Analysis of the Focal Loss") takes a converged model,
collects the predicted probability of every positive and negative sample
over many images, computes the focal loss of each for several gamma (the
model was trained with gamma = 2), normalises the losses of the positives
and of the negatives to sum to one, sorts them from lowest to highest and
plots the cumulative sums against the fraction of samples.

Here the samples are the (anchor, class) pairs of the validation images of
CONFIG: the head's outputs (``model.bbox_head.forward``) give the logits,
the head's own target assignment (``model.bbox_head.get_targets``, the one
training uses) says which are positive (the anchor's class), negative
(every other class of a valid anchor, and all classes of a background
anchor) or ignored (weight 0, e.g. IoU between the thresholds). The loss is
mmretina's ``sigmoid_focal_loss``, the paper's eq. 5; alpha does not
matter here, since within the positives (or the negatives) it is a constant
factor that the normalisation removes.

Outputs: a PNG with the two panels of Figure 4 and a CSV with the curves
(``kind,gamma,fraction,cumulative_loss``) plus a summary printed per gamma:
the share of the loss held by the hardest 20% of each kind.
``tools/analysis_tools/loss_cdf.py`` is the command line over these
functions.
"""
import csv
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch
from mmengine.config import Config
from torch import Tensor

from mmretina.models.losses import sigmoid_focal_loss

__all__ = ['KINDS', 'collect_logits', 'split_logits', 'cumulative_loss',
           'hardest_share', 'sample_curve', 'loss_cdfs', 'write_csv', 'plot',
           'val_loader_cfg']

KINDS = ('positive', 'negative')


@torch.no_grad()
def collect_logits(model, dataloader, max_images: int = 0,
                   device: str = 'cpu') -> Tuple[Tensor, Tensor]:
    """Logits of the positive and negative samples of a data set.

    Args:
        model: a detector with a dense ``bbox_head`` that has
            ``get_anchors`` and ``get_targets`` (mmretina's RetinaHead).
        dataloader: yields batches whose data samples carry
            ``gt_instances`` (a val/test loader with LoadAnnotations).
        max_images (int): stop after this many images (0: all).

    Returns:
        tuple[Tensor, Tensor]: (P,) logits of the positive (anchor, class)
        pairs and (Q,) logits of the negative ones, fp32 on the CPU.
    """
    head = model.bbox_head
    if not hasattr(head, 'get_targets') or head.train_cfg is None:
        raise ValueError(
            'loss_cdf needs the head\'s target assignment: a head with '
            'get_targets() built with a train_cfg (the model config\'s '
            'train_cfg.assigner); got '
            f'{type(head).__name__} with train_cfg={head.train_cfg}')
    positives, negatives = [], []
    seen = 0
    for batch in dataloader:
        data = model.data_preprocessor(batch, False)
        samples = data['data_samples']
        metas = [s.metainfo for s in samples]
        gts = [s.gt_instances.to(device) for s in samples]
        feats = model.extract_feat(data['inputs'].to(device))
        cls_scores, _ = head(feats)
        pos, neg = split_logits(head, cls_scores, gts, metas)
        positives.append(pos)
        negatives.append(neg)
        seen += len(samples)
        if max_images and seen >= max_images:
            break
    if not seen:
        raise ValueError('the data loader yielded no image')
    return torch.cat(positives), torch.cat(negatives)


def split_logits(head, cls_scores: Sequence[Tensor], gts: list,
                 metas: List[dict]) -> Tuple[Tensor, Tensor]:
    """Positive and negative logits of one batch.

    Args:
        head: the dense head (``num_classes`` K, ``get_anchors``,
            ``get_targets``).
        cls_scores (list[Tensor]): B x (A*K) x H_l x W_l per level.
        gts (list[InstanceData]): ``bboxes`` (G_i, 4), ``labels`` (G_i,).
        metas (list[dict]): ``img_shape``, ``pad_shape`` per image.

    Returns:
        tuple[Tensor, Tensor]: (P,) and (Q,) fp32 logits, on the CPU.
    """
    num_classes = head.num_classes
    device = cls_scores[0].device
    featmap_sizes = [tuple(s.shape[-2:]) for s in cls_scores]
    anchor_list, valid_list = head.get_anchors(featmap_sizes, metas, device)
    anchors = torch.cat([a.tensor if hasattr(a, 'tensor') else a
                         for a in anchor_list[0]])
    valid = torch.stack([torch.cat(flags) for flags in valid_list])
    targets = head.get_targets(anchors, valid, gts, metas)
    num_imgs = cls_scores[0].size(0)
    # B x N x K in the anchors' order (level, y, x, anchor)
    logits = torch.cat([
        s.permute(0, 2, 3, 1).reshape(num_imgs, -1, num_classes)
        for s in cls_scores
    ], dim=1).float()
    labels = targets.labels  # B x N, K = background
    weights = targets.label_weights > 0  # B x N
    onehot = torch.zeros_like(logits, dtype=torch.bool)
    fg = labels < num_classes
    onehot[fg] = torch.nn.functional.one_hot(labels[fg],
                                             num_classes).bool()
    used = weights[..., None].expand_as(logits)
    return (logits[used & onehot].cpu(), logits[used & ~onehot].cpu())


def cumulative_loss(logits: Tensor, target: float,
                    gamma: float) -> np.ndarray:
    """Sorted, normalised cumulative focal loss (the curve of Figure 4).

    Args:
        logits (Tensor): (M,) logits of samples of one kind.
        target (float): 1 for positives, 0 for negatives.
        gamma (float): focusing parameter (>= 0).

    Returns:
        np.ndarray: (M,) float64; entry i is the share of the total loss
        held by the i + 1 lowest-loss samples (the last entry is 1).
    """
    if gamma < 0:
        raise ValueError(f'gamma must be >= 0, got {gamma}')
    if logits.numel() == 0:
        raise ValueError('no sample of this kind: nothing to plot')
    loss = sigmoid_focal_loss(logits.double(),
                              torch.full_like(logits, target,
                                              dtype=torch.float64),
                              gamma=gamma, alpha=0.5)
    loss = loss.sort().values.numpy()
    total = loss.sum()
    if not total > 0:
        raise ValueError(f'the total loss is {total}: every sample is '
                         'classified perfectly, there is nothing to plot')
    return np.cumsum(loss) / total


def hardest_share(curve: np.ndarray, fraction: float = 0.2) -> float:
    """Share of the total loss held by the hardest ``fraction`` of the
    samples (1 - CDF at 1 - fraction; the top ceil(fraction * M))."""
    n = len(curve)
    k = int(np.ceil(fraction * n))
    return float(1.0 - (curve[n - k - 1] if n - k - 1 >= 0 else 0.0))


def sample_curve(curve: np.ndarray, points: int) -> Tuple[np.ndarray,
                                                          np.ndarray]:
    """The curve at ``points`` fractions of samples from 0 to 1."""
    n = len(curve)
    fractions = np.linspace(0, 1, points)
    # fraction f covers the round(f * n) lowest-loss samples
    counts = np.round(fractions * n).astype(int)
    values = np.where(counts > 0, curve[np.maximum(counts - 1, 0)], 0.0)
    return fractions, values


def loss_cdfs(positives: Tensor, negatives: Tensor,
              gammas: Sequence[float]) -> Dict[Tuple[str, float], np.ndarray]:
    """Curves for both kinds and every gamma, keyed (kind, gamma)."""
    curves = {}
    for gamma in gammas:
        curves[('positive', gamma)] = cumulative_loss(positives, 1.0, gamma)
        curves[('negative', gamma)] = cumulative_loss(negatives, 0.0, gamma)
    return curves


def write_csv(curves, path: str, points: int) -> None:
    with open(path, 'w', newline='') as f:
        writer = csv.writer(f)
        writer.writerow(['kind', 'gamma', 'fraction', 'cumulative_loss'])
        for (kind, gamma), curve in curves.items():
            for x, y in zip(*sample_curve(curve, points)):
                writer.writerow([kind, gamma, f'{x:.6g}', f'{y:.6g}'])


def plot(curves, gammas: Sequence[float], counts: Dict[str, int],
         path: str, title: str = '') -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    for ax, kind, what in zip(axes, KINDS, ('foreground', 'background')):
        for gamma in gammas:
            curve = curves[(kind, gamma)]
            xs, ys = sample_curve(curve, min(len(curve) + 1, 2001))
            ax.plot(xs, ys, label=f'γ = {gamma:g}')
        ax.set_xlabel(f'fraction of {what} examples '
                      f'({counts[kind]:,} samples)')
        ax.set_ylabel('cumulative normalized loss')
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend(loc='upper left')
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def val_loader_cfg(cfg: Config) -> dict:
    """The config's val loader, single-process, with the boxes loaded
    before any resize.

    mmdet's test pipelines load the annotations after ``Resize`` (they are
    only needed by the evaluator, in original coordinates), so the boxes
    would not match the resized image the head sees. Moving
    ``LoadAnnotations`` right after the image loading makes the resize
    scale them with the image.
    """
    loader = cfg.val_dataloader.copy()
    loader['num_workers'] = 0
    loader['persistent_workers'] = False
    dataset = loader['dataset'].copy()
    pipeline = list(dataset['pipeline'])
    is_ann = ['LoadAnnotations' in str(t['type']) for t in pipeline]
    if not any(is_ann):
        raise ValueError('the val pipeline has no LoadAnnotations: the '
                         'ground truth is needed to tell positive from '
                         'negative anchors')
    anns = [t for t, a in zip(pipeline, is_ann) if a]
    rest = [t for t, a in zip(pipeline, is_ann) if not a]
    dataset['pipeline'] = rest[:1] + anns + rest[1:]
    loader['dataset'] = dataset
    return loader
