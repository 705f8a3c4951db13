"""Peak memory and throughput of detection over large rasters: window by
window from disk (tools/infer.py --tile, mmretina.inference.run), beside the
in-memory tiled path (the whole raster decoded, then cut) where it fits
and SAHI 0.12's ``get_sliced_prediction`` when ``sahi`` is installed.

    python benchmarks/bench_large_raster.py                  # 2k, 10k, 40k
    python benchmarks/bench_large_raster.py --sizes 2000 --modes windowed
    python benchmarks/bench_large_raster.py --sizes 40000 --input-px 128

The rasters are built once (``--work-dir``): tiled (512 px blocks),
deflate-compressed, 3-band uint8 GeoTIFFs in EPSG:32617 at 0.1 m, the
DeepForest tile OSBS_029 (from the deepforest==2.1.0 wheel in
~/.cache/mmretina, else a seeded noise texture) repeated to ``size`` px a
side, written block by block. The model is the DeepForest config with
random weights (seed 0; no trained checkpoint is needed to measure memory
and speed), the classifier bias at -4 so that a realistic few boxes a
window pass; ``--input-px`` < 400 resizes each window before the model (a
smaller model's cost, to measure memory on the 40k raster in minutes).

Each (raster, mode) runs in a fresh process; peak memory is that process's
peak resident set (VmHWM), model included. Throughput: megapixels / s and
hectares / min of the raster at its ground sample distance, and windows /
s, over the whole run (reading, model, merge, writing the GeoPackage).
"""
import argparse
import json
import os
import os.path as osp
import platform
import subprocess
import sys
import tempfile
import time

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG = osp.join(REPO, 'configs', 'retinanet_r18_fpn_deepforest.py')
GSD = 0.1


def cpu_model() -> str:
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _peak_rss_mb() -> float:
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmHWM:'):
                return int(line.split()[1]) / 1024
    return float('nan')


def _texture():
    """400 x 400 x 3 RGB uint8: the DeepForest tile, else noise."""
    import glob
    import zipfile

    import numpy as np
    wheels = glob.glob(osp.expanduser(
        '~/.cache/mmretina/deepforest-2.1.0-py3-none-any.whl'))
    if wheels:
        import cv2
        with zipfile.ZipFile(wheels[0]) as z:
            buf = np.frombuffer(z.read('deepforest/data/OSBS_029.png'),
                                np.uint8)
        return cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1], 'OSBS_029'
    rng = np.random.RandomState(0)
    return rng.randint(0, 256, (400, 400, 3), dtype=np.uint8), 'noise'


def build_raster(path: str, size: int) -> str:
    """A ``size`` x ``size`` tiled deflate GeoTIFF, written block by
    block (memory: one block row)."""
    import numpy as np
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window
    if osp.isfile(path):
        return 'cached'
    tex, name = _texture()
    block = 512
    tmp = path + '.tmp.tif'
    with rasterio.open(
            tmp, 'w', driver='GTiff', width=size, height=size, count=3,
            dtype='uint8', crs='EPSG:32617',
            transform=from_origin(404211.9, 3285142.9, GSD, GSD),
            tiled=True, blockxsize=block, blockysize=block,
            compress='deflate', zlevel=1, predictor=2,
            BIGTIFF='IF_SAFER') as ds:
        reps = (block * 2 // 400 + 2)
        big = np.tile(tex, (reps, reps, 1))
        for y in range(0, size, block):
            h = min(block, size - y)
            for x in range(0, size, block):
                w = min(block, size - x)
                oy, ox = y % 400, x % 400
                ds.write(np.ascontiguousarray(
                    big[oy:oy + h, ox:ox + w].transpose(2, 0, 1)),
                    window=Window(x, y, w, h))
    os.replace(tmp, path)
    return name


def _model(input_px: int, checkpoint=None):
    import torch
    from mmdet.apis import init_detector

    import mmretina  # noqa: F401
    opts = None
    if input_px != 400:
        opts = {'test_dataloader.dataset.pipeline.1.scale':
                (input_px, input_px)}
    torch.manual_seed(0)
    model = init_detector(CONFIG, checkpoint, device='cpu',
                          cfg_options=opts)
    if checkpoint is None:
        with torch.no_grad():
            model.bbox_head.retina_cls.bias.fill_(-4.0)
    model.dataset_meta = dict(classes=('tree', ))
    return model


def worker(args) -> dict:
    """One (raster, mode) run in this process."""
    import warnings
    warnings.filterwarnings('ignore')
    import torch
    torch.set_num_threads(args.threads)
    import numpy as np

    from mmretina.deploy.pytorch import PytorchBackend
    from mmretina.inference.tiled import TiledInferencer
    from mmretina.inference.tiled import load_image
    from mmretina.deploy.pytorch import optimize_for_cpu
    from mmretina.inference.outputs import RunOutputs
    from mmretina.inference.run import InferenceRun
    if args.mode == 'exported':  # tools/infer.py MODEL.onnx --backend B
        from mmretina.deploy.backends import build_backend
        backend = build_backend(args.exported, args.backend, args.threads)
    else:
        model = _model(args.input_px, args.checkpoint)
        if args.fuse_conv_bn and args.mode != 'sahi':
            optimize_for_cpu(model)  # tools/infer.py --fuse-conv-bn
        backend = PytorchBackend(model)
    base_mb = _peak_rss_mb()
    t0 = time.perf_counter()
    out = {}
    if args.mode in ('windowed', 'in-memory', 'exported'):
        inf = TiledInferencer(backend, tile=args.tile,
                              overlap=args.overlap, batch_size=args.batch,
                              progress=False)
        if args.mode in ('windowed', 'exported'):
            # the outputs users get (preview PNG, GeoPackage, CSV, COCO
            # JSON) are timed apart: detection alone compares with in-memory
            from mmretina.geo.raster import RasterSource
            spent = [0.0]

            def timed(fn):
                def wrapper(*a, **k):
                    start = time.perf_counter()
                    try:
                        return fn(*a, **k)
                    finally:
                        spent[0] += time.perf_counter() - start
                return wrapper

            for cls, name in ((InferenceRun, '_finish'),
                              (RunOutputs, 'write_collections'),
                              (RasterSource, 'overview')):
                setattr(cls, name, timed(getattr(cls, name)))
            with tempfile.TemporaryDirectory() as d:
                (res, ) = InferenceRun(inf, classes=('tree', ),
                                       out_dir=d, log=lambda s: None
                                       ).run([args.raster])
            boxes, scores = res['bboxes'], res['scores']
        else:
            img = load_image(args.raster, max_pixels=None)
            res = inf(img)
            boxes, scores = res.bboxes, res.scores
        out['detections'] = int(len(scores))
        if args.dump:  # for the parent's windowed == in-memory check
            np.savez(args.dump, bboxes=np.asarray(boxes),
                     scores=np.asarray(scores))
        w = len(inf.windows(args.size, args.size))
    else:  # sahi: its mmdet backend loads a config file and a checkpoint
        from sahi import AutoDetectionModel
        from sahi.predict import get_sliced_prediction
        d = tempfile.mkdtemp()
        ckpt = args.checkpoint
        if ckpt is None:
            ckpt = osp.join(d, 'random.pth')
            torch.save(dict(state_dict=model.state_dict(),
                            meta=dict(dataset_meta=model.dataset_meta)), ckpt)
        # the config unchanged (its test pipeline names LoadImageFromFile
        # and Resize as SAHI looks for them); image_size sets the Resize
        det = AutoDetectionModel.from_pretrained(
            model_type='mmdet', model_path=ckpt, config_path=CONFIG,
            confidence_threshold=0.05, device='cpu', load_at_init=True,
            image_size=args.input_px)
        t0 = time.perf_counter()  # like the others: model built before
        ratio = args.overlap if args.overlap < 1 else args.overlap / args.tile
        res = get_sliced_prediction(
            args.raster, det, slice_height=args.tile, slice_width=args.tile,
            overlap_height_ratio=ratio, overlap_width_ratio=ratio,
            verbose=0)
        out['detections'] = len(res.object_prediction_list)
        w = None
    dt = time.perf_counter() - t0
    if args.mode in ('windowed', 'exported'):
        out['outputs_s'] = round(spent[0], 1)
        out['detect_windows_per_s'] = round(w / (dt - spent[0]), 2)
    mp = args.size * args.size / 1e6
    ha = mp * 1e6 * GSD * GSD / 1e4
    out.update(seconds=round(dt, 1), windows=w,
               windows_per_s=round(w / dt, 2) if w else None,
               mp_per_s=round(mp / dt, 2), ha_per_min=round(ha / dt * 60, 1),
               peak_rss_mb=round(_peak_rss_mb()), model_rss_mb=round(base_mb))
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--sizes', type=int, nargs='+',
                   default=[2000, 10000, 40000])
    p.add_argument('--modes', nargs='+',
                   default=['windowed', 'in-memory', 'sahi'],
                   choices=['windowed', 'in-memory', 'sahi', 'exported'],
                   help='exported: the windowed path with --exported '
                   'MODEL.onnx on --backend')
    p.add_argument('--in-memory-max', type=int, default=10000,
                   help='in-memory / sahi only up to this size (they '
                   'decode the raster whole)')
    p.add_argument('--tile', type=int, default=400)
    p.add_argument('--overlap', type=float, default=0.25)
    p.add_argument('--batch', type=int, default=4)
    p.add_argument('--input-px', type=int, default=400)
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--no-fuse-conv-bn', dest='fuse_conv_bn',
                   action='store_false',
                   help='windowed / in-memory: the model as SAHI runs it '
                   '(default: conv+BN fused, channels-last, as tools/infer.py '
                   '--fuse-conv-bn)')
    p.add_argument('--work-dir', default=osp.join(tempfile.gettempdir(),
                                                  'mmretina_bench_rasters'))
    p.add_argument('--sahi-python', default=sys.executable,
                   help='python with sahi installed (default: this one)')
    p.add_argument('--checkpoint', help='the DeepForest config\'s weights '
                   '(default: random, classifier bias -4)')
    p.add_argument('--exported', help='an mmretina ONNX export (fp32 or '
                   'INT8) of the same model, for --modes exported')
    p.add_argument('--backend', default='onnxruntime',
                   choices=['onnxruntime', 'openvino'])
    p.add_argument('--json', help='append the results here')
    # internal: one run
    p.add_argument('--worker', action='store_true', help=argparse.SUPPRESS)
    p.add_argument('--raster', help=argparse.SUPPRESS)
    p.add_argument('--size', type=int, help=argparse.SUPPRESS)
    p.add_argument('--mode', help=argparse.SUPPRESS)
    p.add_argument('--dump', help=argparse.SUPPRESS)
    args = p.parse_args()
    if 'exported' in args.modes and not args.exported:
        p.error('--modes exported needs --exported MODEL.onnx')
    if args.worker:
        print('RESULT ' + json.dumps(worker(args)))
        return
    print(f'CPU: {cpu_model()}, {os.cpu_count()} cores, torch threads '
          f'{args.threads}; tile {args.tile}, overlap {args.overlap}, batch '
          f'{args.batch}, model input {args.input_px} px, conv+BN fused '
          f'{args.fuse_conv_bn}', flush=True)
    os.makedirs(args.work_dir, exist_ok=True)
    rows = []
    for size in args.sizes:
        path = osp.join(args.work_dir, f'raster_{size}.tif')
        t0 = time.perf_counter()
        src = build_raster(path, size)
        print(f'{size} px raster: {path} ({osp.getsize(path) / 1e6:.0f} MB '
              f'on disk, {src}, built in {time.perf_counter() - t0:.0f} s)',
              flush=True)
        for mode in args.modes:
            if mode in ('in-memory', 'sahi') and size > args.in_memory_max:
                print(f'  {mode}: skipped above {args.in_memory_max} px '
                      '(--in-memory-max)')
                continue
            if mode == 'sahi' and subprocess.run(
                    [args.sahi_python, '-c', 'import sahi'],
                    capture_output=True).returncode:
                print(f'  sahi: not installed for {args.sahi_python} (pip '
                      'install sahi==0.12.8, e.g. in a venv with '
                      '--system-site-packages; --sahi-python)')
                continue
            cmd = [sys.executable, __file__, '--worker', '--raster', path,
                   '--size', str(size), '--mode', mode]
            for k in ('tile', 'overlap', 'batch', 'input_px', 'threads',
                      'checkpoint', 'exported', 'backend'):
                if getattr(args, k) is not None:
                    cmd += ['--' + k.replace('_', '-'), str(getattr(args, k))]
            if not args.fuse_conv_bn:
                cmd.append('--no-fuse-conv-bn')
            if mode in ('windowed', 'in-memory'):
                cmd += ['--dump', osp.join(args.work_dir,
                                           f'dets_{size}_{mode}.npz')]
            if mode == 'sahi':  # e.g. a venv with sahi==0.12.8
                cmd[0] = args.sahi_python
            proc = subprocess.run(cmd, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True,
                                  env=dict(os.environ, PYTHONPATH=REPO))
            res = [line for line in proc.stdout.splitlines()
                   if line.startswith('RESULT ')]
            if proc.returncode or not res:
                print(f'  {mode}: failed\n' + proc.stdout[-2000:])
                continue
            if mode == 'exported':
                mode = f'{osp.basename(args.exported)} on {args.backend}'
            r = dict(json.loads(res[-1][7:]), size=size, mode=mode)
            rows.append(r)
            print(f'  {mode} peak RSS {r["peak_rss_mb"]:6d} MB (model '
                  f'{r["model_rss_mb"]} MB), {r["seconds"]:7.1f} s, '
                  f'{r["mp_per_s"]:6.2f} MP/s, {r["ha_per_min"]:7.1f} ha/min'
                  f' at {GSD} m'
                  + (f', {r["windows_per_s"]} windows/s of {r["windows"]}'
                     if r['windows'] else '')
                  + f', {r["detections"]} detections'
                  + (f'; writing the outputs {r["outputs_s"]} s, detection '
                     f'alone {r["detect_windows_per_s"]} windows/s'
                     if 'outputs_s' in r else ''), flush=True)
    for size in args.sizes:  # the windowed path reads what in-memory cuts
        runs = [r for r in rows if r['size'] == size]
        by_mode = {r['mode']: r for r in runs}
        if 'windowed' in by_mode and 'in-memory' in by_mode:
            import numpy as np
            a, b = (np.load(osp.join(args.work_dir, f'dets_{size}_{m}.npz'))
                    for m in ('windowed', 'in-memory'))
            same = (a['bboxes'].shape == b['bboxes'].shape
                    and np.array_equal(a['bboxes'], b['bboxes'])
                    and np.array_equal(a['scores'], b['scores']))
            print(f'{size} px: windowed detections '
                  f'{"==" if same else "!="} in-memory detections')
        base = by_mode.get('sahi')
        for r in runs:
            if base and r is not base:
                print(f'{size} px: {r["mode"]} / sahi speed '
                      f'{base["seconds"] / r["seconds"]:.2f}x')
    if args.json:
        with open(args.json, 'a') as f:
            f.write(json.dumps(dict(cpu=cpu_model(), args=vars(args),
                                    rows=rows)) + '\n')


if __name__ == '__main__':
    main()
