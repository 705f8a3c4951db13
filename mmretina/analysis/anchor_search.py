"""``--optimize`` of the anchor analysis: search ``octave_base_scale``,
``scales_per_octave`` and ``ratios`` (candidates from k-means of the boxes'
log aspect ratios) for the largest share of objects whose best anchor IoU
reaches ``pos_iou_thr``, the strides kept."""
from typing import Dict, List

import numpy as np

from .anchor_matching import build_generator, match

__all__ = ['kmeans_1d', 'ratio_candidates', 'optimize', 'paste_lines']


def kmeans_1d(x: np.ndarray, k: int, iters: int = 30) -> np.ndarray:
    """Sorted centres of ``k`` clusters of the values ``x`` (Lloyd's
    algorithm started at quantiles)."""
    centres = np.quantile(x, (np.arange(k) + 0.5) / k)
    for _ in range(iters):
        assign = np.abs(x[:, None] - centres[None]).argmin(1)
        new = np.array([x[assign == i].mean() if (assign == i).any() else
                        centres[i] for i in range(k)])
        if np.allclose(new, centres):
            break
        centres = new
    return np.sort(centres)


def ratio_candidates(boxes, max_ratios: int) -> Dict[int, List[List[float]]]:
    """Per number of ratios, candidate ``ratios`` lists (height / width):
    k-means of log(h / w), and for odd counts the symmetric default-like
    spread around 1."""
    r = np.log((boxes[:, 3] - boxes[:, 1]) / (boxes[:, 2] - boxes[:, 0]))
    out = {}
    for k in range(1, max_ratios + 1):
        cands = [np.exp(kmeans_1d(r, k))]
        if k == 1:
            cands.append(np.array([1.0]))
        if k == 3:
            cands.append(np.array([0.5, 1.0, 2.0]))
        out[k] = []
        for c in cands:
            c = [float(f'{v:.3g}') for v in c]
            if c not in out[k] and len(set(c)) == len(c):
                out[k].append(c)
    return out


def _search_scale(base, spo, rat, boxes, pad_hw, t, grid):
    """Best octave_base_scale on ``grid`` (coarse, then refined around the
    best) for one scales_per_octave x ratios: (share, mean IoU, scale)."""

    def score(obs):
        gen = build_generator(dict(base, octave_base_scale=obs,
                                   scales_per_octave=spo, ratios=rat))
        r = match(gen, boxes, pad_hw, t, count_positives=False)
        return (float((r['best_iou'] >= t).mean()),
                float(r['best_iou'].mean()), obs)

    best = max(score(obs) for obs in grid)
    for step in (2 ** (1 / 8), 2 ** (1 / 16)):
        best = max([best, score(best[2] * step), score(best[2] / step)])
    return best


def optimize(args: dict, boxes, pad_hw, assign, budget: int,
             max_search_boxes: int = 2000, seed: int = 0):
    """Search octave_base_scale x scales_per_octave x ratios with at most
    ``budget`` anchors per location, the strides kept.

    The score of a setting is the share of objects with a positive anchor
    (best IoU >= pos_iou_thr); among settings within 0.2 points of the best
    share, the one with the highest mean best IoU wins (a better fit, not
    just a reach). The search runs on a random subset of at most
    ``max_search_boxes`` boxes.

    Returns:
        tuple: the generator arguments of the winner, and the table of the
        best setting per scales_per_octave x ratios (best first).
    """
    t = assign['pos_iou_thr']
    base = {k: v for k, v in args.items()
            if k not in ('scales', 'octave_base_scale', 'scales_per_octave',
                         'ratios')}
    if len(boxes) > max_search_boxes:
        sub = np.random.RandomState(seed).choice(len(boxes),
                                                 max_search_boxes, False)
        boxes, pad_hw = boxes[sub], pad_hw[sub]
    grid = [2 ** (i / 4) for i in range(-4, 21)]  # 0.5 .. 32
    ratios = ratio_candidates(boxes, min(budget, 7))
    results = []
    for spo in range(1, min(budget, 5) + 1):
        for k, cands in ratios.items():
            if spo * k > budget:
                continue
            for rat in cands:
                share, mean, obs = _search_scale(base, spo, rat, boxes,
                                                 pad_hw, t, grid)
                results.append(dict(
                    scales_per_octave=spo, ratios=rat,
                    octave_base_scale=float(f'{obs:.3g}'), positive=share,
                    mean_best_iou=mean, anchors=spo * k))
    top = max(d['positive'] for d in results)
    best = max((d for d in results if d['positive'] >= top - 0.002),
               key=lambda d: (d['mean_best_iou'], -d['anchors']))
    results.sort(key=lambda d: (d['positive'], d['mean_best_iou']),
                 reverse=True)
    best_args = dict(base, octave_base_scale=best['octave_base_scale'],
                     scales_per_octave=best['scales_per_octave'],
                     ratios=best['ratios'])
    return best_args, results


def paste_lines(best_args: dict, had_scales: bool) -> str:
    ratios = ', '.join(repr(float(r)) for r in best_args['ratios'])
    lines = [
        'model = dict(',
        '    bbox_head=dict(',
        '        anchor_generator=dict(',
        f'            octave_base_scale={best_args["octave_base_scale"]:g},',
        f'            scales_per_octave={best_args["scales_per_octave"]},',
        f'            ratios=[{ratios}],',
    ]
    if had_scales:
        lines.append('            scales=None,')
    lines[-1] = lines[-1].rstrip(',') + ')))'
    return '\n'.join(lines)
