"""Draw training samples as the model sees them: after the training
pipeline (resize, crop, flips, colour jitter, ...), with their boxes.

    python tools/analysis_tools/browse_dataset.py CONFIG --output-dir DIR \\
        [--max-images N] [--cfg-options ...]

This runs mmdet 3.3.0's own ``tools/analysis_tools/browse_dataset.py``
(shipped in the mmdet wheel under ``mmdet/.mim/tools/``) unchanged, after
importing ``mmretina`` (so ``mmretina.*`` types resolve even in a config
without ``custom_imports``). Added on top:

* with ``--output-dir`` nothing is shown on screen (mmdet would open a
  window per image, which fails without a display); ``--show`` shows too;
* ``--max-images N`` draws only the first N images of the training set
  (``train_dataloader.dataset.indices=N``).

Every other argument (``--show-interval``, ``--cfg-options``) is mmdet's.
``tools/analysis_tools/browse_dataset.py`` runs :func:`main`.
"""
import argparse
import os.path as osp
import runpy
import sys


def mmdet_script() -> str:
    """Path of mmdet's browse_dataset.py inside the installed wheel."""
    import mmdet
    path = osp.join(osp.dirname(mmdet.__file__), '.mim', 'tools',
                    'analysis_tools', 'browse_dataset.py')
    if not osp.isfile(path):
        raise SystemExit(
            f'error: {path} does not exist: this mmdet {mmdet.__version__} '
            'installation lacks its tools (mmdet/.mim/tools); reinstall mmdet '
            '3.3.0 from its wheel.')
    return path


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog='mmretina analyze browse',
        description=__doc__.split('\n\n')[0], add_help=True,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='Other arguments are passed to mmdet\'s browse_dataset.py\n'
        '(--show-interval, --cfg-options).\n\nexamples:\n'
        '  mmretina analyze browse configs/retinanet_r50_fpn_1x_coco.py '
        '\\\n'
        '      --output-dir work_dirs/browse --max-images 20\n')
    p.add_argument('config', help='training config')
    p.add_argument('--output-dir', default=None,
                   help='write one PNG/JPG per training image here')
    p.add_argument('--max-images', type=int, default=None,
                   help='only the first N images of the training set')
    p.add_argument('--show', action='store_true',
                   help='also show each image on screen')
    return p.parse_known_args(argv)


def main(argv=None) -> None:
    args, rest = parse_args(argv)
    if args.output_dir is None and not args.show:
        raise SystemExit('error: give --output-dir DIR (or --show to look at '
                         'the images on screen).')
    if args.max_images is not None and args.max_images < 1:
        raise SystemExit('error: --max-images must be >= 1.')
    import mmretina  # noqa: F401  (registers the mmretina.* modules)
    script = mmdet_script()
    mmdet_argv = [script, args.config]
    if args.output_dir is not None:
        mmdet_argv += ['--output-dir', args.output_dir]
    if not args.show:
        mmdet_argv.append('--not-show')
    options = []
    if '--cfg-options' in rest:
        i = rest.index('--cfg-options')
        j = i + 1
        while j < len(rest) and not rest[j].startswith('--'):
            j += 1
        options, rest = rest[i + 1:j], rest[:i] + rest[j:]
    if args.max_images is not None:
        options.append(f'train_dataloader.dataset.indices={args.max_images}')
    mmdet_argv += rest
    if options:
        mmdet_argv += ['--cfg-options', *options]
    sys.argv = mmdet_argv
    runpy.run_path(script, run_name='__main__')


if __name__ == '__main__':
    main()
