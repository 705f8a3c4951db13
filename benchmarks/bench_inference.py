"""Whole-detector inference speed and peak memory: mmdet's RetinaNet,
mmretina's in PyTorch and mmretina's exported to ONNX in onnxruntime, in
one run, for the DeepForest model (input 400 x 400) and R50-FPN (COCO, 80
classes, input 800 x 1333), batch 1 and 4.

    python benchmarks/bench_inference.py               # 1 thread
    python benchmarks/bench_inference.py --threads 2 --repeats 5
    python benchmarks/bench_inference.py --quick       # DeepForest only
    python benchmarks/bench_inference.py --no-deploy   # without INT8/OpenVINO

Rows onnxruntime_int8 / openvino / openvino_int8 (mmretina.deploy): the
exported model in OpenVINO, and statically quantized to INT8 (QDQ convs,
calibrated on 4 noise images: a speed figure; accuracy is measured with
tools/deployment/quantize.py --val-ann and tools/test.py MODEL.onnx).
The onnxruntime and openvino rows run the dynamic-shape graph, the INT8
rows a static one: compare INT8 with fp32 on a static graph too before
quoting a ratio (docs/user_guides/deployment.md does).

What is timed: from the resized uint8 image to the final detections, i.e.
the data preprocessor (normalise, pad), backbone, neck, head, decoding and
NMS (``model.test_step`` for PyTorch; host-side padding + ``session.run``
for onnxruntime). Image decoding and the resize are left out (the same for
all three). All three run the same weights (random, seed 0, classifier bias
-3 so that a few hundred boxes pass score_thr and NMS has work) on the same
images (a fixed uniform-noise image, or ``--image`` resized). Each
(model, implementation, batch) runs in a fresh process: images/s is the
median over ``--repeats`` timed iterations after one warm-up; peak memory is
the process's peak resident set (VmHWM) minus its resident set before the
model was built.
"""
import argparse
import json
import os
import os.path as osp
import platform
import statistics
import subprocess
import sys
import tempfile
import time

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
MODELS = {
    # name: (config, input (h, w))
    'deepforest': ('configs/retinanet_r18_fpn_deepforest.py', (400, 400)),
    'r50_fpn': ('configs/retinanet_r50_fpn.py', (800, 1333)),
}
IMPLS = ('mmdet', 'mmretina', 'onnxruntime')
# the exported model in other runtimes and precisions (mmretina.deploy):
# INT8 is a static 1 x 3 x H x W graph (a batch of 4 runs it 4 times),
# calibrated on 4 benchmark images; OpenVINO runs the same ONNX files
DEPLOY_IMPLS = ('onnxruntime_int8', 'openvino', 'openvino_int8')


def cpu_model() -> str:
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _rss_kib(field: str) -> int:
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1])
    return 0


def _strip_prefix(obj):
    """mmretina.X -> X (mmdet's own modules) throughout a config dict."""
    if isinstance(obj, dict):
        out = {k: _strip_prefix(v) for k, v in obj.items()}
        if isinstance(out.get('type'), str) and \
                out['type'].startswith('mmretina.'):
            out['type'] = out['type'][len('mmretina.'):]
        return out
    if isinstance(obj, (list, tuple)):
        return type(obj)(_strip_prefix(v) for v in obj)
    return obj


def load_cfg(name: str, impl: str):
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(REPO, MODELS[name][0]))
    cfg.model.backbone.init_cfg = None
    if impl == 'mmdet':
        from mmengine.config import ConfigDict
        cfg.model = ConfigDict(_strip_prefix(cfg.model.to_dict()))
    return cfg


def build_model(name: str, impl: str, weights: str = None):
    import torch
    from mmdet.apis import init_detector
    cfg = load_cfg(name, impl)
    torch.manual_seed(0)
    model = init_detector(cfg, None, device='cpu')
    if weights:
        model.load_state_dict(torch.load(weights, weights_only=True),
                              strict=True)
    return model.eval()


def make_images(name: str, batch: int, image: str = None):
    import mmcv
    import numpy as np
    h, w = MODELS[name][1]
    if image:
        img = mmcv.imresize(mmcv.imread(image), (w, h))
    else:
        img = np.random.RandomState(0).randint(0, 256, (h, w, 3), np.uint8)
    return [img] * batch


# ----------------------------------------------------------------- children
def child_prepare(name: str, out_dir: str) -> None:
    """Weights (mmretina model, seed 0, cls bias -3) and the ONNX files
    (dynamic; static and its INT8 version)."""
    import numpy as np
    import torch
    from mmretina.deploy.export import export_onnx
    model = build_model(name, 'mmretina')
    with torch.no_grad():
        model.bbox_head.retina_cls.bias.fill_(-3.0)
    torch.save(model.state_dict(), osp.join(out_dir, f'{name}.pth'))
    h, w = MODELS[name][1]
    start = time.time()
    export_onnx(model, osp.join(out_dir, f'{name}.onnx'), model.cfg,
                dynamic=True, example_size=(-(-h // 32) * 32,
                                            -(-w // 32) * 32))
    export_s = time.time() - start
    # the static graph and its INT8 version (DEPLOY_IMPLS)
    from mmretina.deploy.quantize import quantize_model
    static = osp.join(out_dir, f'{name}.static.onnx')
    export_onnx(model, static, model.cfg, dynamic=False,
                example_size=(-(-h // 32) * 32, -(-w // 32) * 32))
    calib = osp.join(out_dir, f'{name}_calib')
    os.makedirs(calib, exist_ok=True)
    import mmcv
    for i in range(4):
        img = np.random.RandomState(i).randint(0, 256, (h, w, 3), np.uint8)
        mmcv.imwrite(img, osp.join(calib, f'{i}.png'))
    start = time.time()
    quantize_model(static, osp.join(out_dir, f'{name}.int8.onnx'), calib,
                   num_calib=4, log=lambda *a: None)
    print(json.dumps(dict(export_s=export_s,
                          quantize_s=time.time() - start)))


def child_run(name: str, impl: str, batch: int, repeats: int, threads: int,
              out_dir: str, image: str = None) -> None:
    import torch
    import mmdet.apis  # noqa: F401  (libraries loaded before the baseline)
    import mmretina.deploy.runtime  # noqa: F401
    import onnxruntime  # noqa: F401
    torch.set_num_threads(threads)
    base = _rss_kib('VmRSS')
    imgs = make_images(name, batch, image)
    if impl == 'onnxruntime':
        from mmretina.deploy.runtime import OrtBackend
        backend = OrtBackend(osp.join(out_dir, f'{name}.onnx'),
                             num_threads=threads)
        import numpy as np

        # the resize stays out of the timing, as for PyTorch below
        resized = [backend.pipeline(dict(img=im, img_id=0)) for im in imgs]
        _, info = backend.preprocess(imgs)
        div = backend.pad_size_divisor

        def step():
            # host side: batch, pad, to float (what the data preprocessor
            # does in PyTorch), then the graph
            hh = max(r['img'].shape[0] for r in resized)
            ww = max(r['img'].shape[1] for r in resized)
            x = np.empty((len(resized), 3, -(-hh // div) * div,
                          -(-ww // div) * div), np.float32)
            x[:] = backend.pad_value[None, :, None, None]
            for i, r in enumerate(resized):
                im = r['img']
                x[i, :, :im.shape[0], :im.shape[1]] = im.transpose(2, 0, 1)
            out = backend.session.run(None, dict(image=x, img_info=info))
            return int(out[3].sum())

    elif impl in DEPLOY_IMPLS:
        from mmretina.deploy.backends import build_backend
        runtime, _, precision = impl.partition('_')
        backend = build_backend(
            osp.join(out_dir, f'{name}.int8.onnx' if precision else
                     f'{name}.onnx'), runtime, threads)
        resized = [backend.pipeline(dict(img=im, img_id=0)) for im in imgs]
        scales = [r.get('scale_factor', (1.0, 1.0)) for r in resized]
        step_n = backend.static_batch or len(resized)

        def step():
            # host side (pad, to float) and the graph, as for onnxruntime
            n = 0
            for i in range(0, len(resized), step_n):
                out = backend.run_packed(*backend.pack(
                    [r['img'] for r in resized[i:i + step_n]],
                    scales[i:i + step_n]))
                n += sum(len(o) for o in out)
            return n

    else:
        from mmcv.transforms import Compose
        from mmdet.utils import get_test_pipeline_cfg
        model = build_model(name, impl, osp.join(out_dir, f'{name}.pth'))
        pipeline = get_test_pipeline_cfg(model.cfg.copy())
        pipeline[0].type = 'mmdet.LoadImageFromNDArray'
        pipeline = Compose(pipeline)
        data = [pipeline(dict(img=im, img_id=0)) for im in imgs]
        batch_data = dict(inputs=[d['inputs'] for d in data],
                          data_samples=[d['data_samples'] for d in data])

        def step():
            with torch.no_grad():
                res = model.test_step(batch_data)
            return sum(len(r.pred_instances) for r in res)

    dets = step()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    peak = _rss_kib('VmHWM')
    print(json.dumps(dict(
        images_per_s=batch / statistics.median(times),
        peak_mib=(peak - base) / 1024,
        dets_per_img=dets / batch)))


# ------------------------------------------------------------------- parent
def _child(args, *extra):
    env = dict(os.environ)
    env['PYTHONPATH'] = REPO + os.pathsep + env.get('PYTHONPATH', '')
    env['OMP_NUM_THREADS'] = str(args.threads)
    proc = subprocess.run([sys.executable, osp.abspath(__file__), *extra],
                          env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f'child {extra} failed:\n{proc.stderr[-3000:]}')
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--repeats', type=int, default=3)
    p.add_argument('--batches', type=int, nargs='+', default=[1, 4])
    p.add_argument('--models', nargs='+', default=list(MODELS),
                   choices=list(MODELS))
    p.add_argument('--image', help='an image to resize to the input size '
                   '(default: fixed uniform noise)')
    p.add_argument('--quick', action='store_true',
                   help='DeepForest only, 2 repeats')
    p.add_argument('--json', help='also write the table here '
                   '(benchmarks/report.py renders it)')
    p.add_argument('--no-deploy', action='store_true',
                   help='without the INT8 and OpenVINO rows')
    p.add_argument('--child', nargs='+', help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        kind, *rest = args.child
        if kind == 'prepare':
            child_prepare(rest[0], rest[1])
        else:
            name, impl, batch, repeats, threads, out_dir = rest[:6]
            child_run(name, impl, int(batch), int(repeats), int(threads),
                      out_dir, rest[6] if len(rest) > 6 else None)
        return
    if args.quick:
        args.models, args.repeats = ['deepforest'], 2
    impls = IMPLS if args.no_deploy else IMPLS + DEPLOY_IMPLS
    if not args.no_deploy:
        try:
            import openvino  # noqa: F401
        except ImportError:
            print('openvino is not installed: no OpenVINO rows')
            impls = IMPLS + DEPLOY_IMPLS[:1]
    import torch
    print(f'CPU: {cpu_model()}, {os.cpu_count()} cores; torch '
          f'{torch.__version__}, {args.threads} thread(s); median of '
          f'{args.repeats} after 1 warm-up; input '
          + (args.image or 'uniform noise'))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            info = _child(args, '--child', 'prepare', name, tmp)
            print(f'{name}: ONNX export {info["export_s"]:.1f} s, INT8 '
                  f'quantization {info["quantize_s"]:.1f} s', flush=True)
            for batch in args.batches:
                for impl in impls:
                    extra = ['--child', 'run', name, impl, str(batch),
                             str(args.repeats), str(args.threads), tmp]
                    if args.image:
                        extra.append(args.image)
                    r = _child(args, *extra)
                    rows.append((name, batch, impl, r))
                    print(f'  {name} batch {batch} {impl}: '
                          f'{r["images_per_s"]:.2f} images/s, peak '
                          f'{r["peak_mib"]:.0f} MiB, '
                          f'{r["dets_per_img"]:.0f} detections/image',
                          flush=True)
    h = {n: MODELS[n][1] for n in MODELS}
    columns = (['model', 'input', 'batch']
               + [f'{i} images/s' for i in impls]
               + [f'{i} peak MiB' for i in impls])
    table = []
    for name in args.models:
        for batch in args.batches:
            r = {impl: x for n, b, impl, x in rows
                 if n == name and b == batch}
            table.append([name, f'{h[name][0]}x{h[name][1]}', str(batch)]
                         + [f'{r[i]["images_per_s"]:.2f}' for i in impls]
                         + [f'{r[i]["peak_mib"]:.0f}' for i in impls])
    print('\n| ' + ' | '.join(columns) + ' |')
    print('|---' * len(columns) + '|')
    for row in table:
        print('| ' + ' | '.join(row) + ' |')
    if args.json:
        import report
        report.write_record(args.json, report.table_record(
            'benchmarks/bench_inference.py', cpu_model(), columns, table,
            torch=torch.__version__, threads=args.threads,
            repeats=args.repeats, input=args.image or 'uniform noise'))


if __name__ == '__main__':
    main()
