"""Export a RetinaNet to ONNX: preprocessing (BGR->RGB, normalisation),
backbone, neck, head, anchors, box decoding and class-aware
NonMaxSuppression in one graph (see mmretina/deploy/export.py). An oriented
model (mmrotate's rotated-retinanet configs: DeltaXYWHTRBBoxCoder,
nms_rotated) is exported up to its NMS candidates; the runtime applies the
rotated NMS (ONNX has no operator for it).

  python tools/deployment/export_onnx.py CONFIG CHECKPOINT --out model.onnx \
      [--dynamic] [--opset 18] [--shape H W] [--check IMAGE]

Without --dynamic the graph takes one image of exactly --shape (default:
the test pipeline's resize scale, padded to pad_size_divisor); with
--dynamic any batch size and any H, W that are multiples of 32. Run the
result with `tools/infer.py IMAGE model.onnx --backend onnxruntime`.
--check IMAGE compares onnxruntime's detections with PyTorch's on IMAGE.
A config whose default_scope is mmrotate needs the rotated extra (pip
install -r requirements/rotated.txt).

(``tools/deployment/export_onnx.py`` and the ``mmretina export`` command run :func:`main`.)
"""
import argparse
import math
import os.path as osp
import sys
import time

from mmengine.config import Config, DictAction

import mmretina  # noqa: F401  (registers mmretina.* modules)
from mmretina.engine.resume import check_checkpoint
from mmretina.utils.extras import require


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog='mmretina export',
        description='Export a RetinaNet to ONNX (with decoding and NMS in '
        'the graph)',
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='examples:\n'
        '  mmretina export configs/retinanet_r50_fpn_1x_coco.py \\\n'
        '      epoch_24.pth --out model.onnx --check demo.jpg\n'
        '  mmretina export configs/retinanet_r50_fpn_1x_coco.py \\\n'
        '      epoch_24.pth --out model_dynamic.onnx --dynamic\n')
    p.add_argument('config')
    p.add_argument('checkpoint')
    p.add_argument('--out', required=True, help='the .onnx file to write')
    p.add_argument('--dynamic', action='store_true',
                   help='dynamic batch size and image height / width')
    p.add_argument('--opset', type=int, default=18, help='ONNX opset (>=18)')
    p.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'),
                   help='input size of a static graph (multiples of 32)')
    p.add_argument('--check', metavar='IMAGE',
                   help='compare onnxruntime with PyTorch on this image')
    p.add_argument('--cfg-options', nargs='+', action=DictAction)
    args = p.parse_args(argv)
    if args.opset < 18:
        p.error(f'--opset {args.opset}: the exporter needs opset >= 18')
    if args.shape and any(s <= 0 or s % 32 for s in args.shape):
        p.error(f'--shape {args.shape}: H and W must be positive multiples '
                'of 32')
    return args


def default_shape(cfg):
    """The test pipeline's resize scale (w, h) as (H, W), padded to 32."""
    from mmdet.utils import get_test_pipeline_cfg
    for t in get_test_pipeline_cfg(cfg):
        if t['type'].split('.')[-1] == 'Resize' and 'scale' in t:
            w, h = t['scale']
            if t.get('keep_ratio', False):
                w = h = max(w, h)
            return (-(-h // 32) * 32, -(-w // 32) * 32)
    return (800, 1344)


def main(argv=None):
    args = parse_args(argv)
    try:  # onnx, and onnxscript for torch's exporter
        require('mmretina export', 'onnx', 'onnxscript', extra='deploy')
    except ImportError as e:
        raise SystemExit(f'error: {e}')
    from mmdet.apis import init_detector
    from mmretina.deploy.export import export_onnx
    from mmretina.utils.mmrotate import require_for_config

    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    try:  # oriented boxes: mmrotate's modules before init_detector
        require_for_config(cfg)
    except ImportError as e:
        raise SystemExit(f'error: {e}')
    check_checkpoint(args.checkpoint, 'load')
    model = init_detector(cfg, args.checkpoint, device='cpu')
    shape = tuple(args.shape) if args.shape else default_shape(cfg)
    start = time.time()
    try:
        export_onnx(model, args.out, cfg, dynamic=args.dynamic,
                    opset=args.opset, example_size=shape)
    except OSError as e:  # the output folder (checked before exporting)
        raise SystemExit(f'error: {e}')
    print(f'wrote {args.out} ({osp.getsize(args.out) / 2**20:.1f} MiB, '
          f'opset {args.opset}, '
          + ('dynamic batch and size' if args.dynamic else
             f'static 1x3x{shape[0]}x{shape[1]}')
          + f') in {time.time() - start:.1f} s')
    if args.check:
        import mmcv
        import torch
        from mmretina.deploy.pytorch import PytorchBackend
        from mmretina.deploy.runtime import OrtBackend
        from mmdet.structures.bbox import get_box_tensor
        img = mmcv.imread(args.check)
        ref = PytorchBackend(model)([img])[0]
        got = OrtBackend(args.out)([img])[0]
        n = min(len(ref), len(got))
        diff = (get_box_tensor(ref.bboxes)[:n] - got.bboxes[:n]).abs()
        box = float(diff[:, :4].max()) if n else 0
        score = float((ref.scores[:n] - got.scores[:n]).abs().max()) \
            if n else 0
        angle = ''
        if got.bboxes.shape[-1] == 5:
            # the same rectangle whatever multiple of pi separates angles
            d = (diff[:, 4] + math.pi / 2) % math.pi - math.pi / 2
            angle = (f', max |angle diff| '
                     f'{float(d.abs().max()) if n else 0:.2e} rad')
        same = len(ref) == len(got) and bool(
            torch.equal(ref.labels, got.labels))
        print(f'check on {args.check}: PyTorch {len(ref)} detections, '
              f'onnxruntime {len(got)}; max |box diff| {box:.2e} px'
              f'{angle}, max |score diff| {score:.2e} (in score order)'
              + ('' if same else '; counts or labels DIFFER'))
        if not same:
            return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
