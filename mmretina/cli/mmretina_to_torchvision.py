"""Convert an mmretina RetinaNet checkpoint in torchvision's layout
(ResNet-50-FPN, v1 or v2, e.g. fine-tuned from a converted model) into a
torchvision state dict (logic: mmretina/models/converters/torchvision.py).

    python tools/model_converters/mmretina_to_torchvision.py \
        work_dirs/finetune/epoch_12.pth tree_finetuned.pth

Load it with ``retinanet_resnet50_fpn(weights=None, weights_backbone=None,
num_classes=K).load_state_dict(torch.load('tree_finetuned.pth'))`` (``_v2``
for v2), or into DeepForest's model (``model.model.load_state_dict``).
"""
import argparse
import sys

from mmretina.models.converters import convert_mmretina_file


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog='mmretina convert to-torchvision',
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='examples:\n'
        '  mmretina convert to-torchvision work_dirs/finetune/epoch_12.pth '
        '\\\n'
        '      tree_finetuned.pth\n')
    p.add_argument('src', help='mmretina / mmengine checkpoint (.pth)')
    p.add_argument('dst', help='torchvision state dict to write '
                   '(.pth, or .safetensors)')
    frozen = p.add_mutually_exclusive_group()
    frozen.add_argument('--frozen-bn', dest='frozen_bn', action='store_true',
                        default=None,
                        help='drop num_batches_tracked (FrozenBatchNorm2d); '
                        'default: as recorded by the conversion, else keep')
    frozen.add_argument('--no-frozen-bn', dest='frozen_bn',
                        action='store_false', help='keep num_batches_tracked')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        dst = convert_mmretina_file(args.src, args.dst,
                                    frozen_bn=args.frozen_bn)
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f'error: {e}')
    print(f'wrote {dst}')


if __name__ == '__main__':
    main()
