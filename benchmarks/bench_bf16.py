"""Train-step speed of the DeepForest RetinaNet: mmdet fp32 against
mmretina fp32 and mmretina bf16 (``mmretina.BF16OptimWrapper``), in one run.

mmdet cannot train with mixed precision on a CPU (``AmpOptimWrapper`` needs
an accelerator); mmretina's bf16 wrapper can, and on a CPU with native bf16
(AVX512-BF16 / AMX) oneDNN runs the convolutions about twice as fast.

The model is ``configs/retinanet_r18_fpn_deepforest.py``'s (half-width
ResNet-18, FPN P3-P5, 2x128 GN head, GIoU); for mmdet the four ``mmretina.*``
types are swapped for mmdet's. One step = forward, losses, backward and an
AdamW update (the optimizer wrapper's ``update_params``) on a batch of the
config's crop size and batch size (4 x 320 x 320 until issue 15's recipe)
with 20 crowns of 16-70 px each, like the demo's training batches.
Settings alternate every repeat, so machine load hits all alike; the script
prints medians and mmdet / setting ratios, and the fp32 / bf16 loss values
of the first step (bf16 is close to, not equal to, fp32).

    python benchmarks/bench_bf16.py                # 2 threads, 10 repeats
    python benchmarks/bench_bf16.py --threads 1    # on a busy machine
"""
import argparse
import copy
import statistics
import time

import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope
from mmengine.structures import InstanceData

import mmretina  # noqa: F401
from mmretina.engine.optimizers import bf16_supported

CONFIG = 'configs/retinanet_r18_fpn_deepforest.py'
CROWNS = 20


def demo_batch_shape(config: str = CONFIG):
    """(crop side, images per batch) of ``config``'s training batches."""
    cfg = Config.fromfile(config)
    loader = cfg.train_dataloader
    crops = [t['crop_size'] for t in loader.dataset.pipeline
             if t['type'] == 'RandomCrop']
    side = crops[0][0] if crops else 320
    return side, loader.batch_size


SIZE, IMGS = demo_batch_shape()


def model_cfg(impl: str):
    cfg = Config.fromfile(CONFIG)
    model = copy.deepcopy(cfg.model)
    if impl == 'mmdet':
        head = model.bbox_head
        head.type = 'RetinaHead'
        head.anchor_generator.type = 'AnchorGenerator'
        head.loss_cls.type = 'FocalLoss'
        model.train_cfg.assigner.type = 'MaxIoUAssigner'
    return model, cfg.optim_wrapper


def make_batch(seed: int = 0):
    from mmdet.structures import DetDataSample
    g = torch.Generator().manual_seed(seed)
    inputs = torch.randn(IMGS, 3, SIZE, SIZE, generator=g)
    samples = []
    for _ in range(IMGS):
        wh = 16 + 54 * torch.rand(CROWNS, 2, generator=g)
        xy = (SIZE - wh) * torch.rand(CROWNS, 2, generator=g)
        s = DetDataSample(metainfo=dict(
            img_shape=(SIZE, SIZE), pad_shape=(SIZE, SIZE),
            batch_input_shape=(SIZE, SIZE), scale_factor=(1.0, 1.0)))
        s.gt_instances = InstanceData(
            bboxes=torch.cat([xy, xy + wh], 1),
            labels=torch.zeros(CROWNS, dtype=torch.long))
        samples.append(s)
    return inputs, samples


def build(setting: str):
    from mmdet.registry import MODELS
    impl = 'mmdet' if setting == 'mmdet fp32' else 'ours'
    cfg, optim_cfg = model_cfg(impl)
    optim_cfg = copy.deepcopy(optim_cfg)
    optim_cfg.type = ('mmretina.BF16OptimWrapper'
                      if setting == 'mmretina bf16' else 'OptimWrapper')
    if setting == 'mmretina bf16':
        optim_cfg.enabled = True
    with DefaultScope.overwrite_default_scope('mmdet'):
        torch.manual_seed(0)
        model = MODELS.build(cfg)
        model.train()
        return model, build_optim_wrapper(model, optim_cfg)


def step(model, wrapper, inputs, samples) -> float:
    with wrapper.optim_context(model):
        losses = model.loss(inputs, copy.deepcopy(samples))
    total, _ = model.parse_losses(losses)
    wrapper.update_params(total)
    return float(total.detach())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--repeats', type=int, default=10)
    parser.add_argument('--threads', type=int, default=None)
    parser.add_argument('--json', help='also write the table here '
                        '(benchmarks/report.py renders it)')
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = ['mmdet fp32', 'mmretina fp32', 'mmretina bf16']
    if not bf16_supported('cpu'):
        print('this CPU has no native bfloat16: bf16 is emulated and slow; '
              'the bf16 figure is not meaningful here')
    inputs, samples = make_batch()
    built = {s: build(s) for s in settings}
    first_loss = {s: step(*built[s], inputs, samples) for s in settings}
    runs = {s: [] for s in settings}
    for _ in range(args.repeats):
        for s in settings:
            t = time.perf_counter()
            step(*built[s], inputs, samples)
            runs[s].append(time.perf_counter() - t)
    print(f'torch {torch.__version__}, {torch.get_num_threads()} threads, '
          f'{IMGS} x {SIZE}x{SIZE} images, {CROWNS} crowns each, '
          f'{args.repeats} repeats')
    base = statistics.median(runs['mmdet fp32'])
    rows = []
    for s in settings:
        med = statistics.median(runs[s])
        print(f'{s:14s} step {med * 1000:7.1f} ms   mmdet fp32 / this '
              f'{base / med:5.2f}x   first-step loss {first_loss[s]:.4f}')
        rows.append([s, f'{med * 1000:.1f}', f'{base / med:.2f}x',
                     f'{first_loss[s]:.4f}'])
    if args.json:
        import report
        from mmretina.utils.cpu_info import describe_cpu
        report.write_record(args.json, report.table_record(
            'benchmarks/bench_bf16.py', describe_cpu().summary(),
            ['setting', 'train step ms', 'mmdet fp32 / setting',
             'first-step loss'], rows,
            torch=torch.__version__, threads=torch.get_num_threads(),
            repeats=args.repeats))


if __name__ == '__main__':
    main()
