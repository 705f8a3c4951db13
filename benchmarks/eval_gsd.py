"""Field precision / recall of a model on one raster resampled to other
ground sample distances, read with --gsd auto (at the model's GSD) and
--gsd off (as it is): the pixel-size trap and its fix, measured.

    python benchmarks/eval_gsd.py CONFIG CHECKPOINT RASTER LABELS \
        [--gsds 0.05 0.025] [--json out.json]

RASTER is resampled (GDAL bilinear: a drone's finer pixel made from the
original; ``average`` when coarser) to each GSD of ``--gsds`` and written
beside the output; every version is evaluated against LABELS (any GIS
layer; IoU 0.4, scores >= 0.3) through ``mmretina.evaluation.field_run``
with both GSD rules. The figures are validation figures when RASTER was
used to choose anything, test figures otherwise: say which.

Two controls separate the rule from the way the finer rasters are made
(``--no-controls`` leaves them out):

- each finer GSD made by ``nearest`` too (every pixel repeated: nothing
  blurred), read at the model's GSD: the rule loses nothing when the
  raster carries the original's detail;
- the original blurred by what a bilinear enlargement by an integer factor
  followed by the rule's averaging does to it (per axis the kernel of
  :func:`round_trip_kernel`), read at its own pixels: what the bilinear
  rasters cost the model before any reading rule is involved.
"""
import argparse
import json
import os
import os.path as osp
import sys
import time


def resample(src: str, gsd: float, out: str,
             enlarge: str = 'bilinear') -> str:
    """Write ``src`` resampled to ``gsd`` (GDAL ``enlarge`` when finer,
    ``average`` when coarser) at ``out``."""
    import rasterio
    from rasterio.enums import Resampling
    with rasterio.open(src) as ds:
        native = abs(ds.transform.a)
        f = native / gsd
        h, w = int(round(ds.height * f)), int(round(ds.width * f))
        arr = ds.read(out_shape=(ds.count, h, w),
                      resampling=Resampling[enlarge] if f > 1 else
                      Resampling.average)
        profile = ds.profile.copy()
        profile.update(width=w, height=h, transform=ds.transform *
                       ds.transform.scale(ds.width / w, ds.height / h))
    with rasterio.open(out, 'w', **profile) as dst:
        dst.write(arr)
    return out


def round_trip_kernel(n: int):
    """The 1-D kernel (3 taps) that a GDAL bilinear enlargement by the
    integer ``n`` followed by an n x n average applies to an image: each
    of the n samples in a pixel interpolates it with the neighbour on its
    side, at the sample's offset ``(i + 0.5) / n - 0.5``. For n = 2 and 4:
    [1/8, 3/4, 1/8]."""
    import numpy as np
    k = np.zeros(3)
    for o in (np.arange(n) + 0.5) / n - 0.5:
        k[1] += 1 - abs(o)
        k[0 if o < 0 else 2] += abs(o)
    return k / n


def blurred(src: str, n: int, out: str) -> str:
    """Write ``src`` filtered by :func:`round_trip_kernel` (n) along both
    axes (edges repeated), with its own georeferencing, at ``out``."""
    import numpy as np
    import rasterio
    from scipy.ndimage import convolve1d
    k = round_trip_kernel(n)
    with rasterio.open(src) as ds:
        arr = ds.read().astype(np.float64)
        profile = ds.profile.copy()
    arr = convolve1d(convolve1d(arr, k, axis=1, mode='nearest'), k, axis=2,
                     mode='nearest')
    dtype = np.dtype(profile['dtype'])
    if dtype.kind in 'iu':
        info = np.iinfo(dtype)
        arr = np.clip(np.round(arr), info.min, info.max)
    with rasterio.open(out, 'w', **profile) as dst:
        dst.write(arr.astype(dtype))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('config')
    p.add_argument('checkpoint')
    p.add_argument('raster')
    p.add_argument('labels')
    p.add_argument('--gsds', type=float, nargs='+', default=[0.05, 0.025])
    p.add_argument('--out-dir', default='work_dirs/eval_gsd')
    p.add_argument('--json', help='write the figures here too')
    p.add_argument('--no-controls', dest='controls', action='store_false',
                   help='leave out the nearest-made rasters and the '
                   'blurred original (see the module docstring)')
    args = p.parse_args(argv)

    import rasterio
    import torch
    from mmdet.apis import init_detector

    import mmretina  # noqa: F401
    from mmretina.cli.options import model_gsd, model_window
    from mmretina.deploy.pytorch import PytorchBackend
    from mmretina.evaluation.field_run import FieldEvaluator
    from mmretina.inference.tiled import TiledInferencer
    from mmretina.utils.cpu_info import describe_cpu
    sys.path.insert(0, osp.dirname(osp.abspath(__file__)))  # report

    os.makedirs(args.out_dir, exist_ok=True)
    model = init_detector(args.config, args.checkpoint, device='cpu')
    backend = PytorchBackend(model)
    gsd = model_gsd(model.cfg)
    inf = TiledInferencer(backend, tile=model_window(model.cfg),
                          overlap=0.25, batch_size=4, progress=False)
    stem = osp.join(args.out_dir,
                    osp.splitext(osp.basename(args.raster))[0])
    # (GSD or None for the raster's own, path, evaluated with --gsd off too)
    rasters = [(None, args.raster, False)] + [
        (g, resample(args.raster, g, f'{stem}_{g:g}m.tif'), True)
        for g in args.gsds]
    if args.controls:
        with rasterio.open(args.raster) as ds:
            native = abs(ds.transform.a)
        factors = sorted({round(native / g) for g in args.gsds
                          if abs(native / g - round(native / g)) < 1e-6
                          and native / g > 1})
        rasters += [(g, resample(args.raster, g, f'{stem}_{g:g}m_nearest.tif',
                                 'nearest'), False) for g in args.gsds]
        rasters += [(None, blurred(args.raster, n, f'{stem}_blurred_x{n}.tif'),
                     False) for n in factors]
    rows = []
    for g, path, off_too in rasters:
        for rule, read_at in (('auto', gsd), ('off', None)):
            if rule == 'off' and not off_too:
                continue
            ev = FieldEvaluator(inf, backend.classes, 0.3, 0.4, gsd=read_at,
                                log=lambda s: None)
            t0 = time.perf_counter()
            images = ev.rasters(path, args.labels)
            summary = ev.write(images, osp.join(
                args.out_dir, f'{osp.basename(path)}.{rule}'))
            o = summary['overall']
            rows.append(dict(raster=osp.basename(path),
                             gsd=g or 'native', rule=rule,
                             precision=o['precision'], recall=o['recall'],
                             mAP50=o['mAP50'],
                             detections=int(sum(m.n_pred for m in images)),
                             seconds=round(time.perf_counter() - t0, 1)))
            r = rows[-1]
            print(f"{r['raster']:>26}  --gsd {rule:4}  precision "
                  f"{r['precision']:.3f}  recall {r['recall']:.3f}  mAP50 "
                  f"{r['mAP50']:.3f}  {r['detections']} detections  "
                  f"{r['seconds']} s", flush=True)
    if args.json:
        import report
        cpu = describe_cpu()
        columns = ['raster', 'GSD (m)', '--gsd', 'precision@0.4',
                   'recall@0.4', 'mAP50', 'detections >= 0.3']
        table = [[r['raster'], str(r['gsd']), r['rule'],
                  f"{r['precision']:.3f}", f"{r['recall']:.3f}",
                  f"{r['mAP50']:.3f}", str(r['detections'])] for r in rows]
        report.write_record(args.json, report.table_record(
            'benchmarks/eval_gsd.py',
            f"{cpu.model}, {cpu.cores} cores, bf16 "
            f"{'native' if cpu.bf16_native else 'not native'}",
            columns, table,
            [f'model GSD {gsd} m ({osp.basename(args.checkpoint)}); '
             'rasters resampled from the first with GDAL bilinear (_nearest: '
             'with nearest, every pixel repeated); _blurred_xN: the first '
             'filtered with the kernel of a bilinear xN enlargement followed '
             'by an NxN average (per axis [1/8, 3/4, 1/8] for N = 2 and 4); '
             'read with --gsd auto (resampled to the model\'s GSD, GDAL '
             'average) or off (as they are)'],
            torch=torch.__version__))
    return 0


if __name__ == '__main__':
    sys.exit(main())
