"""Where a training step of the DeepForest demo model goes, and what each
CPU speed lever buys, as ratios measured in one run.

The model, optimizer and batch are ``benchmarks/bench_train_step.py``'s
(``configs/retinanet_r18_fpn_deepforest.py``, mmretina's head; 4 synthetic
images of 320x320 with 20 crowns each, like the demo's crops). Sections
(``--sections``, default all but ``compile``):

``profile``
    one step split into data preprocessor, backbone, FPN, head convs,
    targets (anchors + assignment), losses, backward, optimizer step
    (gradient clipping + AdamW) and the EMA update of the config's
    ``EMAHook``, timed with wrappers around the modules' methods (the CPU
    runs synchronously, so wall time is where the step goes); plus a
    ``torch.profiler`` split of the backward pass by autograd function.
``data``
    one iteration of the demo's train dataloader (``num_workers=0``: it runs
    on the training thread), and the PNG decode alone per image (what a
    cache of decoded tiles would save). Needs ``data/deepforest``.
``levers``
    channels-last memory format; bf16 vs fp32; inference with conv+BN
    fused (``mmcv.cnn.fuse_conv_bn``), bf16 and channels-last; all
    alternating within one process.
``recipe``
    crop size (256, 320, 400) and a 64-channel FPN/head, alternating.
``threads``
    1 vs ``--threads`` intra-op threads, same models, alternating.
``procs``
    two single-threaded training processes at once against one
    two-threaded process: images/s of each arrangement (fresh processes).
``avx2``
    steps in a child process with oneDNN and ATen limited to AVX2
    (``ONEDNN_MAX_CPU_ISA=AVX2``, ``ATEN_CPU_CAPABILITY=avx2``), against a
    child without the limit: an estimate of an AVX2-only CPU's step (fp32,
    and bf16 forced, i.e. emulated there).
``compile``
    ``torch.compile`` (inductor, C++ backend) of backbone, FPN and head
    forward: compile time and step time against eager.

    nice -n 5 python benchmarks/profile_demo_step.py --threads 2
    python benchmarks/profile_demo_step.py --sections profile --repeats 3

Absolute times on a shared machine are noisy; the settings alternate
every repeat so that load hits all alike, and the ratios are the figures.
"""
import argparse
import copy
import json
import os
import os.path as osp
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from typing import Callable, Dict, List

import torch

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
import bench_bf16  # noqa: E402
import bench_train_step  # noqa: E402

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
SECTIONS = ('profile', 'data', 'levers', 'recipe', 'threads', 'procs',
            'avx2', 'compile')


def median_ms(v: List[float]) -> float:
    return 1000 * statistics.median(v)


def alternate(fns: Dict[str, Callable[[], object]], repeats: int,
              warmup: int = 1) -> Dict[str, float]:
    """Median ms of each callable, the callables alternating."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times = defaultdict(list)
    for _ in range(repeats):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return {k: median_ms(v) for k, v in times.items()}


def batch(size: int = 320, imgs: int = 4):
    bench_bf16.SIZE, bench_bf16.IMGS = size, imgs
    return bench_bf16.make_batch()


def built(precision: str, impl: str = 'mmretina', cfg_edit=None):
    if cfg_edit is None:
        return bench_train_step.build(impl, precision)
    orig = bench_bf16.model_cfg

    def edited(i):
        model, optim = orig(i)
        cfg_edit(model)
        return model, optim
    bench_bf16.model_cfg = edited
    try:
        return bench_train_step.build(impl, precision)
    finally:
        bench_bf16.model_cfg = orig


# ----------------------------------------------------------------------
# profile
# ----------------------------------------------------------------------
class StageTimer:
    """Accumulates wall time of wrapped callables by stage name."""

    def __init__(self):
        self.acc = defaultdict(float)

    def wrap(self, obj, attr: str, name: str) -> None:
        fn = getattr(obj, attr)

        def timed(*args, **kwargs):
            t = time.perf_counter()
            out = fn(*args, **kwargs)
            self.acc[name] += time.perf_counter() - t
            return out
        setattr(obj, attr, timed)


def profiled_step(model, wrapper, ema, timer, inputs_u8, samples) -> None:
    acc = timer.acc
    t0 = time.perf_counter()
    data = model.data_preprocessor(
        dict(inputs=list(inputs_u8), data_samples=copy.deepcopy(samples)),
        training=True)
    t1 = time.perf_counter()
    acc['data preprocessor'] += t1 - t0
    with wrapper.optim_context(model):
        losses = model.loss(data['inputs'], data['data_samples'])
    total, _ = model.parse_losses(losses)
    t2 = time.perf_counter()
    acc['forward + losses'] += t2 - t1
    wrapper.backward(total)
    t3 = time.perf_counter()
    acc['backward'] += t3 - t2
    wrapper.step()
    wrapper.zero_grad()
    t4 = time.perf_counter()
    acc['optimizer (clip + AdamW)'] += t4 - t3
    ema.update_parameters(model)
    acc['EMA update'] += time.perf_counter() - t4
    acc['step'] += time.perf_counter() - t0


def section_profile(args, out: dict) -> None:
    from mmengine.model import ExponentialMovingAverage
    from torch.profiler import ProfilerActivity, profile
    inputs, samples = batch()
    inputs_u8 = (inputs * 40 + 128).clamp(0, 255).to(torch.uint8)
    runs = {}
    for prec in args.precisions:
        model, wrapper = built(prec)
        ema = ExponentialMovingAverage(model, momentum=0.002,
                                       update_buffers=True)
        timer = StageTimer()
        head = model.bbox_head
        timer.wrap(model.backbone, 'forward', 'backbone')
        timer.wrap(model.neck, 'forward', 'FPN')
        timer.wrap(head, 'forward', 'head convs')
        timer.wrap(head, 'loss_by_feat', '_loss_by_feat')
        timer.wrap(head, 'get_targets', 'targets (anchors + assignment)')
        runs[prec] = (model, wrapper, ema, timer, [])
    for rep in range(args.repeats + 2):  # precisions alternate; 2 warm-up
        for prec, (model, wrapper, ema, timer, steps) in runs.items():
            timer.acc.clear()
            profiled_step(model, wrapper, ema, timer, inputs_u8, samples)
            if rep >= 2:
                steps.append(dict(timer.acc))
    res = {}
    for prec, (model, wrapper, ema, timer, steps) in runs.items():
        for a in steps:
            a['losses (focal + GIoU, checks)'] = (
                a.pop('_loss_by_feat') - a['targets (anchors + assignment)'])
            a['forward: rest (mmdet glue)'] = a.pop('forward + losses') - sum(
                a[k] for k in ('backbone', 'FPN', 'head convs',
                               'targets (anchors + assignment)',
                               'losses (focal + GIoU, checks)'))
        a = {k: median_ms([s[k] for s in steps]) for k in steps[0]}
        step = a.pop('step')
        # backward by autograd function, one profiled step
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            profiled_step(model, wrapper, ema, timer, inputs_u8, samples)
        bwd = defaultdict(float)
        fwd = defaultdict(float)
        for e in prof.key_averages():
            if e.key.startswith('autograd::engine::evaluate_function: '):
                fn = e.key.split(': ', 1)[1]
                kind = ('convolution' if 'Convolution' in fn else
                        'group norm' if 'GroupNorm' in fn else
                        'batch norm' if 'BatchNorm' in fn else 'other')
                bwd[kind] += e.cpu_time_total / 1000
            elif e.key in ('aten::conv2d', 'aten::group_norm',
                           'aten::batch_norm'):
                fwd[e.key] += e.cpu_time_total / 1000
        res[prec] = dict(step_ms=step, stages_ms=a, backward_ms=dict(bwd),
                         forward_ops_ms=dict(fwd))
        print(f'\n[profile] {prec}: step {step:.1f} ms (median of '
              f'{args.repeats}; stages: medians, so they need not add up)')
        for k, v in a.items():
            print(f'  {k:34s} {v:7.1f} ms  {100 * v / step:5.1f} %')
        tb = sum(bwd.values())
        print('  backward by autograd function (one profiled step, '
              f'{tb:.1f} ms):')
        for k, v in sorted(bwd.items(), key=lambda kv: -kv[1]):
            print(f'    {k:32s} {v:7.1f} ms  {100 * v / tb:5.1f} %')
        print('  forward ops (profiled step): ' + ', '.join(
            f'{k[6:]} {v:.1f} ms' for k, v in fwd.items()))
    if len(res) == 2:
        print('  fp32 / bf16 by stage: ' + ', '.join(
            f'{k} {res["fp32"]["stages_ms"][k] / v:.2f}x'
            for k, v in res['bf16']['stages_ms'].items() if v > 5))
    out['profile'] = res


# ----------------------------------------------------------------------
# data
# ----------------------------------------------------------------------
def section_data(args, out: dict) -> None:
    import mmcv
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from mmengine.runner import Runner
    import mmretina  # noqa: F401
    root = osp.join(REPO, 'data/deepforest')
    if not osp.isdir(osp.join(root, 'images')):
        print('[data] skipped: data/deepforest missing (python '
              'tools/dataset_converters/prepare_deepforest.py)')
        return
    cfg = Config.fromfile(osp.join(REPO, bench_bf16.CONFIG))
    dl_cfg = copy.deepcopy(cfg.train_dataloader)
    dl_cfg.dataset.data_root = root + '/'
    with DefaultScope.overwrite_default_scope('mmdet'):
        loader = Runner.build_dataloader(dl_cfg, seed=0)
        it = iter(loader)
        next(it)
        times = []
        n = max(args.repeats * 2, 4)
        for _ in range(n):
            t = time.perf_counter()
            try:
                next(it)
            except StopIteration:
                it = iter(loader)
                next(it)
            times.append(time.perf_counter() - t)
    files = sorted(os.listdir(osp.join(root, 'images')))[:20]
    dec, read = [], []
    for f in files:
        t = time.perf_counter()
        with open(osp.join(root, 'images', f), 'rb') as fh:
            buf = fh.read()
        t1 = time.perf_counter()
        mmcv.imfrombytes(buf)
        dec.append(time.perf_counter() - t1)
        read.append(t1 - t)
    bs = dl_cfg.batch_size
    res = dict(batch_ms=median_ms(times), per_image_ms=median_ms(times) / bs,
               decode_ms_per_image=median_ms(dec),
               read_ms_per_image=median_ms(read), batch_size=bs)
    out['data'] = res
    print(f'\n[data] dataloader iteration (batch {bs}, num_workers=0, '
          f'median of {n}): {res["batch_ms"]:.1f} ms = '
          f'{res["per_image_ms"]:.1f} ms/image; PNG decode '
          f'{res["decode_ms_per_image"]:.2f} ms/image (400x400), file read '
          f'{res["read_ms_per_image"]:.3f} ms/image')


# ----------------------------------------------------------------------
# levers
# ----------------------------------------------------------------------
def contiguous_head_outputs(head) -> None:
    """Head outputs back to contiguous (NCHW) tensors: mmretina's focal
    loss ``view``s the logit maps and refuses channels-last ones."""
    fwd = head.forward

    def forward(x):
        return tuple([t.contiguous() for t in maps] for maps in fwd(x))
    head.forward = forward


def section_levers(args, out: dict) -> None:
    from mmcv.cnn import fuse_conv_bn
    step = bench_bf16.step
    inputs, samples = batch()
    res = {}
    cl = torch.channels_last
    inputs_cl = inputs.contiguous(memory_format=cl)
    fns = {}
    for prec in args.precisions:
        m, w = built(prec)
        fns[f'{prec} base'] = (lambda m=m, w=w: step(m, w, inputs, samples))
        mc, wc = built(prec)
        mc.to(memory_format=cl)
        contiguous_head_outputs(mc.bbox_head)
        fns[f'{prec} channels_last'] = (
            lambda m=mc, w=wc: step(m, w, inputs_cl, samples))
    r = alternate(fns, args.repeats)
    res['channels_last'] = r
    print(f'\n[levers] channels_last (train step, {args.threads} threads, '
          f'median of {args.repeats}):')
    for prec in args.precisions:
        b, c = r[f'{prec} base'], r[f'{prec} channels_last']
        print(f'  {prec}: contiguous {b:.1f} ms, channels_last {c:.1f} ms '
              f'-> speed-up {b / c:.2f}x')
    if 'bf16' in args.precisions and 'fp32' in args.precisions:
        print(f'  fp32 / bf16 (contiguous): '
              f'{r["fp32 base"] / r["bf16 base"]:.2f}x')

    # inference: fused conv+BN, bf16 autocast, channels_last; 1 x 400x400
    x400 = torch.randn(1, 3, 400, 400, generator=torch.Generator()
                       .manual_seed(1))
    base, _ = built('fp32')
    base.eval()
    fused = fuse_conv_bn(copy.deepcopy(base))
    fused_cl = copy.deepcopy(fused).to(memory_format=cl)
    contiguous_head_outputs(fused_cl.bbox_head)
    x400_cl = x400.contiguous(memory_format=cl)
    meta = [dict(img_shape=(400, 400), pad_shape=(400, 400),
                 batch_input_shape=(400, 400), scale_factor=(1.0, 1.0))]

    def pred(m, x, bf16=False):
        # the network under autocast, decoding + NMS in fp32 (mmcv's nms
        # takes fp32 boxes only)
        with torch.no_grad():
            with torch.autocast('cpu', torch.bfloat16, enabled=bf16):
                outs = m.bbox_head(m.extract_feat(x))
            outs = [[t.float() for t in maps] for maps in outs]
            return m.bbox_head.predict_by_feat(*outs, batch_img_metas=meta,
                                               rescale=False)
    with torch.no_grad():
        d0 = base.extract_feat(x400)
        d1 = fused.extract_feat(x400)
    fuse_err = max(float((a - b).abs().max()) for a, b in zip(d0, d1))
    fns = {'fp32': lambda: pred(base, x400),
           'fp32 fused conv+BN': lambda: pred(fused, x400),
           'fp32 fused + channels_last': lambda: pred(fused_cl, x400_cl)}
    if 'bf16' in args.precisions:
        fns['bf16 autocast'] = lambda: pred(base, x400, True)
        fns['bf16 fused'] = lambda: pred(fused, x400, True)
        fns['bf16 fused + channels_last'] = lambda: pred(fused_cl, x400_cl,
                                                         True)
    r = alternate(fns, args.repeats * 2)
    res['inference'] = dict(ms=r, fuse_max_abs_feature_diff=fuse_err)
    print(f'[levers] inference, 1 x 400x400, predict (median of '
          f'{args.repeats * 2}); fused vs unfused FPN features differ by '
          f'{fuse_err:.2e} at most:')
    for k, v in r.items():
        print(f'  {k:28s} {v:7.1f} ms   fp32 / this {r["fp32"] / v:.2f}x')

    out['levers'] = res


def section_recipe(args, out: dict) -> None:
    """Crop size and FPN/head width: train step against the demo's."""
    step = bench_bf16.step

    def narrow(model):
        model.neck.out_channels = 64
        model.bbox_head.in_channels = 64
        model.bbox_head.feat_channels = 64
    fns = {}
    for prec in args.precisions:
        for size in (256, 320, 400):
            inp, smp = batch(size)
            m, w = built(prec)
            fns[f'{prec} {size}px'] = (
                lambda m=m, w=w, i=inp, s=smp: step(m, w, i, s))
        inp, smp = batch(320)
        m, w = built(prec, cfg_edit=narrow)
        fns[f'{prec} 320px, FPN/head 64 ch'] = (
            lambda m=m, w=w, i=inp, s=smp: step(m, w, i, s))
        inp, smp = batch(256)
        m, w = built(prec, cfg_edit=narrow)
        fns[f'{prec} 256px, FPN/head 64 ch'] = (
            lambda m=m, w=w, i=inp, s=smp: step(m, w, i, s))
    r = alternate(fns, args.repeats)
    print(f'\n[recipe] train step (batch 4, median of '
          f'{args.repeats}):')
    for k, v in r.items():
        prec = k.split()[0]
        print(f'  {k:26s} {v:7.1f} ms   vs {prec} 320px '
              f'{v / r[f"{prec} 320px"]:.2f}x')
    out['recipe'] = r


def section_threads(args, out: dict) -> None:
    """Same models, 1 vs --threads intra-op threads, alternating."""
    step = bench_bf16.step
    inputs, samples = batch()
    res = {}
    nthreads = torch.get_num_threads()
    if nthreads > 1:
        fns = {}
        for prec in args.precisions:
            m, w = built(prec)
            for n in (1, nthreads):
                def f(m=m, w=w, n=n):
                    torch.set_num_threads(n)
                    step(m, w, inputs, samples)
                fns[f'{prec} {n} threads'] = f
        r = alternate(fns, args.repeats)
        torch.set_num_threads(nthreads)
        res = r
        print(f'\n[threads] train step (median of {args.repeats}):')
        for prec in args.precisions:
            one, many = r[f'{prec} 1 threads'], r[f'{prec} {nthreads} threads']
            print(f'  {prec}: 1 thread {one:.1f} ms, {nthreads} threads '
                  f'{many:.1f} ms -> {one / many:.2f}x from '
                  f'{nthreads} threads')
    out['threads'] = res


# ----------------------------------------------------------------------
# processes (procs, avx2) via children
# ----------------------------------------------------------------------
def child(prec: str, steps: int, threads: int) -> None:
    torch.set_num_threads(threads)
    inputs, samples = batch()
    m, w = built(prec)
    bench_bf16.step(m, w, inputs, samples)
    t = time.perf_counter()
    for _ in range(steps):
        bench_bf16.step(m, w, inputs, samples)
    dt = time.perf_counter() - t
    print(json.dumps(dict(step_ms=1000 * dt / steps,
                          images_per_s=steps * bench_bf16.IMGS / dt,
                          start=t, end=t + dt)))


def spawn(prec: str, steps: int, threads: int, env=None):
    e = dict(os.environ, OMP_NUM_THREADS=str(threads), **(env or {}))
    return subprocess.Popen(
        [sys.executable, __file__, '--child', prec, str(steps),
         str(threads)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=e, cwd=REPO)


def collect(p) -> dict:
    o, e = p.communicate()
    if p.returncode:
        raise RuntimeError(f'child failed: {e[-2000:]}')
    return json.loads(o.strip().splitlines()[-1])


def section_procs(args, out: dict) -> None:
    res = {}
    steps = max(args.repeats, 3)
    print(f'\n[procs] {steps} steps each, fresh processes, twice '
          'alternating:')
    for prec in args.precisions:
        one, two = [], []
        for _ in range(2):
            r = collect(spawn(prec, steps, 2))
            one.append(r['images_per_s'])
            ps = [spawn(prec, steps, 1) for _ in range(2)]
            rs = [collect(p) for p in ps]
            # the two processes overlap only partly: count images/s over
            # the span both ran
            overlap = (min(r['end'] for r in rs) - max(r['start']
                                                       for r in rs))
            two.append(sum(r['images_per_s'] for r in rs))
            if overlap <= 0:
                print('  warning: the two 1-thread children did not overlap')
        a, b = statistics.median(one), statistics.median(two)
        res[prec] = dict(one_2thread_img_s=a, two_1thread_img_s=b)
        print(f'  {prec}: one 2-thread process {a:.2f} img/s, two 1-thread '
              f'processes {b:.2f} img/s together -> {b / a:.2f}x')
    out['procs'] = res


def section_avx2(args, out: dict) -> None:
    steps = max(args.repeats, 3)
    env = dict(ONEDNN_MAX_CPU_ISA='AVX2', ATEN_CPU_CAPABILITY='avx2')
    res = {}
    print(f'\n[avx2] train step, {args.threads} threads, {steps} steps x 2 '
          'children each, native ISA vs oneDNN/ATen limited to AVX2:')
    for prec in args.precisions:
        nat, avx = [], []
        for _ in range(2):
            nat.append(collect(spawn(prec, steps, args.threads))['step_ms'])
            avx.append(collect(spawn(prec, steps, args.threads,
                                     env))['step_ms'])
        a, b = statistics.median(nat), statistics.median(avx)
        res[prec] = dict(native_ms=a, avx2_ms=b)
        print(f'  {prec}: native {a:.1f} ms, AVX2 {b:.1f} ms -> {b / a:.2f}x '
              'slower' + (' (bf16 emulated)' if prec == 'bf16' else ''))
    if len(res) == 2:
        print(f'  under AVX2, bf16 / fp32: '
              f'{res["bf16"]["avx2_ms"] / res["fp32"]["avx2_ms"]:.2f}x')
    out['avx2'] = res


def section_compile(args, out: dict) -> None:
    step = bench_bf16.step
    inputs, samples = batch()
    res = {}
    for prec in args.precisions:
        eager = built(prec)
        comp = built(prec)
        m = comp[0]
        for mod in (m.backbone, m.neck, m.bbox_head):
            mod.forward = torch.compile(mod.forward)
        t = time.perf_counter()
        step(*comp, inputs, samples)
        first = time.perf_counter() - t
        try:
            r = alternate({'eager': lambda: step(*eager, inputs, samples),
                           'compiled': lambda: step(*comp, inputs, samples)},
                          args.repeats)
        except FloatingPointError as e:
            # seen with bf16 autocast (torch 2.13): NaN maps from the second
            # compiled step on, where eager trains normally
            res[prec] = dict(first_step_s=first, error=str(e))
            print(f'\n[compile] {prec}: first (compiling) step {first:.1f} '
                  f's; then the compiled model failed: {e}')
            continue
        res[prec] = dict(first_step_s=first, **r)
        print(f'\n[compile] {prec}: first (compiling) step {first:.1f} s; '
              f'eager {r["eager"]:.1f} ms, compiled {r["compiled"]:.1f} ms '
              f'-> {r["eager"] / r["compiled"]:.2f}x')
    out['compile'] = res


def main(argv=None) -> None:
    from mmretina.utils.cpu_info import describe_cpu
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--sections', nargs='+', choices=SECTIONS,
                        default=[s for s in SECTIONS if s != 'compile'])
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--threads', type=int, default=None)
    parser.add_argument('--precision', choices=('fp32', 'bf16', 'both'),
                        default='both',
                        help="'both': fp32, plus bf16 where it is native")
    parser.add_argument('--json', help='also write the figures here')
    parser.add_argument('--child', nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        prec, steps, threads = args.child
        child(prec, int(steps), int(threads))
        return
    if args.repeats < 1:
        parser.error('--repeats must be >= 1')
    if args.threads:
        torch.set_num_threads(args.threads)
    args.threads = torch.get_num_threads()
    cpu = describe_cpu()
    args.precisions = (['fp32'] + (['bf16'] if cpu.bf16_native else [])
                       if args.precision == 'both' else [args.precision])
    print(f'CPU: {cpu.summary()}; torch {torch.__version__}; '
          f'{args.threads} threads; precisions {args.precisions}')
    out = dict(cpu=cpu.summary(), threads=args.threads,
               repeats=args.repeats)
    for s in SECTIONS:
        if s in args.sections:
            globals()[f'section_{s}'](args, out)
            sys.stdout.flush()
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(out, f, indent=1)


if __name__ == '__main__':
    main()
