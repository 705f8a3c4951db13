"""The anchor analysis' report: shares of objects that are positive, only
low-quality matches or nothing, overall and by size; the diagnosis of
misses; the figure."""
import math
from typing import List, Tuple

import numpy as np
import torch

from .anchor_matching import LOW_QUALITY, POSITIVE

__all__ = ['SIZE_EDGES', 'COCO_BUCKETS', 'categorize', 'summarize',
           'format_summary', 'anchor_sides', 'diagnose', 'plot']

SIZE_EDGES = (0, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 512, math.inf)
COCO_BUCKETS = (('small (<32)', 0, 32), ('medium (32-96)', 32, 96),
                ('large (>96)', 96, math.inf))
# transforms that change colours only: not applied, said so


def categorize(best: np.ndarray, assign: dict, verdict=None):
    """Boolean masks (positive, low-quality only, none) per object: from
    the assigner's ``verdict`` (:func:`~.anchor_matching.training_verdicts`)
    when given, else from the best IoU alone (no competition between
    objects; used to score candidate anchors)."""
    if verdict is not None:
        pos, low = verdict == POSITIVE, verdict == LOW_QUALITY
        return pos, low, ~pos & ~low
    pos = best >= assign['pos_iou_thr']
    low = (~pos & assign['match_low_quality']
           & (best >= assign['min_pos_iou']) & (best > 0))
    return pos, low, ~pos & ~low


def summarize(boxes, result, assign) -> dict:
    best, num_pos = result['best_iou'], result.get('num_pos')
    pos, low, none = categorize(best, assign, result.get('verdict'))
    side = np.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
    n = max(len(best), 1)

    def row(mask, name):
        m = int(mask.sum())
        d = dict(name=name, boxes=m,
                 positive=float(pos[mask].mean()) if m else 0.0,
                 low_quality_only=float(low[mask].mean()) if m else 0.0,
                 none=float(none[mask].mean()) if m else 0.0,
                 median_best_iou=float(np.median(best[mask])) if m else 0.0)
        if num_pos is not None:
            d['mean_positives'] = float(num_pos[mask].mean()) if m else 0.0
        return d

    out = dict(boxes=int(len(best)), positive=float(pos.sum() / n),
               low_quality_only=float(low.sum() / n),
               none=float(none.sum() / n),
               median_best_iou=float(np.median(best)) if len(best) else 0.0,
               coco=[row((side >= lo) & (side < hi), name)
                     for name, lo, hi in COCO_BUCKETS],
               by_size=[row((side >= lo) & (side < hi),
                            f'{lo:g}-{hi:g}' if hi < math.inf else f'>{lo:g}')
                        for lo, hi in zip(SIZE_EDGES[:-1], SIZE_EDGES[1:])])
    out['by_size'] = [r for r in out['by_size'] if r['boxes']]
    if num_pos is not None:
        out['mean_positives'] = float(num_pos.mean()) if len(best) else 0.0
        out['median_positives'] = float(np.median(num_pos)) if len(
            best) else 0.0
        out['positives_histogram'] = {
            str(k): int((num_pos == k).sum()) for k in range(5)}
        out['positives_histogram']['>=5'] = int((num_pos >= 5).sum())
    return out


def format_summary(s: dict, title: str) -> str:
    pct = (lambda v: f'{100 * v:5.1f}%')
    lines = [f'{title}: {s["boxes"]} boxes: {pct(s["positive"])} positive, '
             f'{pct(s["low_quality_only"])} only a low-quality match, '
             f'{pct(s["none"])} none (median best IoU '
             f'{s["median_best_iou"]:.2f})']
    if 'mean_positives' in s:
        h = s['positives_histogram']
        lines.append(
            f'  positive anchors per object: mean {s["mean_positives"]:.1f},'
            f' median {s["median_positives"]:.0f}; objects with 0/1/2/3/4/'
            f'>=5: ' + '/'.join(str(h[k]) for k in
                                ('0', '1', '2', '3', '4', '>=5')))
    head = (f'  {"sqrt(area) px":>16} {"boxes":>6} {"positive":>9} '
            f'{"low-q.":>7} {"none":>7} {"best IoU":>8}'
            + (f' {"pos/obj":>7}' if 'mean_positives' in s else ''))
    lines.append(head)
    for r in s['coco'] + [None] + s['by_size']:
        if r is None:
            lines.append('  ' + '-' * (len(head) - 2))
            continue
        if not r['boxes']:
            continue
        lines.append(
            f'  {r["name"]:>16} {r["boxes"]:6d} {pct(r["positive"]):>9} '
            f'{pct(r["low_quality_only"]):>7} {pct(r["none"]):>7} '
            f'{r["median_best_iou"]:8.2f}'
            + (f' {r["mean_positives"]:7.1f}' if 'mean_positives' in r
               else ''))
    return '\n'.join(lines)


def anchor_sides(gen) -> Tuple[float, float]:
    """Smallest and largest anchor sqrt(area) over all levels."""
    sides = [float(torch.sqrt((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])).min())
             for b in gen.base_anchors]
    sides_max = [float(torch.sqrt(
        (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])).max())
                 for b in gen.base_anchors]
    return min(sides), max(sides_max)


def diagnose(boxes, result, assign, gen) -> List[str]:
    """Why objects get no positive: too small / too large for the anchors,
    or shape and grid offset."""
    best = result['best_iou']
    miss = ~categorize(best, assign, result.get('verdict'))[0]
    if not miss.any():
        return []
    side = np.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
    lo, hi = anchor_sides(gen)
    t = assign['pos_iou_thr']
    # a square of side s inside/around one of side a has IoU (s/a)^2
    small = miss & (side < lo * math.sqrt(t))
    large = miss & (side > hi / math.sqrt(t))
    rest = miss & ~small & ~large
    n = len(best)
    out = []
    if small.any():
        out.append(
            f'{100 * small.sum() / n:.1f}% of the objects are smaller '
            f'(sqrt(area) < {lo * math.sqrt(t):.1f} px) than any anchor can '
            f'match at IoU {t:g} (smallest anchor {lo:.1f} px): lower '
            'octave_base_scale, or add a finer level.')
    if large.any():
        out.append(
            f'{100 * large.sum() / n:.1f}% of the objects are larger '
            f'(sqrt(area) > {hi / math.sqrt(t):.0f} px) than any anchor can '
            f'match at IoU {t:g} (largest anchor {hi:.0f} px): raise '
            'octave_base_scale / scales_per_octave, or add a coarser level.')
    if rest.any():
        out.append(
            f'{100 * rest.sum() / n:.1f}% of the objects are within the '
            'anchor sizes but miss IoU '
            f'{t:g}: their aspect ratio or the grid spacing (stride) does '
            'not fit; see --optimize.')
    return out


def plot(path, boxes, results: List[Tuple[str, dict]], assign):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    side = np.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
    t = assign['pos_iou_thr']
    fig, axes = plt.subplots(len(results), 2, figsize=(12, 4.2 * len(results)),
                             squeeze=False)
    for row, (title, res) in enumerate(results):
        best = res['best_iou']
        pos, low, none = categorize(best, assign, res.get('verdict'))
        ax = axes[row, 0]
        bins = np.linspace(0, 1, 41)
        ax.hist([best[pos], best[low], best[none]], bins=bins, stacked=True,
                color=['tab:green', 'tab:orange', 'tab:red'],
                label=[f'positive ({100 * pos.mean():.1f}%)',
                       f'low-quality only ({100 * low.mean():.1f}%)',
                       f'none ({100 * none.mean():.1f}%)'])
        ax.axvline(t, color='k', ls='--', lw=1)
        neg = assign['neg_iou_thr']
        if not isinstance(neg, tuple):
            ax.axvline(neg, color='gray', ls=':', lw=1)
        ax.set_xlabel('best IoU of a ground truth with any anchor')
        ax.set_ylabel('ground truths')
        ax.set_title(f'{title}: best anchor IoU per object')
        ax.legend(fontsize=8)
        ax = axes[row, 1]
        for mask, c in ((pos, 'tab:green'), (low, 'tab:orange'),
                        (none, 'tab:red')):
            ax.scatter(side[mask], best[mask], s=4, c=c, alpha=0.5)
        ax.axhline(t, color='k', ls='--', lw=1)
        ax.set_xscale('log')
        ax.set_xlabel('sqrt(box area) after the pipeline, px')
        ax.set_ylabel('best IoU')
        ax.set_ylim(0, 1)
        ax.set_title(f'{title}: box size vs best IoU')
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
