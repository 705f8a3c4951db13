"""INT8 (static QDQ) quantization of a model exported by export_onnx.py,
calibrated on your training images, checked on a held-out split
(mmretina/deploy/quantize.py).

  python tools/deployment/quantize.py CONFIG model.onnx \
      --calib-data data/annotations/train.json --out model.int8.onnx \
      [--method minmax|entropy|percentile] [--num-calib 32] \
      [--val-ann data/annotations/val.json] [--max-drop 0.02] \
      [--exclude bbox_head.retina_cls ...] [--threads 1]

The model must be static (exported without --dynamic). With --val-ann it
prints fp32 vs INT8 mAP50, keeps in float the conv groups measured to
cost accuracy, and writes nothing if the drop stays above --max-drop.

(``tools/deployment/quantize.py`` and the ``mmretina quantize`` command run :func:`main`.)
"""
import argparse
import os.path as osp
import sys

from mmengine.config import Config


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog='mmretina quantize',
        description='INT8 quantization of an exported mmretina model',
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='examples:\n'
        '  mmretina quantize configs/retinanet_r50_fpn_1x_coco.py \\\n'
        '      model.onnx --calib-data data/annotations/train.json \\\n'
        '      --out model.int8.onnx --val-ann data/annotations/val.json\n')
    p.add_argument('config', help='the config of the exported model '
                   '(its dataset folders locate the images of COCO jsons)')
    p.add_argument('model', help='static fp32 .onnx from export_onnx.py')
    p.add_argument('--calib-data', required=True,
                   help='folder of training images or a COCO json')
    p.add_argument('--out', required=True, help='the INT8 .onnx to write')
    p.add_argument('--method', default='minmax',
                   choices=['minmax', 'entropy', 'percentile'],
                   help='activation range calibration')
    p.add_argument('--num-calib', type=int, default=32,
                   help='calibration images (evenly spread)')
    p.add_argument('--val-ann', help='held-out COCO json: fp32 vs INT8 '
                   'mAP50, sensitivity, refusal above --max-drop')
    p.add_argument('--max-drop', type=float, default=0.02,
                   help='largest mAP50 drop accepted (default %(default)s)')
    p.add_argument('--exclude', nargs='+', default=[],
                   help='conv groups kept float, e.g. bbox_head.retina_cls')
    p.add_argument('--reduce-range', action='store_true',
                   help='7-bit weights (saturation-free u8s8 on AVX2 CPUs '
                   'without VNNI)')
    p.add_argument('--weight-type', choices=['int8', 'uint8'],
                   default='int8')
    p.add_argument('--threads', type=int, default=None,
                   help='onnxruntime threads for calibration / evaluation')
    args = p.parse_args(argv)
    if args.num_calib < 1:
        p.error('--num-calib must be >= 1')
    if osp.abspath(args.out) == osp.abspath(args.model):
        p.error('--out must differ from the fp32 model')
    return args


def main(argv=None):
    args = parse_args(argv)
    from mmretina.deploy.quantize import quantize_model
    cfg = Config.fromfile(args.config)
    dirs = []
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        ds = cfg.get(key, {}).get('dataset', {})
        while 'dataset' in ds:
            ds = ds['dataset']
        img = (ds.get('data_prefix') or {}).get('img', '')
        if ds.get('data_root') is not None:
            dirs.append(osp.join(ds['data_root'], img))
    try:
        report = quantize_model(
            args.model, args.out, args.calib_data, method=args.method,
            num_calib=args.num_calib, val_ann=args.val_ann,
            max_drop=args.max_drop, exclude=args.exclude,
            reduce_range=args.reduce_range, weight_type=args.weight_type,
            extra_dirs=dirs, threads=args.threads)
    except (ValueError, FileNotFoundError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    for line in report.lines():
        print(line)
    if not report['written']:
        print(f'error: INT8 mAP50 {report["int8_map50"]:.3f} is '
              f'{report["drop"]:.3f} below fp32 ({report["fp32_map50"]:.3f})'
              f', more than --max-drop {args.max_drop}, with every conv '
              f'group tried in float; {args.out} NOT written. Try --method '
              'percentile/entropy, more --num-calib, --reduce-range, or a '
              'larger --max-drop', file=sys.stderr)
        return 1
    print(f'wrote {args.out}' + ('' if args.val_ann else
                                 ' (accuracy not checked: no --val-ann)'))
    return 0


if __name__ == '__main__':
    sys.exit(main())
