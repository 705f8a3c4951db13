"""Evaluate a detector as the field reports it: box precision and recall at
IoU 0.4 per raster, per site and overall, beside COCO mAP / mAP50.

    # rasters + vector labels (any CRS; as raster_to_coco.py reads them)
    python tools/analysis_tools/eval_field.py CONFIG CHECKPOINT \\
        --rasters plots/ --labels crowns.gpkg --out-dir eval/ \\
        [--score-thr 0.3] [--iou 0.4] [--site-field site] [--gsd auto]
    # a COCO split (e.g. the val.json raster_to_coco.py wrote)
    python tools/analysis_tools/eval_field.py CONFIG CHECKPOINT \\
        --coco data/chips/annotations/val.json --img-dir data/chips/images \\
        --out-dir eval/

Each raster (image) goes through the inference users run (``mmretina
predict``, the same flags and defaults: windows read from disk at the
model's GSD, the config's ``bands`` / ``scale`` or --bands / --scale, the
cut-box rule and NMS across windows).
Matching is one-to-one (Hungarian) at IoU > --iou, regardless of class;
precision and recall are averaged over images as DeepForest's
``evaluate_boxes`` does; mAP uses every detection, precision / recall those
with score >= --score-thr. Writes OUT_DIR/summary.json
({"overall": {"precision", "recall", "mAP", "mAP50", ...}, "per_raster":
{...}, "per_site": {...}}), OUT_DIR/matches.csv (tp / fp / miss rows, pixel
boxes) and OUT_DIR/<raster>_matches.png (TP green, FP red, misses yellow).
An oriented model (an mmrotate config: rotated boxes) is matched at rotated
IoU against the labels' minimum-area rectangles. The library:
:mod:`mmretina.evaluation.field`.
"""
import argparse
import sys

from mmengine.config import DictAction

from mmretina.cli.options import (add_device_arg, add_raster_args,
                                  add_score_thr_arg, add_window_args)


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog='mmretina evaluate',
        description=' '.join(__doc__.split('\n\n', 1)[0].split()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split('\n\n', 1)[1] + '\nexamples:\n'
        '  mmretina evaluate configs/retinanet_r50_fpn_1x_coco.py \\\n'
        '      epoch_24.pth --rasters plots/ --labels crowns.gpkg \\\n'
        '      --out-dir eval/\n'
        '  mmretina evaluate configs/retinanet_r50_fpn_1x_coco.py \\\n'
        '      epoch_24.pth --coco data/chips/annotations/val.json \\\n'
        '      --img-dir data/chips/images --out-dir eval/\n')
    p.add_argument('config')
    p.add_argument('checkpoint')
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument('--rasters', help='a raster, a folder of rasters or a CSV '
                   'of raster,labels rows')
    g.add_argument('--coco', help='a COCO annotation file (a split)')
    p.add_argument('--labels', help='vector layer(s) of the ground truth '
                   '(with --rasters)')
    p.add_argument('--img-dir', help='image root of --coco')
    p.add_argument('--out-dir', required=True)
    add_score_thr_arg(p, 'count for precision / recall')
    p.add_argument('--iou', type=float, default=0.4,
                   help='a match has IoU > this (default %(default)s)')
    p.add_argument('--site-field', help='label attribute naming the site '
                   '(default: the raster name before the first "_")')
    p.add_argument('--class-field', help='label attribute holding the class '
                   '(default: one class)')
    p.add_argument('--point-radius', type=float,
                   help='metres, for point labels')
    p.add_argument('--label-crs', help='CRS of label layers without one')
    add_window_args(p)
    add_raster_args(p)
    add_device_arg(p)
    p.add_argument('--no-progress', action='store_true',
                   help='no progress lines')
    p.add_argument('--cfg-options', nargs='+', action=DictAction)
    args = p.parse_args(argv)
    if args.rasters and args.labels is None and not args.rasters.endswith(
            '.csv'):
        p.error('--rasters needs --labels (or a CSV of raster,labels rows)')
    if args.coco and not args.img_dir:
        p.error('--coco needs --img-dir')
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    import mmretina  # noqa: F401  (registers modules)
    from mmretina.deploy.pytorch import PytorchBackend, init_model
    from mmretina.inference.tiled import TiledInferencer
    from mmretina.geo.raster import parse_bands
    from mmretina.cli.options import (default_device, model_gsd,
                                      model_window, resolve_gsd,
                                      resolve_tile)
    from mmretina.datasets.converters.records import ConversionError
    from mmretina.evaluation.field_run import FieldEvaluator
    from mmretina.engine.resume import (CorruptCheckpointError,
                                        check_checkpoint)
    try:
        check_checkpoint(args.checkpoint, 'load')
        model = init_model(args.config, args.checkpoint,
                           device=args.device or default_device(),
                           cfg_options=args.cfg_options)
        backend = PytorchBackend(model)
        cfg = model.cfg
        inferencer = TiledInferencer(
            backend, tile=resolve_tile(args.tile, model_window(cfg)),
            overlap=args.overlap, batch_size=args.batch, merge=args.merge,
            iou_thr=args.merge_iou, border=args.border,
            progress=not args.no_progress)
        ev = FieldEvaluator(
            inferencer, backend.classes, args.score_thr, args.iou,
            bands=parse_bands(args.bands) or cfg.get('bands'),
            scale=args.scale or cfg.get('scale'),
            gsd=resolve_gsd(args.gsd, model_gsd(cfg)))
        if args.rasters:
            images = ev.rasters(args.rasters, args.labels, args.class_field,
                                args.site_field, args.point_radius,
                                args.label_crs)
        else:
            images = ev.coco(args.coco, args.img_dir)
        ev.write(images, args.out_dir)
    except (ConversionError, CorruptCheckpointError, ValueError, OSError,
            ImportError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
