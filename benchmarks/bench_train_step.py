"""Whole-detector training step of the DeepForest demo model: mmdet's
RetinaNet against mmretina's, fp32 and (where the CPU runs it natively)
bf16, in one run, with the CPU named.

The model is ``configs/retinanet_r18_fpn_deepforest.py``'s (half-width
ResNet-18, FPN P3-P5 with GN, 2x128 GN head, GIoU); for mmdet the
``mmretina.*`` types (head, anchor generator, focal loss, assigner) are
swapped for mmdet's (``bench_bf16.model_cfg``). One step = forward, losses,
backward, gradient clipping and the AdamW update (``update_params`` of the
config's optimizer wrapper) on a batch like the demo's: 4 images of 320x320
with 20 crowns of 16-70 px each (``bench_bf16.make_batch``). bf16 is
``mmretina.BF16OptimWrapper(enabled=True)`` for both implementations
(mmdet's own ``AmpOptimWrapper`` is fp16 and refuses a CPU). Settings
alternate every repeat, so machine load hits all alike; the figures to
compare are the ratios (absolute times on a shared machine are noisy).

    python benchmarks/bench_train_step.py                  # all threads
    python benchmarks/bench_train_step.py --threads 1 --repeats 20
    python benchmarks/bench_train_step.py --precision fp32 --json out.json

Without native bf16 the bf16 rows are skipped unless ``--precision bf16``
asks for them (emulated bf16 is slower than fp32; the demo's
``BF16OptimWrapper`` falls back to fp32 there).
"""
import argparse
import copy
import json
import os.path as osp
import statistics
import sys
import time

import torch

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
import bench_bf16  # noqa: E402  (model_cfg, make_batch, step)

IMPLS = ('mmdet', 'mmretina')


def build(impl: str, precision: str):
    """(model, optimizer wrapper) of the demo config, seed 0."""
    from mmdet.registry import MODELS
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import DefaultScope
    cfg, optim_cfg = bench_bf16.model_cfg('mmdet' if impl == 'mmdet' else
                                          'ours')
    optim_cfg = copy.deepcopy(optim_cfg)
    if precision == 'bf16':
        optim_cfg.type = 'mmretina.BF16OptimWrapper'
        optim_cfg.enabled = True
    else:
        optim_cfg.type = 'OptimWrapper'
        optim_cfg.pop('enabled', None)
    with DefaultScope.overwrite_default_scope('mmdet'):
        torch.manual_seed(0)
        model = MODELS.build(cfg)
        model.train()
        return model, build_optim_wrapper(model, optim_cfg)


def run(precisions, repeats: int, size: int, imgs: int) -> dict:
    """Median step seconds per (impl, precision) and first-step losses."""
    # make_batch reads these module constants.
    bench_bf16.SIZE, bench_bf16.IMGS = size, imgs
    inputs, samples = bench_bf16.make_batch()
    settings = [(i, p) for p in precisions for i in IMPLS]
    built = {s: build(*s) for s in settings}
    first = {s: bench_bf16.step(*built[s], inputs, samples)
             for s in settings}  # also the warm-up
    times = {s: [] for s in settings}
    for _ in range(repeats):
        for s in settings:
            t = time.perf_counter()
            bench_bf16.step(*built[s], inputs, samples)
            times[s].append(time.perf_counter() - t)
    return dict(
        median_s={s: statistics.median(v) for s, v in times.items()},
        first_loss=first)


def main(argv=None) -> None:
    from mmretina.utils.cpu_info import describe_cpu
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--repeats', type=int, default=10)
    parser.add_argument('--threads', type=int, default=None)
    parser.add_argument('--precision', choices=('fp32', 'bf16', 'both'),
                        default='both',
                        help="'both': fp32, plus bf16 where it is native")
    parser.add_argument('--size', type=int, default=bench_bf16.SIZE,
                        help='square image side (default: the demo crop)')
    parser.add_argument('--imgs', type=int, default=bench_bf16.IMGS,
                        help='images per batch')
    parser.add_argument('--json', help='also write the figures here')
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.size < 32 or args.imgs < 1:
        parser.error('need --repeats >= 1, --size >= 32, --imgs >= 1')
    if args.threads:
        torch.set_num_threads(args.threads)
    cpu = describe_cpu()
    if args.precision == 'both':
        precisions = ['fp32'] + (['bf16'] if cpu.bf16_native else [])
    else:
        precisions = [args.precision]
    print(f'CPU: {cpu.summary()}')
    if not cpu.bf16_native:
        print('no native bf16 here: ' + (
            'bf16 is emulated, its figures are not what a bf16 CPU gets'
            if 'bf16' in precisions else 'bf16 rows skipped'))
    print(f'torch {torch.__version__}, {torch.get_num_threads()} threads, '
          f'{args.imgs} x {args.size}x{args.size} images, '
          f'{bench_bf16.CROWNS} crowns each, {args.repeats} repeats '
          '(settings alternate; medians)')
    res = run(precisions, args.repeats, args.size, args.imgs)
    med = res['median_s']
    base = med[('mmretina', 'fp32')] if 'fp32' in precisions else None
    rows = []
    for (impl, prec), t in med.items():
        vs_mmdet = med[('mmdet', prec)] / med[('mmretina', prec)]
        rows.append(dict(
            impl=impl, precision=prec, step_ms=t * 1000,
            images_per_s=args.imgs / t,
            first_loss=res['first_loss'][(impl, prec)]))
        line = (f'{impl:8s} {prec}  step {t * 1000:7.1f} ms  '
                f'{args.imgs / t:5.2f} img/s  '
                f'first-step loss {res["first_loss"][(impl, prec)]:.4f}')
        if impl == 'mmretina':
            line += f'   mmdet / mmretina {vs_mmdet:4.2f}x'
        if base is not None and prec == 'bf16':
            line += f'   fp32 / bf16 {med[(impl, "fp32")] / t:4.2f}x'
        print(line)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(dict(cpu=cpu.summary(), bf16_native=cpu.bf16_native,
                           threads=torch.get_num_threads(),
                           repeats=args.repeats, size=args.size,
                           imgs=args.imgs, rows=rows), f, indent=1)


if __name__ == '__main__':
    main()
