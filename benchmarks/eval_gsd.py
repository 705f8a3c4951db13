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
"""
import argparse
import json
import os
import os.path as osp
import sys
import time


def resample(src: str, gsd: float, out: str) -> str:
    import rasterio
    from rasterio.enums import Resampling
    with rasterio.open(src) as ds:
        native = abs(ds.transform.a)
        f = native / gsd
        h, w = int(round(ds.height * f)), int(round(ds.width * f))
        arr = ds.read(out_shape=(ds.count, h, w),
                      resampling=Resampling.bilinear if f > 1 else
                      Resampling.average)
        profile = ds.profile.copy()
        profile.update(width=w, height=h, transform=ds.transform *
                       ds.transform.scale(ds.width / w, ds.height / h))
    with rasterio.open(out, 'w', **profile) as dst:
        dst.write(arr)
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
    args = p.parse_args(argv)

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
    rasters = [(None, args.raster)] + [
        (g, resample(args.raster, g, osp.join(
            args.out_dir, f'{osp.splitext(osp.basename(args.raster))[0]}'
            f'_{g:g}m.tif'))) for g in args.gsds]
    rows = []
    for g, path in rasters:
        for rule, read_at in (('auto', gsd), ('off', None)):
            if g is None and rule == 'off':
                continue  # the original at its own GSD: one row
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
             'rasters resampled from the first with GDAL bilinear; read '
             'with --gsd auto (resampled to the model\'s GSD, GDAL average) '
             'or off (as they are)'],
            torch=torch.__version__))
    return 0


if __name__ == '__main__':
    sys.exit(main())
