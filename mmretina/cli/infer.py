"""Run a detector on images and rasters and write its detections.

  # a raster (GeoTIFF, COG, JPEG 2000, VRT, PNG, ...): read window by window
  # at the model's ground sample distance, a GeoPackage in its CRS
  mmretina predict ortho.tif CONFIG CHECKPOINT --out-dir out/
  # the same into outputs/ (mmdet's image_demo.py default)
  mmretina predict ortho.tif CONFIG CHECKPOINT
  # one image, a PNG with boxes
  mmretina predict IMAGE CONFIG CHECKPOINT --out result.png
  # a folder, an exported model on onnxruntime / OpenVINO
  mmretina predict rasters/ MODEL.onnx --backend onnxruntime --out-dir out/
  # many processes or machines: tools/dist_infer.sh CONFIG CKPT INPUT N

--out-dir receives, per image, <stem>_detections.png (boxes with score >=
--score-thr) and, for a georeferenced raster, <stem>.gpkg (polygons in the
raster's CRS; --format for another); for all images, results.json (COCO
results: every detection, image_id = position in the list, category_id =
label + 1) and detections.csv (image_path,xmin,ymin,xmax,ymax,label,score;
score >= --score-thr). An oriented model (an mmrotate config, rotated
boxes) gives rotated polygons, detections.csv with cx,cy,w,h,angle columns
and rotated rectangles in the PNG. A run killed part way resumes at the
windows it had not finished; a rerun with other output options
(--score-thr, --format) re-writes the outputs from the run's record without
the model. The engine is mmretina.inference.run.InferenceRun; bands,
scaling, nodata and GSD: mmretina.geo.raster
(docs/user_guides/large_rasters.md).

(``tools/infer.py`` and ``mmretina predict`` run :func:`main`.)
"""
import argparse
import os

import torch
from mmengine.config import DictAction

import mmretina  # noqa: F401  (registers mmretina.* modules)
from mmretina.inference.tiled import LazyBackend, TiledInferencer
from mmretina.inference.tiled import DEFAULT_MAX_PIXELS
from mmretina.geo.writers import VECTOR_FORMATS
from mmretina.inference.run import InferenceRun, list_inputs
from mmretina.cli.options import (add_device_arg, add_raster_args,
                                  add_score_thr_arg, add_window_args,
                                  default_device, model_gsd, model_window,
                                  resolve_gsd, resolve_tile)
from mmretina.deploy.backends import BACKENDS
from mmretina.engine.resume import check_checkpoint
from mmretina.utils import closing_distributed


# where the outputs go when neither --out nor --out-dir is given
DEFAULT_OUT_DIR = 'outputs'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog='mmretina predict',
        description='Detect objects in images and rasters (large ones '
        'window by window) and write PNG, COCO JSON, CSV and, for '
        'georeferenced rasters, a GIS layer (GeoPackage; --format for '
        'another)',
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='examples:\n'
        '  mmretina predict demo.jpg configs/retinanet_r50_fpn_1x_coco.py \\\n'
        '      retinanet_r50_fpn_1x_coco.pth --out demo_detections.png\n'
        '  mmretina predict ortho.tif configs/retinanet_r50_fpn_1x_coco.py '
        '\\\n'
        '      retinanet_r50_fpn_1x_coco.pth --tile 400 --out-dir out/\n'
        '  mmretina predict rasters/ model.onnx --backend onnxruntime \\\n'
        '      --tile 400 --out-dir out/\n'
        '  # many rasters, processes or machines: tools/dist_infer.sh\n')
    parser.add_argument('image', help='an image file or a directory of them')
    parser.add_argument(
        'model',
        nargs='+',
        help='CONFIG CHECKPOINT (--backend pytorch) or MODEL.onnx '
        '(--backend onnxruntime)')
    parser.add_argument(
        '--backend', choices=('pytorch', ) + BACKENDS,
        default='pytorch')
    parser.add_argument('--out', help='output PNG (one input image only)')
    parser.add_argument(
        '--out-dir', help='directory for PNGs, results.json, '
        'detections.csv and the GIS layers (GeoPackage unless --format); '
        f'default {DEFAULT_OUT_DIR}/ when --out is not given, as mmdet\'s '
        'demo/image_demo.py')
    add_window_args(parser)
    add_score_thr_arg(parser, 'draw and write to CSV / GIS layers')
    add_device_arg(parser)
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
    add_raster_args(parser)
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
        help='an input read as one window (--tile 0) may have at most this '
        'many pixels (default %(default)s)')
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
        args.out_dir = DEFAULT_OUT_DIR
    if args.device is None:
        args.device = default_device()
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
    """(backend, model config): an exported model's runtime, or the
    PyTorch detector as a :class:`LazyBackend` (loaded when a window has to
    run) and its config (read now: window, GSD, bands, scale)."""
    if args.backend in ('onnxruntime', 'openvino'):
        # an exported model, fp32 or INT8 (mmretina.deploy)
        from mmretina.deploy.backends import build_backend as build_runtime
        try:
            backend = build_runtime(args.model[0], args.backend,
                                    args.threads)
        except (ValueError, FileNotFoundError, ImportError) as e:
            raise SystemExit(f'error: {e}') from None
        return backend, backend.model_cfg
    from mmengine.config import Config
    config, checkpoint = args.model
    check_checkpoint(checkpoint, 'load')
    cfg = Config.fromfile(config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)

    def load():
        from mmretina.deploy.pytorch import (PytorchBackend, init_model,
                                             optimize_for_cpu)
        # an mmrotate config (an oriented model) registers mmrotate first
        model = init_model(cfg, checkpoint, device=args.device)
        if args.fuse_conv_bn:
            model = optimize_for_cpu(model)
        return PytorchBackend(model)

    return LazyBackend(load), cfg


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
    # a gloo rank that exits with its group alive can abort at shutdown
    with closing_distributed():
        _main(parse_args(argv))


def _main(args):
    images = list_images(args.image)
    if args.out and len(images) > 1:
        raise SystemExit('error: --out names one PNG; use --out-dir for '
                         f'{len(images)} images')
    rank, world_size = init_dist(args)
    log = print if rank == 0 else (lambda line: None)
    if args.out_dir == DEFAULT_OUT_DIR and not args.out:
        log(f'outputs go to {DEFAULT_OUT_DIR}/ (--out-dir for another '
            'folder)')
    backend, cfg = build_backend(args)
    tile = resolve_tile(args.tile, model_window(cfg))
    gsd = resolve_gsd(args.gsd, model_gsd(cfg), log)
    inferencer = TiledInferencer(
        backend,
        tile=tile,
        overlap=args.overlap,
        batch_size=args.batch,
        merge=args.merge,
        iou_thr=args.merge_iou,
        border=args.border,
        progress=False)
    # what determines the detections besides the windows, merge and
    # raster reading (InferenceRun adds those): the model
    settings = dict(backend=args.backend, cfg_options=args.cfg_options,
                    fuse_conv_bn=args.fuse_conv_bn)
    settings['model_files'] = [(os.path.abspath(p), os.path.getsize(p),
                                os.path.getmtime(p)) for p in args.model]
    run = InferenceRun(
        inferencer,
        out_dir=args.out_dir,
        out=args.out,
        score_thr=args.score_thr,
        bands=args.bands or cfg.get('bands'),
        scale=args.scale or cfg.get('scale'),
        gsd=gsd,
        fmt=args.format,
        keep_crs=args.keep_crs,
        merge_layers=args.merge_layers,
        max_pixels=args.max_pixels,
        settings=settings,
        rank=rank,
        world_size=world_size,
        progress=not args.no_progress)
    try:
        run.run(images)
    except (ValueError, OSError) as e:  # RasterError is a ValueError
        raise SystemExit(f'error: {e}') from None
    except ImportError as e:
        raise SystemExit(f'error: {e}') from None


if __name__ == '__main__':
    main()
