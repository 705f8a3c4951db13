"""The ``mmretina`` command: one entry point, a command per job.

    mmretina <command> [<subcommand>] ARGS     # e.g. mmretina predict --help
    mmretina --version
    python -m mmretina ...                     # the same

Each command is the ``main(argv)`` of one module of :mod:`mmretina.cli`
(the module ``tools/`` runs too, under mmdet's script names); only the
chosen command's module is imported, so that ``--help`` and ``--version``
do not wait for the modules of the other commands.
"""
import argparse
import importlib
import sys
from importlib import metadata
from typing import Dict, List, Optional, Tuple, Union

__all__ = ['COMMANDS', 'main', 'version_line']

# name -> (module, one line) or a group: name -> {subcommand -> ...}.
# The tools/ script each module backs is named in docs/user_guides/cli.md.
Command = Tuple[str, str]
COMMANDS: Dict[str, Union[Command, Dict[str, Command]]] = {
    'predict': ('mmretina.cli.infer',
                'detect objects in images and rasters'),
    'train': ('mmretina.cli.train', 'train a detector from a config'),
    'test': ('mmretina.cli.test',
             "test (and evaluate) a model on a config's test set"),
    'evaluate': ('mmretina.cli.eval_field',
                 'precision and recall at IoU 0.4 per raster, and mAP'),
    'convert': {
        'labels': ('mmretina.cli.to_coco',
                   'Pascal-VOC XML, a CSV of boxes or YOLO txt to COCO json'),
        'raster': ('mmretina.cli.raster_to_coco',
                   'chips and COCO json from rasters and vector labels'),
        'deepforest': ('mmretina.cli.prepare_deepforest',
                       'a COCO tree-crown dataset from the DeepForest '
                       'wheel'),
        'from-torchvision': ('mmretina.cli.torchvision_to_mmretina',
                             'torchvision / DeepForest weights to an '
                             'mmretina checkpoint'),
        'to-torchvision': ('mmretina.cli.mmretina_to_torchvision',
                           'an mmretina checkpoint to a torchvision state '
                           'dict'),
    },
    'dota': {
        'split': ('mmretina.cli.dota_split',
                  "DOTA images and labels cut into patches (mmrotate's "
                  'img_split rules)'),
    },
    'export': ('mmretina.cli.export_onnx',
               'export a model to ONNX (decoding and NMS in the graph)'),
    'quantize': ('mmretina.cli.quantize',
                 'INT8 quantization of an exported model'),
    'analyze': {
        'anchors': ('mmretina.cli.analyze_anchors',
                    "how well a config's anchors fit its training boxes"),
        'logs': ('mmretina.cli.analyze_logs',
                 'training curves and iteration times from JSON logs'),
        'loss-cdf': ('mmretina.cli.loss_cdf',
                     'focal loss distribution of the anchors (Figure 4)'),
        'ablate': ('mmretina.cli.ablate',
                   "rerun one of the paper's ablations (Table 1)"),
        'browse': ('mmretina.cli.browse_dataset',
                   'draw training samples after the training pipeline'),
        'plot-layer': ('mmretina.cli.plot_layer',
                       'draw vector layers over their raster'),
        'cpu': ('mmretina.cli.cpu_info',
                'the CPU, and how long a config trains on it'),
    },
    'claim-work-dir': ('mmretina.cli.claim_work_dir',
                       'a work dir safe to --resume into'),
    'env': ('mmretina.cli.env',
            'versions, runtimes, GDAL and the CPU, for bug reports'),
}

# one line per group in the command list
_GROUP_HELP = {
    'convert': 'labels, rasters and weights from other formats',
    'analyze': 'anchors, logs, loss distribution, ablations, datasets',
    'dota': 'DOTA data for oriented detectors: patches of large images',
}

_EXAMPLES = """\
examples:
  mmretina convert raster ortho.tif crowns.gpkg --out-dir data/chips
  mmretina train configs/retinanet_r50_fpn_1x_coco.py
  mmretina predict ortho.tif configs/retinanet_r50_fpn_1x_coco.py \\
      work_dirs/retinanet_r50_fpn_1x_coco/epoch_12.pth --out-dir out/
  mmretina env
"""


def version_line() -> str:
    """``mmretina X (mmdet X, mmcv X, mmengine X, torch X)``: versions read
    from the installed packages' metadata, none of them imported."""
    from mmretina.version import __version__
    deps = []
    for dist in ('mmdet', 'mmcv', 'mmengine', 'torch'):
        try:
            deps.append(f'{dist} {metadata.version(dist)}')
        except metadata.PackageNotFoundError:
            deps.append(f'{dist} not installed')
    return f'mmretina {__version__} ({", ".join(deps)})'


def _parser(prog: str, commands: dict) -> argparse.ArgumentParser:
    """The help and the errors of one level of commands (its dispatch is
    :func:`_dispatch`: argparse would import nothing lazily)."""
    top = prog == 'mmretina'
    parser = argparse.ArgumentParser(
        prog=prog,
        usage=f'{prog} {"[--version] " if top else ""}<command> ...',
        description=('RetinaNet for MMDetection 3.x, from rasters to '
                     'answers.' if top else _GROUP_HELP[prog.split()[-1]]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(_EXAMPLES if top else '')
        + f'\n`{prog} <command> --help` shows the options of one command.')
    if top:
        parser.add_argument('--version', action='store_true',
                            help='print the versions of mmretina, mmdet, '
                            'mmcv, mmengine and torch')
    sub = parser.add_subparsers(title='commands', metavar='<command>',
                                dest='command')
    for name, entry in commands.items():
        sub.add_parser(name, add_help=False,
                       help=entry[1] if isinstance(entry, tuple)
                       else _GROUP_HELP[name])
    return parser


def _dispatch(argv: List[str], prog: str, commands: dict) -> int:
    parser = _parser(prog, commands)
    if not argv:
        parser.print_help(sys.stderr)
        return 2
    if argv[0] == '--version' and prog == 'mmretina':
        print(version_line())
        return 0
    if argv[0] not in commands:
        # -h / --help: the list of commands (exit 0); anything else: the
        # usage and "invalid choice ... (choose from ...)" (exit 2)
        parser.parse_args(argv[:1])
        parser.print_help(sys.stderr)  # e.g. `mmretina --`
        return 2
    name, rest = argv[0], argv[1:]
    entry = commands[name]
    if isinstance(entry, dict):
        return _dispatch(rest, f'{prog} {name}', entry)
    module = importlib.import_module(entry[0])
    status = module.main(rest)
    return 0 if status is None else status


def main(argv: Optional[List[str]] = None) -> int:
    """Run ``mmretina ARGV`` (default: ``sys.argv[1:]``); the exit status.

    Each command's parser names itself ``mmretina <command>`` in its usage
    line, and its ``--help`` ends with examples."""
    return _dispatch(sys.argv[1:] if argv is None else list(argv),
                     'mmretina', COMMANDS)


if __name__ == '__main__':
    sys.exit(main())
