"""Anchor analysis: how well do the anchors of a config fit its training boxes?

    python tools/analysis_tools/analyze_anchors.py CONFIG [--optimize] \\
        [--out-dir DIR] [--anchors-per-location A] [--cfg-options ...]
    mmretina analyze anchors CONFIG --optimize   # the same, pip-installed
    from mmretina.analysis.anchors import analyze   # the library

Reads the training set of ``CONFIG`` (``train_dataloader.dataset``, built
with its own class: ``mmretina.CocoDataset`` drops the boxes it would not
train on), applies the geometric part of the training pipeline to each box
(``Resize`` / ``RandomResize`` / ``RandomChoiceResize``, 90-degree
``Rotate``, ``FilterAnnotations``; random ones drawn once per image with
``--seed``; photometric transforms and crops are not applied: the report
lists each transform and what was done with it), and computes for every
ground truth its best IoU with any anchor of the config's anchor generator
(``model.bbox_head.anchor_generator``, built as ``mmretina.AnchorGenerator``)
on that image's padded feature grid. The config's assigner
(``model.train_cfg.assigner``, run as ``mmretina.MaxIoUAssigner`` on each
image's anchors with the head's ``allowed_border``) then says what training
makes of each object:

* **positive**: an anchor assigned to it has IoU >= ``pos_iou_thr``;
* **low-quality only**: it gets anchors only through low-quality matching
  (``match_low_quality``, best IoU >= ``min_pos_iou`` and > 0);
* **none**: no anchor is assigned to it: it is trained as background.

It prints these shares, the number of positive anchors per object and both
broken down by object size (COCO small / medium / large and finer), and
writes ``DIR/anchor_analysis.png`` (histogram of the best IoU, scatter of box
size against best IoU) and ``DIR/anchor_analysis.json``.

``--optimize`` searches ``octave_base_scale``, ``scales_per_octave`` and
``ratios`` (candidates from k-means of the boxes' log aspect ratios) for the
setting with the largest share of positive objects at at most
``--anchors-per-location`` anchors (default: the config's), keeping the
strides; it prints the config lines to paste and says when no setting can
reach the objects at these strides (too small for the finest level, larger
than the coarsest one).

Speed: the IoU of a box with anchors of one shape on a regular grid is
largest at the grid point nearest to the box centre (the intersection
shrinks with the centre offset in x and in y separately), so the best IoU
needs one anchor per level and shape; the anchors per object with IoU >=
``pos_iou_thr`` are counted (without competition between objects) in the
window of cells the assigner's own bound gives. ``--exact`` computes the
IoU with every anchor from ``grid_priors`` instead (the assigner's
``pairwise_iou``; same numbers, much slower). ``--optimize`` scores candidates by
the best IoU alone. Random crops are not applied, so boxes cut by a crop
are analysed whole.
"""
import json
import os
import os.path as osp
import time
from typing import Optional

import numpy as np

from mmretina.models.task_modules.assigners import MaxIoUAssigner
from .anchor_matching import (build_generator, count_window_positives,
                              match, match_exact, oracle_reach,
                              training_verdicts)
from .anchor_report import (categorize, diagnose, format_summary, plot,
                            summarize)
from .anchor_search import optimize, paste_lines
from .pipeline_geometry import (geometry, stack_boxes, transformed_boxes,
                                transformed_images)

__all__ = [
    'AnalysisError', 'anchor_args', 'assigner_args', 'build_assigner',
    'pad_divisor', 'load_boxes', 'analyze', 'build_generator', 'match',
    'match_exact', 'training_verdicts', 'count_window_positives',
    'oracle_reach', 'categorize', 'summarize', 'diagnose',
    'format_summary', 'plot', 'optimize', 'paste_lines', 'geometry',
    'transformed_images', 'transformed_boxes', 'stack_boxes'
]


class AnalysisError(ValueError):
    """A config this tool cannot analyse; the message says why."""


def _short(type_name) -> str:
    name = type_name if isinstance(type_name, str) else type_name.__name__
    return name.split('.')[-1]


def anchor_args(cfg) -> dict:
    """The anchor generator's arguments (without ``type``)."""
    try:
        gen = cfg.model.bbox_head.anchor_generator
    except AttributeError:
        raise AnalysisError(
            'the config has no model.bbox_head.anchor_generator (an anchor-'
            'free head?): nothing to analyse.') from None
    args = dict(gen)
    kind = _short(args.pop('type', 'AnchorGenerator'))
    if kind != 'AnchorGenerator':
        raise AnalysisError(
            f'model.bbox_head.anchor_generator is {kind}; this tool handles '
            '(mmretina./mmdet) AnchorGenerator.')
    return args


def assigner_args(cfg) -> dict:
    try:
        a = dict(cfg.model.train_cfg.assigner)
    except AttributeError:
        raise AnalysisError('the config has no model.train_cfg.assigner.') \
            from None
    if 'pos_iou_thr' not in a:
        raise AnalysisError(
            f'model.train_cfg.assigner is {a.get("type")}, without '
            'pos_iou_thr; this tool analyses max-IoU assignment.')
    neg = a.get('neg_iou_thr', a['pos_iou_thr'])
    return dict(
        pos_iou_thr=float(a['pos_iou_thr']),
        neg_iou_thr=neg if not isinstance(neg, (list, tuple)) else tuple(neg),
        min_pos_iou=float(a.get('min_pos_iou', 0.0)),
        match_low_quality=bool(a.get('match_low_quality', True)))


def build_assigner(cfg):
    """The config's ``model.train_cfg.assigner`` as ``mmretina``'s
    ``MaxIoUAssigner`` (same arguments as mmdet's, whose ``type`` it may
    name), the class whose batched assignment the head runs."""
    a = dict(cfg.model.train_cfg.assigner)
    a.pop('type', None)
    try:
        return MaxIoUAssigner(**a)
    except TypeError as e:
        raise AnalysisError(
            f'model.train_cfg.assigner: {e}; this tool analyses max-IoU '
            'assignment.') from None


def pad_divisor(cfg) -> int:
    pre = cfg.model.get('data_preprocessor', None) or {}
    return int(pre.get('pad_size_divisor', 1) or 1)


def _inner_dataset_cfg(ds_cfg):
    """Unwrap RepeatDataset / ClassBalancedDataset / ConcatDataset."""
    while 'dataset' in ds_cfg and _short(ds_cfg.get('type', '')) in (
            'RepeatDataset', 'ClassBalancedDataset', 'MultiImageMixDataset'):
        ds_cfg = ds_cfg['dataset']
    if _short(ds_cfg.get('type', '')) == 'ConcatDataset':
        return [c for d in ds_cfg['datasets'] for c in
                _as_list(_inner_dataset_cfg(d))]
    return ds_cfg


def _as_list(x):
    return x if isinstance(x, list) else [x]


def load_boxes(cfg, max_images: Optional[int] = None):
    """(pipeline, [(width, height, boxes (n, 4) xyxy float32)]) of the
    training set, read with the dataset's own class (no image decoding)."""
    from mmdet.registry import DATASETS
    try:
        ds_cfgs = _as_list(_inner_dataset_cfg(cfg.train_dataloader.dataset))
    except AttributeError:
        raise AnalysisError('the config has no train_dataloader.dataset.') \
            from None
    pipeline = list(ds_cfgs[0].get('pipeline', []))
    images = []
    for ds_cfg in ds_cfgs:
        ds_cfg = dict(ds_cfg)
        ds_cfg['pipeline'] = []
        ds_cfg['serialize_data'] = False
        ds_cfg.setdefault('test_mode', False)
        try:
            dataset = DATASETS.build(ds_cfg)
        except (FileNotFoundError, ValueError, KeyError, OSError) as e:
            raise AnalysisError(
                'cannot read the training set (train_dataloader.dataset, '
                f'{ds_cfg.get("type")}): {e}') from None
        for info in dataset.data_list:
            boxes = [ins['bbox'] for ins in info.get('instances', [])
                     if not ins.get('ignore_flag', 0)]
            images.append((int(info['width']), int(info['height']),
                           np.asarray(boxes, np.float32).reshape(-1, 4)))
            if max_images and len(images) >= max_images:
                return pipeline, images
    return pipeline, images


def analyze(cfg, out_dir: Optional[str], optimize_anchors=False,
            budget: Optional[int] = None, seed=0, max_images=None,
            exact=False, log=print) -> dict:
    """Run the analysis on a loaded config; returns the JSON report."""
    t0 = time.perf_counter()
    gen_args = anchor_args(cfg)
    gen = build_generator(gen_args)
    assign = assigner_args(cfg)
    divisor = pad_divisor(cfg)
    assigner = build_assigner(cfg)
    allowed_border = int(cfg.model.train_cfg.get('allowed_border', 0))
    pipeline, images = load_boxes(cfg, max_images)
    steps, transforms = geometry(pipeline)
    images_t = transformed_images(images, steps, seed)
    boxes, pad_hw, index = stack_boxes(images_t, divisor)
    if not len(boxes):
        raise AnalysisError('the training set has no box to analyse.')
    t_load = time.perf_counter()
    log(f'anchor generator: strides {[s[0] for s in gen.strides]}, scales '
        f'{[round(float(s), 2) for s in gen.scales]}, ratios '
        f'{[round(float(r), 3) for r in gen.ratios]} '
        f'({gen.num_base_priors[0]} anchors per location); assigner: '
        f'pos_iou_thr={assign["pos_iou_thr"]}, neg_iou_thr='
        f'{assign["neg_iou_thr"]}, min_pos_iou={assign["min_pos_iou"]}, '
        f'match_low_quality={assign["match_low_quality"]}; '
        f'pad_size_divisor={divisor}')
    log('training pipeline geometry:')
    for line in transforms or ['(nothing that changes boxes)']:
        log(f'  {line}')
    log(f'{len(images)} images, {len(boxes)} boxes (seed {seed})')
    res = match(gen, boxes, pad_hw, assign['pos_iou_thr'])
    res.update(training_verdicts(gen, assigner, images_t, divisor,
                                 allowed_border))
    t_match = time.perf_counter()
    report = dict(config=dict(anchor_generator=gen_args, assigner=assign,
                              pad_size_divisor=divisor),
                  transforms=transforms, images=len(images),
                  current=summarize(boxes, res, assign))
    log(format_summary(report['current'], 'current anchors'))
    report['current']['diagnosis'] = diagnose(boxes, res, assign, gen)
    for line in report['current']['diagnosis']:
        log(f'  note: {line}')
    report['timing_s'] = dict(load=round(t_load - t0, 3),
                              match=round(t_match - t_load, 3))
    log(f'({len(boxes)} boxes matched in {t_match - t_load:.2f} s)')
    if exact:
        ex = match_exact(gen, boxes, pad_hw, index, assign['pos_iou_thr'])
        report['exact'] = dict(
            max_abs_diff_best_iou=float(np.abs(ex['best_iou']
                                               - res['best_iou']).max()),
            num_pos_equal=bool((ex['num_pos'] == res['num_pos']).all()),
            mean_positives_competing=float(ex['num_pos_competing'].mean()),
            positive_competing=float((ex['num_pos_competing'] > 0).mean()))
        log(f'--exact: all anchors: best IoU max |diff| '
            f'{report["exact"]["max_abs_diff_best_iou"]:.2e}, positive '
            f'counts equal: {report["exact"]["num_pos_equal"]}; with '
            'competition between objects (an anchor goes to the object it '
            'overlaps most): '
            f'{100 * report["exact"]["positive_competing"]:.1f}% of the '
            'objects have a positive, mean '
            f'{report["exact"]["mean_positives_competing"]:.1f} per object')
    plots = [('current', res)]
    if optimize_anchors:
        budget = budget or gen.num_base_priors[0]
        t1 = time.perf_counter()
        best_args, table = optimize(gen_args, boxes, pad_hw, assign, budget,
                                    seed=seed)
        best_gen = build_generator(best_args)
        best_res = match(best_gen, boxes, pad_hw, assign['pos_iou_thr'])
        best_res.update(training_verdicts(best_gen, assigner, images_t,
                                          divisor, allowed_border))
        reach = oracle_reach(gen, boxes, pad_hw, assign['pos_iou_thr'])
        report['optimized'] = summarize(boxes, best_res, assign)
        report['optimized']['anchor_generator'] = best_args
        report['optimized']['diagnosis'] = diagnose(boxes, best_res, assign,
                                                    best_gen)
        report['optimized']['reachable_at_these_strides'] = float(
            reach.mean())
        report['optimize_table'] = table[:10]
        report['timing_s']['optimize'] = round(time.perf_counter() - t1, 3)
        log(f'\n--optimize (<= {budget} anchors per location, strides kept;'
            f' {len(table)} scale/ratio sets x octave_base_scale searched in '
            f'{report["timing_s"]["optimize"]:.1f} s); best per '
            'scales_per_octave x ratios:')
        for d in table[:6]:
            log(f'  octave_base_scale={d["octave_base_scale"]:.3g} '
                f'scales_per_octave={d["scales_per_octave"]} ratios='
                f'{d["ratios"]} ({d["anchors"]} anchors): '
                f'{100 * d["positive"]:.1f}% positive')
        log(format_summary(report['optimized'], 'proposed anchors'))
        for line in report['optimized']['diagnosis']:
            log(f'  note: {line}')
        if reach.mean() < 0.99:
            log(f'  warning: only {100 * reach.mean():.1f}% of the objects '
                'can reach IoU '
                f'{assign["pos_iou_thr"]:g} with an anchor of their own exact'
                ' shape on these strides '
                f'({[s[0] for s in gen.strides]}): no scale or ratio fixes the'
                ' rest. Add a finer level (smaller stride) or enlarge the '
                'images (Resize scale) for the small ones.')
        gain = report['optimized']['positive'] - report['current']['positive']
        report['optimized']['gain'] = gain
        log('\nproposed vs current: '
            f'{100 * report["optimized"]["positive"]:.1f}% vs '
            f'{100 * report["current"]["positive"]:.1f}% of the objects '
            'with a positive anchor, median best IoU '
            f'{report["optimized"]["median_best_iou"]:.2f} vs '
            f'{report["current"]["median_best_iou"]:.2f}, '
            f'{best_gen.num_base_priors[0]} vs {gen.num_base_priors[0]} '
            'anchors per location.'
            + (' Under 1 point of gain: the current anchors already fit; '
               'a change is unlikely to matter.' if gain < 0.01 else ''))
        log('config lines to paste (the head\'s output channels change '
            'with the number of anchors):')
        log(paste_lines(best_args, 'scales' in gen_args
                        and gen_args['scales'] is not None))
        plots.append(('proposed', best_res))
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
        png = osp.join(out_dir, 'anchor_analysis.png')
        plot(png, boxes, plots, assign)
        with open(osp.join(out_dir, 'anchor_analysis.json'), 'w') as f:
            json.dump(report, f, indent=1)
        report['png'] = png
        log(f'\nwrote {png} and {osp.join(out_dir, "anchor_analysis.json")}')
    return report
