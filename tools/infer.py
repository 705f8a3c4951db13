# Run a detector on images and write its detections.
#
#   # one image, a PNG with boxes (the config's test pipeline resizes it)
#   python tools/infer.py IMAGE CONFIG CHECKPOINT --out result.png
#   # large images, window by window, all outputs into a directory
#   python tools/infer.py IMAGE_OR_DIR CONFIG CHECKPOINT --out-dir DIR \
#       --tile 400 --overlap 0.25 [--batch 4] [--merge nms|wbf]
#   # an exported model (tools/deployment/export_onnx.py) with onnxruntime
#   python tools/infer.py IMAGE_OR_DIR MODEL.onnx --backend onnxruntime ...
#
# --out-dir receives, per image, <stem>.png (boxes with score >= --score-thr)
# and, for a GeoTIFF with a geotransform, <stem>.geojson (map coordinates);
# for all images, results.json (COCO results: every detection, image_id =
# position in the list, category_id = label + 1) and detections.csv
# (image_path,xmin,ymin,xmax,ymax,label,score; score >= --score-thr).
#
# PyTorch uses mmdet's `init_detector`; each window (or the whole image)
# goes through the config's test pipeline as in `inference_detector`.
# Importing `mmretina` registers our modules and lets torch>=2.6 load full
# mmengine checkpoints (weights_only=True).
import argparse
import glob
import os
import os.path as osp

import torch  # noqa: E402
from mmengine.config import DictAction  # noqa: E402

import mmretina  # noqa: E402,F401  (registers mmretina.* modules)
from mmretina.apis import (TiledInferencer, draw_detections,  # noqa: E402
                           load_image, read_geotransform, write_coco_json,
                           write_csv, write_geojson)
from mmretina.utils import register_safe_checkpoint_globals  # noqa: E402
from mmretina.utils.resume import check_checkpoint  # noqa: E402

IMAGE_EXTS = ('.png', '.jpg', '.jpeg', '.tif', '.tiff', '.bmp')


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
        '--backend', choices=['pytorch', 'onnxruntime'], default='pytorch')
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
        '--threads', type=int, default=None, help='onnxruntime threads')
    parser.add_argument(
        '--no-progress', action='store_true', help='no progress bar')
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
    if args.backend == 'onnxruntime' and args.cfg_options:
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
    if osp.isdir(path):
        files = sorted(
            f for f in glob.glob(osp.join(path, '*'))
            if f.lower().endswith(IMAGE_EXTS))
        if not files:
            raise SystemExit(f'error: no image ({", ".join(IMAGE_EXTS)}) '
                             f'in directory {path}')
        return files
    if not osp.isfile(path):
        raise SystemExit(f'error: image {path!r} does not exist')
    return [path]


def build_backend(args):
    if args.backend == 'onnxruntime':
        from mmretina.apis.onnx_runtime import OrtBackend
        backend = OrtBackend(args.model[0], num_threads=args.threads)
        return backend, backend.classes, backend.palette
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
    return backend, backend.classes, meta.get('palette')


def main(argv=None):
    args = parse_args(argv)
    register_safe_checkpoint_globals()
    images = list_images(args.image)
    if args.out and len(images) > 1:
        raise SystemExit('error: --out names one PNG; use --out-dir for '
                         f'{len(images)} images')
    backend, classes, palette = build_backend(args)
    tile = args.tile if args.tile > 0 else 1 << 30  # one window per image
    inferencer = TiledInferencer(
        backend,
        tile=tile,
        overlap=args.overlap if args.tile > 0 else 0,
        batch_size=args.batch,
        merge=args.merge,
        iou_thr=args.merge_iou,
        border=args.border,
        progress=not args.no_progress and args.tile > 0)
    results = []
    for path in images:
        img = load_image(path)
        inst = inferencer(img)
        res = dict(
            image_path=path,
            bboxes=inst.bboxes.cpu().numpy(),
            scores=inst.scores.cpu().numpy(),
            labels=inst.labels.cpu().numpy())
        results.append(res)
        keep = res['scores'] >= args.score_thr
        shown = {k: (v[keep] if k != 'image_path' else v)
                 for k, v in res.items()}
        png = args.out or osp.join(
            args.out_dir,
            osp.splitext(osp.basename(path))[0] + '_detections.png')
        drawn = draw_detections(png, img, res, classes, args.score_thr,
                                palette)
        windows = len(inst.metainfo.get('windows', [None]))
        print(f'{drawn} detections with score >= {args.score_thr} '
              f'(of {len(res["scores"])}) drawn into {png}'
              + (f' ({windows} windows of {args.tile} px)'
                 if args.tile > 0 else ''))
        if args.out_dir:
            geo = read_geotransform(path)
            if geo is not None:
                gj = osp.join(args.out_dir,
                              osp.splitext(osp.basename(path))[0] +
                              '.geojson')
                write_geojson(gj, shown, geo, classes)
                print(f'  map coordinates (EPSG:{geo.epsg}) -> {gj}')
        if len(images) == 1 or len(res['scores']) < 50:
            for box, score, label in zip(shown['bboxes'], shown['scores'],
                                         shown['labels']):
                name = classes[label] if label < len(classes) else str(label)
                x1, y1, x2, y2 = (float(v) for v in box)
                print(f'  {name}\t{float(score):.3f}\t'
                      f'[{x1:.1f}, {y1:.1f}, {x2:.1f}, {y2:.1f}]')
    if args.out_dir:
        os.makedirs(args.out_dir, exist_ok=True)
        js = osp.join(args.out_dir, 'results.json')
        write_coco_json(js, results)
        csv_path = osp.join(args.out_dir, 'detections.csv')
        write_csv(csv_path, [
            {k: (v[r['scores'] >= args.score_thr]
                 if k != 'image_path' else v)
             for k, v in r.items()} for r in results
        ], classes)
        print(f'wrote {js} (all detections) and {csv_path} '
              f'(score >= {args.score_thr})')


if __name__ == '__main__':
    main()
