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

A detector is not shift-invariant: the same raster without its first
column can move precision and recall at a fixed score threshold by several
boxes. ``--offsets N`` evaluates every version N x N times, without its
first 0..N-1 columns and rows of the model's pixels (the same ground, on
the model's pixel grid shifted by whole model pixels), and reports the
means over the offsets, their standard deviations, and each version's drop
from the original paired by offset (mean and standard error): a difference
between two GSDs smaller than the offsets' own spread is only measurable
that way.
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


def offset_crop(src: str, dx: int, dy: int, unit: float, out: str) -> str:
    """Write ``src`` without its first ``dx`` columns and ``dy`` rows of
    ``unit``-metre pixels (the model's), georeferenced, at ``out``.

    Raises:
        ValueError: ``unit`` is not a whole number of ``src``'s pixels.
    """
    import rasterio
    from rasterio.windows import Window
    with rasterio.open(src) as ds:
        k = unit / abs(ds.transform.a)
        if round(k) < 1 or abs(k - round(k)) > 1e-6:
            raise ValueError(
                f'{src}: its pixel ({abs(ds.transform.a):g}) does not divide '
                f'the model\'s ({unit:g}); --offsets needs GSDs that do '
                '(e.g. --gsds 0.05 0.025 for a 0.1 m model)')
        k = int(round(k))
        win = Window(dx * k, dy * k, ds.width - dx * k, ds.height - dy * k)
        arr = ds.read(window=win)
        profile = ds.profile.copy()
        profile.update(width=win.width, height=win.height,
                       transform=ds.window_transform(win))
    with rasterio.open(out, 'w', **profile) as dst:
        dst.write(arr)
    return out


def paired_drop(reference, values):
    """Mean and standard error of ``reference[i] - values[i]`` (standard
    error 0 for a single pair)."""
    import numpy as np
    d = np.asarray(reference, float) - np.asarray(values, float)
    se = d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else 0.0
    return float(d.mean()), float(se)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('config')
    p.add_argument('checkpoint')
    p.add_argument('raster')
    p.add_argument('labels')
    p.add_argument('--gsds', type=float, nargs='+', default=[0.05, 0.025])
    p.add_argument('--out-dir', default='work_dirs/eval_gsd')
    p.add_argument('--json', help='write the figures here too')
    p.add_argument('--offsets', type=int, default=1, metavar='N',
                   help='evaluate each raster at N x N offsets of the '
                   "model's pixel grid and report means (default 1: the "
                   'rasters as they are)')
    p.add_argument('--rules', nargs='+', choices=('auto', 'off'),
                   default=['auto', 'off'],
                   help='the GSD rules to read the resampled rasters with '
                   '(default both; the original and the controls are always '
                   'read with auto)')
    p.add_argument('--no-controls', dest='controls', action='store_false',
                   help='leave out the nearest-made rasters and the '
                   'blurred original (see the module docstring)')
    args = p.parse_args(argv)
    if args.offsets < 1:
        p.error(f'--offsets must be 1 or more, got {args.offsets}')

    import numpy as np
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
    # (GSD or None for the raster's own, path, read with every --rules)
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
    offsets = [(dx, dy) for dy in range(args.offsets)
               for dx in range(args.offsets)]
    unit = gsd
    if unit is None:
        with rasterio.open(args.raster) as ds:
            unit = abs(ds.transform.a)

    def evaluate(path, read_at, rule, dx, dy):
        out = osp.join(args.out_dir, f'{osp.basename(path)}.{rule}')
        if (dx, dy) != (0, 0):
            path = offset_crop(path, dx, dy, unit,
                               osp.join(args.out_dir, 'offset.tif'))
            out += '.offset'
        ev = FieldEvaluator(inf, backend.classes, 0.3, 0.4, gsd=read_at,
                            log=lambda s: None)
        images = ev.rasters(path, args.labels)
        o = ev.write(images, out)['overall']
        return (o['precision'], o['recall'], o['mAP50'],
                sum(m.n_pred for m in images))

    rows = []
    reference = None  # the original's (precision, recall) per offset
    for g, path, off_too in rasters:
        for rule in args.rules if off_too else ['auto']:
            read_at = gsd if rule == 'auto' else None
            t0 = time.perf_counter()
            per = np.array([evaluate(path, read_at, rule, dx, dy)
                            for dx, dy in offsets])
            if reference is None:
                reference = per[:, :2]
            mean = per.mean(axis=0)
            rows.append(dict(raster=osp.basename(path),
                             gsd=g or 'native', rule=rule,
                             precision=mean[0], recall=mean[1],
                             mAP50=mean[2], detections=mean[3],
                             seconds=round(time.perf_counter() - t0, 1)))
            r = rows[-1]
            line = (f"{r['raster']:>26}  --gsd {rule:4}  precision "
                    f"{r['precision']:.3f}  recall {r['recall']:.3f}  mAP50 "
                    f"{r['mAP50']:.3f}  {r['detections']:g} detections")
            if len(offsets) > 1:
                sd = per.std(axis=0, ddof=1)
                r.update(precision_sd=sd[0], recall_sd=sd[1],
                         precision_drop=paired_drop(reference[:, 0],
                                                    per[:, 0]),
                         recall_drop=paired_drop(reference[:, 1], per[:, 1]))
                line += (f' (means of {len(offsets)} offsets; sd '
                         f'{sd[0]:.3f} / {sd[1]:.3f}; drop from the '
                         'original {:+.3f} ± {:.3f} / {:+.3f} ± {:.3f})'
                         .format(*r['precision_drop'], *r['recall_drop']))
            print(f"{line}  {r['seconds']} s", flush=True)
    if args.json:
        import report
        cpu = describe_cpu()
        columns = ['raster', 'GSD (m)', '--gsd', 'precision@0.4',
                   'recall@0.4', 'mAP50', 'detections >= 0.3']
        table = [[r['raster'], str(r['gsd']), r['rule'],
                  f"{r['precision']:.3f}", f"{r['recall']:.3f}",
                  f"{r['mAP50']:.3f}", f"{r['detections']:g}"] for r in rows]
        offset_note = []
        if len(offsets) > 1:
            columns += ['precision sd', 'recall sd', 'precision drop',
                        'precision drop se', 'recall drop', 'recall drop se']
            for cells, r in zip(table, rows):
                cells += [f"{r['precision_sd']:.3f}", f"{r['recall_sd']:.3f}",
                          *(f'{v:.3f}' for v in r['precision_drop']),
                          *(f'{v:.3f}' for v in r['recall_drop'])]
            offset_note = [
                f'every figure is the mean over {len(offsets)} offsets: each '
                f'raster without its first 0-{args.offsets - 1} columns and '
                "rows of the model's pixels; sd: over the offsets; drop: the "
                "original's figure minus this row's, paired by offset (mean "
                'and standard error)']
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
             'average) or off (as they are)'] + offset_note,
            torch=torch.__version__))
    return 0


if __name__ == '__main__':
    sys.exit(main())
