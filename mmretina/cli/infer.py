"""Run a detector on images and rasters and write its detections.

  # one image, a PNG with boxes (the config's test pipeline resizes it)
  python tools/infer.py IMAGE CONFIG CHECKPOINT --out result.png
  # large images and rasters, window by window from disk (rasterio), all
  # outputs into a directory
  python tools/infer.py IMAGE_OR_DIR CONFIG CHECKPOINT --out-dir DIR \
      --tile 400 --overlap 0.25 [--batch 4] [--merge nms|wbf] \
      [--bands 1,2,3] [--scale LO,HI ...|pLO,pHI] \
      [--format gpkg|shp|geojson|fgb|csv] [--keep-crs] [--merge-layers]
  # an exported model (tools/deployment/export_onnx.py) with onnxruntime
  python tools/infer.py IMAGE_OR_DIR MODEL.onnx --backend onnxruntime ...
  # many rasters, processes or machines: tools/dist_infer.sh

--out-dir receives, per image, <stem>_detections.png (boxes with score >=
--score-thr) and, for a georeferenced raster, <stem>.gpkg (polygons in the
raster's CRS; --format for another); for all images, results.json (COCO
results: every detection, image_id = position in the list, category_id =
label + 1) and detections.csv (image_path,xmin,ymin,xmax,ymax,label,score;
score >= --score-thr). The engine is mmretina.apis.runner.InferenceRun;
bands, scaling and nodata: mmretina.apis.raster (docs/user_guides/
large_rasters.md).

(``tools/infer.py`` and the ``mmretina-infer`` command run :func:`main`;
``import mmretina`` installs the weights-only checkpoint loader.)
"""
import argparse
import os

import torch
from mmengine.config import DictAction

import mmretina  # noqa: F401  (registers mmretina.* modules)
from mmretina.apis import TiledInferencer
from mmretina.apis.inference import DEFAULT_MAX_PIXELS
from mmretina.apis.outputs import VECTOR_FORMATS
from mmretina.apis.runner import InferenceRun, list_inputs
from mmretina.engine.resume import check_checkpoint


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Detect objects in images (optionally window by window) '
        'and write PNG / COCO JSON / CSV / GeoJSON')
    parser.add_argument('image', help='an image file or a directory of them')
    parser.add_argument(
        'model',
        nargs='+',
        help='CONFIG CHECKPOINT (--backend pytorch) or MODEL.onnx '
        '(--backend onnxruntime)')
    parser.add_argument(
        '--backend', choices=['pytorch', 'onnxruntime', 'openvino'],
        default='pytorch')
    parser.add_argument('--out', help='output PNG (one input image only)')
    parser.add_argument(
        '--out-dir', help='directory for PNGs, results.json, '
        'detections.csv and GeoJSON')
    parser.add_argument(
        '--tile',
        type=int,
        default=0,
        help='window side in px; 0 (default): the whole image at once')
    parser.add_argument(
        '--overlap',
        type=float,
        default=0.25,
        help='window overlap: fraction of --tile (< 1) or px (default 0.25)')
    parser.add_argument(
        '--batch', type=int, default=4, help='windows per forward pass')
    parser.add_argument(
        '--merge',
        choices=['nms', 'wbf'],
        default='nms',
        help='merge across windows: class-aware NMS or weighted box fusion')
    parser.add_argument(
        '--merge-iou',
        type=float,
        default=None,
        help='IoU of the merge (default: the model\'s NMS IoU; 0.55 for wbf)')
    parser.add_argument(
        '--border',
        type=float,
        default=2.0,
        help='px: a box this close to an inner window edge is cut')
    parser.add_argument(
        '--score-thr',
        type=float,
        default=0.3,
        help='draw (and write to CSV / GeoJSON) detections with at least '
        'this score')
    parser.add_argument(
        '--device',
        default='cuda:0' if torch.cuda.is_available() else 'cpu',
        help='PyTorch device (default: cuda:0 if available, else cpu)')
    parser.add_argument(
        '--fuse-conv-bn',
        action='store_true',
        help='CPU, pytorch backend: fuse conv + BatchNorm and use '
        'channels-last weights (1.46x on the DeepForest model, AVX2 fp32; '
        'detections equal up to float rounding)')
    parser.add_argument(
        '--threads', type=int, default=None,
        help='onnxruntime / openvino threads')
    parser.add_argument(
        '--no-progress', action='store_true', help='no progress bar')
    parser.add_argument(
        '--bands',
        help='rasters: three 1-based bands read as R, G, B (default 1,2,3; '
        'the config\'s `bands` if it has one)')
    parser.add_argument(
        '--scale',
        nargs='+',
        help='rasters: to uint8 by LO,HI (all bands) or one LO,HI per band, '
        'or pLO,pHI percentiles of a sample (default: uint8 as is, others '
        'p2,p98; the config\'s `scale` if it has one)')
    parser.add_argument(
        '--format',
        choices=sorted(VECTOR_FORMATS),
        help='GIS layer per raster (default gpkg for georeferenced '
        'rasters, none for plain images)')
    parser.add_argument(
        '--keep-crs',
        action='store_true',
        help='GeoJSON in the raster\'s CRS instead of RFC 7946 WGS 84')
    parser.add_argument(
        '--merge-layers',
        action='store_true',
        help='one layer, detections.<format>, for all inputs')
    parser.add_argument(
        '--max-pixels',
        type=int,
        default=DEFAULT_MAX_PIXELS,
        help='untiled: refuse images whose header declares more pixels '
        f'(default {DEFAULT_MAX_PIXELS})')
    parser.add_argument(
        '--launcher', choices=['none', 'pytorch'], default='none',
        help='pytorch: one rank of tools/dist_infer.sh')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override some settings in the used config (xxx=yyy)')
    args = parser.parse_args(argv)
    want = 2 if args.backend == 'pytorch' else 1
    if len(args.model) != want:
        parser.error(f'--backend {args.backend} takes '
                     + ('CONFIG CHECKPOINT' if want == 2 else 'MODEL.onnx')
                     + f', got {len(args.model)} argument(s): {args.model}')
    if args.backend != 'pytorch' and args.cfg_options:
        parser.error('--cfg-options applies to --backend pytorch only')
    if not args.out and not args.out_dir:
        parser.error('give --out PNG or --out-dir DIR')
    if args.tile < 0:
        parser.error(f'--tile must be >= 0, got {args.tile}')
    if args.fuse_conv_bn and (args.backend != 'pytorch'
                              or not args.device.startswith('cpu')):
        parser.error('--fuse-conv-bn applies to --backend pytorch on '
                     '--device cpu only')
    return args


def list_images(path):
    try:
        return list_inputs(path)
    except ValueError as e:
        raise SystemExit(f'error: {e}') from None


def build_backend(args):
    if args.backend in ('onnxruntime', 'openvino'):
        # an exported model, fp32 or INT8 (mmretina.deploy)
        from mmretina.deploy.backends import build_backend as build_runtime
        try:
            backend = build_runtime(args.model[0], args.backend,
                                    args.threads)
        except (ValueError, FileNotFoundError, ImportError) as e:
            raise SystemExit(f'error: {e}') from None
        return backend, backend.classes, backend.palette, {}
    from mmdet.apis import init_detector
    from mmretina.apis import PytorchBackend, optimize_for_cpu
    config, checkpoint = args.model
    check_checkpoint(checkpoint, 'load')
    model = init_detector(
        config, checkpoint, device=args.device, cfg_options=args.cfg_options)
    if args.fuse_conv_bn:
        model = optimize_for_cpu(model)
    backend = PytorchBackend(model)
    meta = model.dataset_meta or {}
    raster_cfg = {k: model.cfg.get(k) for k in ('bands', 'scale')
                  if model.cfg.get(k) is not None}
    return backend, backend.classes, meta.get('palette'), raster_cfg


def init_dist(args):
    """(rank, world size); a gloo (CPU) or NCCL process group."""
    if args.launcher == 'none':
        return 0, 1
    import torch.distributed as dist
    local = int(os.environ.get('LOCAL_RANK', 0))
    if torch.cuda.is_available() and args.device.startswith('cuda'):
        torch.cuda.set_device(local)
        args.device = f'cuda:{local}'
        dist.init_process_group('nccl')
    else:
        dist.init_process_group('gloo')
    return dist.get_rank(), dist.get_world_size()


def main(argv=None):
    args = parse_args(argv)
    images = list_images(args.image)
    if args.out and len(images) > 1:
        raise SystemExit('error: --out names one PNG; use --out-dir for '
                         f'{len(images)} images')
    rank, world_size = init_dist(args)
    backend, classes, palette, raster_cfg = build_backend(args)
    tile = args.tile if args.tile > 0 else 1 << 30  # one window per image
    inferencer = TiledInferencer(
        backend,
        tile=tile,
        overlap=args.overlap if args.tile > 0 else 0,
        batch_size=args.batch,
        merge=args.merge,
        iou_thr=args.merge_iou,
        border=args.border,
        progress=not args.no_progress and args.tile > 0 and rank == 0)
    settings = {k: v for k, v in vars(args).items()
                if k not in ('image', 'out', 'out_dir', 'no_progress',
                             'launcher', 'device', 'threads')}
    settings['model_files'] = [(os.path.abspath(p), os.path.getsize(p),
                                os.path.getmtime(p)) for p in args.model]
    run = InferenceRun(
        inferencer,
        tiled=args.tile > 0,
        classes=classes,
        palette=palette,
        out_dir=args.out_dir,
        out=args.out,
        score_thr=args.score_thr,
        bands=args.bands or raster_cfg.get('bands'),
        scale=args.scale or raster_cfg.get('scale'),
        fmt=args.format,
        keep_crs=args.keep_crs,
        merge_layers=args.merge_layers,
        max_pixels=args.max_pixels,
        settings=settings,
        rank=rank,
        world_size=world_size)
    try:
        run.run(images)
    except (ValueError, OSError) as e:  # RasterError is a ValueError
        raise SystemExit(f'error: {e}') from None
    except ImportError as e:
        raise SystemExit(f'error: {e}') from None


if __name__ == '__main__':
    main()
