"""Speed and memory of mmretina's RetinaHead against mmdet's, in one run.

Both heads are built from the same config (COCO: 80 classes, 9 anchors,
P3-P7) and fed identical head outputs for 2 images of 800x1333 padded to
800x1344. The two implementations alternate, so machine load hits both
alike; the script prints medians and mmdet / ours ratios, checks that the
losses (relative 1e-5) and the predictions agree, and measures the peak
memory of each step in a fresh process per implementation.

    python benchmarks/bench_head.py                 # CPU, all figures
    python benchmarks/bench_head.py --device cuda   # same on a GPU
    python benchmarks/bench_head.py --quick         # fewer repeats, no R50
    python benchmarks/bench_head.py --rotated       # rotated head vs mmrotate

Head outputs: logits ~ N(-6.5, 1.5) (about 1.5% of the (anchor, class)
scores pass score_thr=0.05, like a partly trained model), deltas ~ N(0, 0.5).

``--rotated``: the head of mmrotate-dev's own
``rotated-retinanet-rbox-le90_r50_fpn_1x_dota`` config (``mmdet.RetinaHead``
with mmrotate's rotated anchors, coder and ``RBboxOverlaps2D``) against the
same config with mmretina's four types, on one DOTA-like 1024 x 1024 image,
15 classes, objects at any angle (6-96 x 6-36 px, ships and vehicles).
"""
import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import time

import torch
from mmengine.config import ConfigDict
from mmengine.structures import InstanceData

from mmretina.testing import retina_head_cfg

IMG_H, IMG_W, PAD_H, PAD_W = 800, 1333, 800, 1344
STRIDES = (8, 16, 32, 64, 128)
NUM_CLASSES = 80


def head_cfg(prefix: str) -> ConfigDict:
    """mmdet's retinanet_r50_fpn head, with our types when prefixed."""
    return retina_head_cfg(prefix, num_classes=NUM_CLASSES, strides=STRIDES)


def build(impl: str, device: str):
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    import mmretina  # noqa: F401
    return MODELS.build(head_cfg('mmretina.' if impl == 'ours' else '')).to(
        device)


def make_inputs(num_gts: int, device: str, seed: int = 0):
    """Head outputs, ground truths and metas of a 2-image COCO batch."""
    gen = torch.Generator().manual_seed(seed)
    cls_scores, bbox_preds = [], []
    for s in STRIDES:
        h, w = -(-PAD_H // s), -(-PAD_W // s)
        cls_scores.append((-6.5 + 1.5 * torch.randn(
            2, 9 * NUM_CLASSES, h, w, generator=gen)).to(device))
        bbox_preds.append((0.5 * torch.randn(2, 36, h, w,
                                             generator=gen)).to(device))
    gts = []
    for _ in range(2):
        xy = torch.rand(num_gts, 2, generator=gen) * torch.tensor(
            [IMG_W - 40., IMG_H - 40.])
        wh = 16 + torch.rand(num_gts, 2, generator=gen) * 300
        boxes = torch.cat(
            [xy, (xy + wh).minimum(torch.tensor([IMG_W, IMG_H]) * 1.)], 1)
        gts.append(
            InstanceData(
                bboxes=boxes.to(device),
                labels=torch.randint(0, NUM_CLASSES, (num_gts, ),
                                     generator=gen).to(device)))
    metas = [
        dict(img_shape=(IMG_H, IMG_W), pad_shape=(PAD_H, PAD_W),
             batch_input_shape=(PAD_H, PAD_W), scale_factor=(1.6, 1.6))
        for _ in range(2)
    ]
    return cls_scores, bbox_preds, gts, metas


def sync(device: str) -> None:
    if device.startswith('cuda'):
        torch.cuda.synchronize()


def loss_step(head, cls_scores, bbox_preds, gts, metas):
    """loss_by_feat + backward to the head outputs; returns the total."""
    cls_scores = [c.detach().requires_grad_(True) for c in cls_scores]
    bbox_preds = [b.detach().requires_grad_(True) for b in bbox_preds]
    losses = head.loss_by_feat(cls_scores, bbox_preds, gts, metas)
    total = {
        k: sum(v) if isinstance(v, list) else v
        for k, v in losses.items()
    }
    (total['loss_cls'] + total['loss_bbox']).backward()
    return {k: float(v.detach()) for k, v in total.items()}


def predict_step(head, cls_scores, bbox_preds, metas):
    with torch.no_grad():
        return head.predict_by_feat(
            cls_scores, bbox_preds, batch_img_metas=metas, rescale=True)


def timed(fn, device):
    sync(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - t0, out


def compare_head(num_gts: int, repeats: int, device: str,
                 impls=('mmdet', 'ours')) -> dict:
    heads = {impl: build(impl, device) for impl in impls}
    cls_scores, bbox_preds, gts, metas = make_inputs(num_gts, device)
    times = {(i, s): [] for i in heads for s in ('loss', 'predict')}
    results = {}
    for rep in range(repeats + 1):  # first round warms up
        for impl, head in heads.items():
            t, out = timed(
                lambda: loss_step(head, cls_scores, bbox_preds, gts, metas),
                device)
            results[(impl, 'loss')] = out
            if rep:
                times[(impl, 'loss')].append(t)
            t, out = timed(
                lambda: predict_step(head, cls_scores, bbox_preds, metas),
                device)
            results[(impl, 'predict')] = out
            if rep:
                times[(impl, 'predict')].append(t)
    med = {k: statistics.median(v) for k, v in times.items() if v}
    if 'mmdet' not in heads:
        return dict(num_gts=num_gts, median_s=med,
                    loss=(results[('ours', 'loss')], None), loss_ok=None,
                    pred_ok=None,
                    num_dets=[len(p) for p in results[('ours', 'predict')]])
    la, lb = results[('ours', 'loss')], results[('mmdet', 'loss')]
    loss_ok = all(
        abs(la[k] - lb[k]) <= 1e-5 * abs(lb[k]) + 1e-7 for k in lb)
    pa, pb = results[('ours', 'predict')], results[('mmdet', 'predict')]
    pred_ok = all(
        len(a) == len(b) and torch.allclose(a.bboxes, b.bboxes, atol=1e-3)
        and torch.allclose(a.scores, b.scores) and torch.equal(
            a.labels, b.labels) for a, b in zip(pa, pb))
    return dict(num_gts=num_gts, median_s=med, loss=(la, lb),
                loss_ok=loss_ok, pred_ok=pred_ok,
                num_dets=[len(p) for p in pa])


ROT_SIZE, ROT_CLASSES = 1024, 15


def rotated_head(impl: str):
    """The head of mmrotate's rotated-retinanet-rbox-le90 config; mmretina's
    four types for ``impl == 'ours'``."""
    import os.path as osp

    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    from mmretina.utils.mmrotate import require_mmrotate
    mmrotate = require_mmrotate('benchmarks/bench_head.py --rotated')
    from mmrotate.registry import MODELS
    import mmretina  # noqa: F401
    init_default_scope('mmrotate')
    model = Config.fromfile(osp.join(
        osp.dirname(mmrotate.__file__), '.mim', 'configs',
        'rotated_retinanet',
        'rotated-retinanet-rbox-le90_r50_fpn_1x_dota.py')).model
    head = model.bbox_head
    head.update(train_cfg=model.train_cfg, test_cfg=model.test_cfg)
    if impl == 'ours':
        head.type = 'mmretina.RetinaHead'
        head.loss_cls.type = 'mmretina.FocalLoss'
        head.anchor_generator.type = 'mmretina.FakeRotatedAnchorGenerator'
        head.train_cfg.assigner.type = 'mmretina.MaxIoUAssigner'
    torch.manual_seed(0)
    return MODELS.build(head)


def rotated_inputs(num_gts: int, seed: int = 0):
    """Head outputs, rotated ground truths and metas of one 1024 px
    image."""
    from mmrotate.structures.bbox import RotatedBoxes
    gen = torch.Generator().manual_seed(seed)
    cls_scores, bbox_preds = [], []
    for s in STRIDES:
        n = ROT_SIZE // s
        cls_scores.append(-6.5 + 1.5 * torch.randn(
            1, 9 * ROT_CLASSES, n, n, generator=gen))
        bbox_preds.append(0.5 * torch.randn(1, 45, n, n, generator=gen))
    ctr = torch.rand(num_gts, 2, generator=gen) * ROT_SIZE
    wh = 6 + torch.rand(num_gts, 2, generator=gen) * torch.tensor([90., 30.])
    angle = (torch.rand(num_gts, 1, generator=gen) - 0.5) * 3.14159
    gts = [InstanceData(
        bboxes=RotatedBoxes(torch.cat([ctr, wh, angle], 1)),
        labels=torch.randint(0, ROT_CLASSES, (num_gts, ), generator=gen))]
    metas = [dict(img_shape=(ROT_SIZE, ROT_SIZE),
                  pad_shape=(ROT_SIZE, ROT_SIZE),
                  batch_input_shape=(ROT_SIZE, ROT_SIZE),
                  scale_factor=(1., 1.))]
    return cls_scores, bbox_preds, gts, metas


def same_rotated_detections(a, b) -> bool:
    """Equal detections; exact score ties may come in either order."""
    from mmretina.testing import detection_rows
    return len(a) == len(b) and torch.equal(detection_rows(a),
                                            detection_rows(b))


def compare_rotated(num_gts: int, repeats: int, with_ref: bool) -> dict:
    impls = ('mmrotate', 'ours') if with_ref else ('ours', )
    heads = {impl: rotated_head(impl) for impl in impls}
    cls_scores, bbox_preds, gts, metas = rotated_inputs(num_gts)
    times = {(i, s): [] for i in heads for s in ('loss', 'predict')}
    results = {}
    for rep in range(repeats + 1):  # first round warms up
        for impl, head in heads.items():
            if rep or impl == 'ours':  # mmrotate: no warm-up round
                t, results[(impl, 'loss')] = timed(lambda: loss_step(
                    head, cls_scores, copy.deepcopy(bbox_preds),
                    copy.deepcopy(gts), metas), 'cpu')
                if rep:
                    times[(impl, 'loss')].append(t)
            t, results[(impl, 'predict')] = timed(
                lambda: predict_step(head, cls_scores, bbox_preds, metas),
                'cpu')
            if rep:
                times[(impl, 'predict')].append(t)
    med = {k: statistics.median(v) for k, v in times.items() if v}
    out = dict(median_s=med, loss=results[('ours', 'loss')],
               num_dets=[len(p) for p in results[('ours', 'predict')]])
    if with_ref:
        la, lb = results[('ours', 'loss')], results[('mmrotate', 'loss')]
        out.update(
            ref_loss=lb,
            loss_ok=all(abs(la[k] - lb[k]) <= 1e-5 * abs(lb[k]) + 1e-7
                        for k in lb),
            pred_ok=all(same_rotated_detections(a, b) for a, b in zip(
                results[('ours', 'predict')],
                results[('mmrotate', 'predict')])))
    return out


def rotated_main(args) -> None:
    """The rotated head's table (``--rotated``)."""
    repeats = 1 if args.quick else args.repeats
    print(f'# rotated RetinaNet head: mmretina vs mmrotate-dev 1.0.1 '
          f'(mmdet.RetinaHead + mmrotate parts), torch {torch.__version__}, '
          f'threads {torch.get_num_threads()}, cpus {os.cpu_count()}')
    print(f'# CPU: {cpu_model()}')
    print(f'# 1 image {ROT_SIZE}x{ROT_SIZE}, {ROT_CLASSES} classes, le90; '
          f'median of {repeats} (mmrotate: no warm-up round)')
    columns = ['objects/img', 'step', 'mmrotate s', 'mmretina s', 'speed-up',
               'results agree']
    rows = []
    print('| ' + ' | '.join(columns) + ' |')
    print('|---' * len(columns) + '|')
    for num_gts in args.gts:
        with_ref = num_gts <= args.mmrotate_max_gts
        r = compare_rotated(num_gts, repeats, with_ref)
        for step in ('loss', 'predict'):
            b = r['median_s'][('ours', step)]
            name = 'loss + backward' if step == 'loss' else 'predict'
            if with_ref:
                a = r['median_s'][('mmrotate', step)]
                ok = r['loss_ok'] if step == 'loss' else r['pred_ok']
                rows.append([str(num_gts), name, f'{a:.3f}', f'{b:.3f}',
                             f'{a / b:.1f}x', 'yes' if ok else 'NO'])
            else:
                rows.append([str(num_gts), name, 'not run', f'{b:.3f}', '-',
                             '-'])
            print('| ' + ' | '.join(rows[-1]) + ' |', flush=True)
        print(f'#   losses ours {r["loss"]} mmrotate {r.get("ref_loss")}; '
              f'detections {r["num_dets"]}')
    if args.json:
        import report
        import mmdet
        report.write_record(args.json, report.table_record(
            'benchmarks/bench_head.py --rotated', cpu_model(), columns, rows,
            [], torch=torch.__version__, mmdet=mmdet.__version__,
            device='cpu', threads=torch.get_num_threads(), repeats=repeats))


def peak_memory(impl: str, step: str, num_gts: int, device: str) -> float:
    """Peak resident memory added by one step, MiB, in a fresh process."""
    out = subprocess.run([
        sys.executable, __file__, '--mem-child', impl, step,
        str(num_gts), '--device', device, '--threads',
        str(torch.get_num_threads())
    ], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])['peak_mib']


def _rss_kib(field: str) -> int:
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    raise RuntimeError(field)


def mem_child(impl: str, step: str, num_gts: int, device: str) -> None:
    head = build(impl, device)
    cls_scores, bbox_preds, gts, metas = make_inputs(num_gts, device)
    if device.startswith('cuda'):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')  # reset the peak (VmHWM) to the current RSS
        base = _rss_kib('VmRSS') * 1024
    if step == 'loss':
        loss_step(head, cls_scores, bbox_preds, gts, metas)
    else:
        predict_step(head, cls_scores, bbox_preds, metas)
    if device.startswith('cuda'):
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = _rss_kib('VmHWM') * 1024
    print(json.dumps(dict(peak_mib=(peak - base) / 2**20)))


def cpu_model() -> str:
    """``lscpu``'s model name and whether bf16 is native."""
    name = 'unknown CPU'
    try:
        with open('/proc/cpuinfo') as f:
            info = f.read()
        for line in info.splitlines():
            if line.startswith('model name'):
                name = line.split(':', 1)[1].strip()
                break
        native = 'amx_bf16' in info or 'avx512_bf16' in info
    except OSError:
        native = False
    return f'{name}, bf16 {"native" if native else "not native"}'


def copy_bandwidth(device: str, mib: int = 256, repeats: int = 5) -> float:
    """GB/s of a large tensor copy (bytes read + written), median."""
    src = torch.ones(mib * 2**20 // 4, device=device)
    dst = torch.empty_like(src)
    runs = []
    for _ in range(repeats + 1):
        t, _ = timed(lambda: dst.copy_(src), device)
        runs.append(t)
    return 2 * src.numel() * 4 / statistics.median(runs[1:]) / 1e9


def focal_roofline(device: str, repeats: int) -> dict:
    """The fused focal loss + backward against the memory bound: the least
    it must move is one read of the fp32 logits and one write of their fp32
    gradient (2 x 4 bytes per (anchor, class))."""
    from mmretina.models.losses import focal_loss_sum
    cls_scores, _, _, _ = make_inputs(8, device)
    num = sum(c.numel() for c in cls_scores)
    gen = torch.Generator().manual_seed(1)
    labels = torch.full((2, num // 2 // NUM_CLASSES), NUM_CLASSES,
                        dtype=torch.long)
    pos = torch.randint(0, labels.size(1), (2, 200), generator=gen)
    labels.scatter_(1, pos, torch.randint(0, NUM_CLASSES, (2, 200),
                                          generator=gen))
    labels, weights = labels.to(device), torch.ones(labels.shape,
                                                    device=device)

    def step():
        maps = [c.detach().requires_grad_(True) for c in cls_scores]
        focal_loss_sum(maps, labels, weights, 9).backward()

    runs = []
    for _ in range(repeats + 1):
        t, _ = timed(step, device)
        runs.append(t)
    seconds = statistics.median(runs[1:])
    moved = 2 * num * 4
    return dict(seconds=seconds, gbytes=moved / 1e9,
                achieved=moved / seconds / 1e9)


def detector_step(repeats: int, device: str) -> dict:
    """Whole RetinaNet R50-FPN train step (forward + backward), 2 images."""
    from mmdet.registry import MODELS
    from mmdet.structures import DetDataSample
    times = {}
    for impl in ('mmdet', 'ours'):
        prefix = 'mmretina.' if impl == 'ours' else ''
        cfg = ConfigDict(
            type='RetinaNet',
            data_preprocessor=dict(type='DetDataPreprocessor',
                                   pad_size_divisor=32),
            backbone=dict(type='ResNet', depth=50, num_stages=4,
                          out_indices=(0, 1, 2, 3), frozen_stages=1,
                          norm_cfg=dict(type='BN', requires_grad=True),
                          norm_eval=True, style='pytorch'),
            neck=dict(type='FPN', in_channels=[256, 512, 1024, 2048],
                      out_channels=256, start_level=1,
                      add_extra_convs='on_input', num_outs=5),
            bbox_head=head_cfg(prefix))
        cfg.bbox_head.pop('train_cfg')
        cfg.bbox_head.pop('test_cfg')
        cfg.train_cfg = head_cfg(prefix).train_cfg
        cfg.test_cfg = head_cfg(prefix).test_cfg
        from mmengine.registry import DefaultScope
        with DefaultScope.overwrite_default_scope('mmdet'):
            model = MODELS.build(cfg).to(device)
        model.train()
        _, _, gts, metas = make_inputs(8, device)
        samples = []
        for g, m in zip(gts, metas):
            s = DetDataSample(metainfo=m)
            s.gt_instances = g
            samples.append(s)
        x = torch.randn(2, 3, PAD_H, PAD_W, device=device)
        runs = []
        for rep in range(repeats + 1):
            model.zero_grad()
            t, _ = timed(lambda: _train(model, x, samples), device)
            if rep:
                runs.append(t)
        times[impl] = statistics.median(runs)
    return times


def _train(model, x, samples):
    losses = model.loss(x, copy.deepcopy(samples))
    total, _ = model.parse_losses(losses)
    total.backward()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--gts', type=int, nargs='+',
                        default=[8, 100, 1000, 3000])
    parser.add_argument('--mmdet-max-gts', type=int, default=1000,
                        help='above this many objects per image mmdet is '
                        'not run (its dense IoU needed 7 GB at 1000; at 3000 '
                        'it does not fit 24 GB): ours alone')
    parser.add_argument('--quick', action='store_true',
                        help='2 repeats, no memory or R50 figures')
    parser.add_argument('--threads', type=int, default=None,
                        help='torch intra-op threads (default: torch\'s); '
                        '1 gives stable ratios on a loaded machine')
    parser.add_argument('--no-detector', action='store_true',
                        help='skip the R50-FPN train-step figure')
    parser.add_argument('--json', help='also write the table here '
                        '(benchmarks/report.py renders it)')
    parser.add_argument('--rotated', action='store_true',
                        help='the rotated head against mmrotate\'s '
                        '(objects per image: --gts, default 8 100 1000)')
    parser.add_argument('--mmrotate-max-gts', type=int, default=100,
                        help='--rotated: above this many objects mmrotate is '
                        'not run (its dense rotated IoU of every anchor with '
                        'every object: about 7 minutes per step at 1000)')
    parser.add_argument('--mem-child', nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.mem_child:
        impl, step, num_gts = args.mem_child
        mem_child(impl, step, int(num_gts), args.device)
        return
    if args.rotated:
        if args.gts == [8, 100, 1000, 3000]:
            args.gts = [8, 100, 1000]
        rotated_main(args)
        return
    if args.device == 'cuda' and not torch.cuda.is_available():
        sys.exit('--device cuda: no CUDA device here')
    repeats = 2 if args.quick else args.repeats
    import mmdet
    import mmretina
    print(f'# mmretina {mmretina.__version__} vs mmdet {mmdet.__version__}, '
          f'torch {torch.__version__}, device {args.device}, '
          f'threads {torch.get_num_threads()}, cpus {os.cpu_count()}')
    print(f'# CPU: {cpu_model()}')
    if args.device.startswith('cuda'):
        print(f'# GPU: {torch.cuda.get_device_name()}')
    print(f'# 2 images {IMG_H}x{IMG_W} padded to {PAD_H}x{PAD_W}, '
          f'{NUM_CLASSES} classes; median of {repeats}')
    columns = ['gts/img', 'step', 'mmdet s', 'mmretina s', 'speed-up',
               'results agree', 'mmdet peak MiB', 'mmretina peak MiB',
               'memory ratio']
    rows, notes = [], []
    print('| ' + ' | '.join(columns) + ' |')
    print('|---' * len(columns) + '|')
    for num_gts in args.gts:
        with_mmdet = num_gts <= args.mmdet_max_gts
        r = compare_head(num_gts, repeats, args.device,
                         ('mmdet', 'ours') if with_mmdet else ('ours', ))
        for step in ('loss', 'predict'):
            b = r['median_s'][('ours', step)]
            mb = (None if args.quick else
                  peak_memory('ours', step, num_gts, args.device))
            name = 'loss + backward' if step == 'loss' else \
                'predict (rescale)'
            if not with_mmdet:
                rows.append([str(num_gts), name, 'not run', f'{b:.3f}', '-',
                             '-', 'not run',
                             '-' if mb is None else f'{mb:.0f}', '-'])
                print('| ' + ' | '.join(rows[-1]) + ' |', flush=True)
                continue
            a = r['median_s'][('mmdet', step)]
            ok = r['loss_ok'] if step == 'loss' else r['pred_ok']
            if args.quick:
                mem = ('-', '-', '-')
            else:
                ma = peak_memory('mmdet', step, num_gts, args.device)
                mem = (f'{ma:.0f}', f'{mb:.0f}', f'{mb / ma:.2f}')
            rows.append([str(num_gts), name, f'{a:.3f}', f'{b:.3f}',
                         f'{a / b:.2f}x', 'yes' if ok else 'NO', *mem])
            print('| ' + ' | '.join(rows[-1]) + ' |', flush=True)
        la, lb = r['loss']
        print(f'#   losses ours {la} mmdet {lb}; detections {r["num_dets"]}')
    bandwidth = copy_bandwidth(args.device)
    roof = focal_roofline(args.device, repeats)
    notes.append(f'Focal loss + backward (fused): {roof["seconds"]:.3f} s '
                 f'for {roof["gbytes"]:.2f} GB at least (fp32 logits read + '
                 f'gradient written) = {roof["achieved"]:.1f} GB/s; copy '
                 f'bandwidth {bandwidth:.1f} GB/s; '
                 f'{roof["achieved"] / bandwidth:.0%} of it.')
    print('# ' + notes[-1])
    if not (args.quick or args.no_detector):
        d = detector_step(2, args.device)
        notes.append(f'RetinaNet R50-FPN train step, 2 images: mmdet '
                     f'{d["mmdet"]:.2f} s, ours {d["ours"]:.2f} s, '
                     f'mmdet/ours {d["mmdet"] / d["ours"]:.2f}x.')
        print('# ' + notes[-1])
    if args.json:
        import report
        report.write_record(args.json, report.table_record(
            'benchmarks/bench_head.py', cpu_model(), columns, rows, notes,
            torch=torch.__version__, mmdet=mmdet.__version__,
            device=args.device, threads=torch.get_num_threads(),
            repeats=repeats))


if __name__ == '__main__':
    main()
