"""Test (and evaluate) a detector with mmretina. Same arguments and behaviour
as mmdet 3.3.0's tools/test.py, plus:
  * `mmretina` is imported first (registers the `mmretina.*` modules and
    makes mmengine load its checkpoints under torch>=2.6's weights_only
    default, so CHECKPOINT loads);
  * without CUDA, a distributed launch runs CPU processes with gloo;
  * a config of mmrotate's scope (oriented boxes) gets mmrotate's modules
    registered first (:func:`mmretina.utils.mmrotate.require_for_config`).
Run it from an installed mmretina (tools/install.sh), or with the
repository on PYTHONPATH as tools/dist_test.sh does (mmdet's habit).

``tools/test.py`` and ``mmretina test`` run :func:`main`.
"""
import argparse
import os
import os.path as osp
import warnings
from copy import deepcopy

from mmengine import ConfigDict  # noqa: E402
from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

from mmdet.engine.hooks.utils import trigger_visualization_hook  # noqa: E402
from mmdet.evaluation import DumpDetResults  # noqa: E402
from mmdet.registry import RUNNERS  # noqa: E402
from mmdet.utils import setup_cache_size_limit_of_dynamo  # noqa: E402

import mmretina  # noqa: E402,F401  (registers mmretina.* modules)
from mmretina.utils.mmrotate import require_for_config  # noqa: E402
from mmretina.cli.options import (add_device_arg,  # noqa: E402
                                  add_window_args, default_device)
from mmretina.deploy.backends import BACKENDS  # noqa: E402
from mmretina.engine.resume import check_checkpoint  # noqa: E402
from mmretina.utils import (closing_distributed,  # noqa: E402
                            setup_cpu_distributed)


# TODO: support fuse_conv_bn and format_only
def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog='mmretina test', description='MMDet test (and eval) a model',
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='examples:\n'
        '  mmretina test configs/retinanet_r50_fpn_1x_coco.py \\\n'
        '      work_dirs/r50/epoch_12.pth --work-dir work_dirs/r50_test\n'
        '  mmretina test configs/retinanet_r50_fpn_1x_coco.py \\\n'
        '      model.int8.onnx --backend onnxruntime\n'
        '  # N processes: tools/dist_test.sh CONFIG CHECKPOINT N\n')
    parser.add_argument('config', help='test config file path')
    parser.add_argument(
        'checkpoint',
        help='checkpoint file, or an exported model (.onnx, fp32 or INT8) '
        'scored by --backend with the same datasets and metrics')
    # exported models (mmretina.deploy)
    parser.add_argument(
        '--backend', choices=BACKENDS, default=None,
        help='runtime of an exported .onnx model (default: onnxruntime)')
    parser.add_argument(
        '--threads', type=int, default=None,
        help='intra-op threads of the --backend runtime')
    parser.add_argument(
        '--work-dir',
        help='the directory to save the file containing evaluation metrics')
    parser.add_argument(
        '--out',
        type=str,
        help='dump predictions to a pickle file for offline evaluation')
    parser.add_argument(
        '--show', action='store_true', help='show prediction results')
    parser.add_argument(
        '--show-dir',
        help='directory where painted images will be saved. '
        'If specified, it will be automatically saved '
        'to the work_dir/timestamp/show_dir')
    parser.add_argument(
        '--wait-time', type=float, default=2, help='the interval of show (s)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override some settings in the used config, the key-value pair '
        'in xxx=yyy format will be merged into config file. If the value to '
        'be overwritten is a list, it should be like key="[a,b]" or key=a,b '
        'It also allows nested list/tuple values, e.g. key="[(a,b),(c,d)]" '
        'Note that the quotation marks are necessary and that no white space '
        'is allowed.')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    parser.add_argument('--tta', action='store_true')
    # large images: detect window by window, merge, evaluate (mmretina)
    # window flags shared with `mmretina predict` / `evaluate`
    # (mmretina.cli.options); here --tile auto (or 0) is mmdet's test loop,
    # each dataset image through the config's pipeline, and --tile N
    # evaluates window by window
    add_window_args(parser)
    add_device_arg(parser)
    # When using PyTorch version >= 2.0.0, the `torch.distributed.launch`
    # will pass the `--local-rank` parameter to `tools/train.py` instead
    # of `--local_rank`.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    args.tile = 0 if args.tile == 'auto' else args.tile
    return args


def main(argv=None):
    # a gloo rank that exits with its group alive can abort at shutdown
    with closing_distributed():
        _main(parse_args(argv))


def _main(args):

    # Reduce the number of repeated compilations and improve
    # testing speed.
    setup_cache_size_limit_of_dynamo()

    # load config
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)

    # work_dir is determined in this priority: CLI > segment in file > filename
    if args.work_dir is not None:
        # update configs according to CLI args if args.work_dir is not None
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        # use config filename as default work_dir if cfg.work_dir is None
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])

    # oriented boxes: mmrotate's modules registered before any model
    require_for_config(cfg)

    if args.checkpoint.endswith('.onnx') or args.backend:
        # an exported model: the config's datasets, loop and metrics, the
        # runtime in place of the detector (mmretina.deploy.backends)
        from mmretina.deploy.backends import use_exported_model
        if args.tta or args.launcher != 'none':
            raise SystemExit('error: an exported model is evaluated '
                             'without --tta / a launcher')
        if args.tile:
            from mmretina.evaluation.tiled import tiled_evaluate
            from mmretina.deploy.backends import build_backend
            try:
                runtime = build_backend(args.checkpoint, args.backend
                                        or 'onnxruntime', args.threads)
            except (ValueError, FileNotFoundError) as e:
                raise SystemExit(f'error: {e}') from None
            metrics = tiled_evaluate(
                cfg, args.checkpoint, args.tile, args.overlap,
                args.batch, args.merge, out=args.out, backend=runtime)
            print('tiled evaluation (tile %d px, overlap %s, merge %s): %s'
                  % (args.tile, args.overlap, args.merge, metrics))
            return
        try:
            use_exported_model(cfg, args.checkpoint, args.backend
                               or 'onnxruntime', args.threads)
        except (ValueError, FileNotFoundError) as e:
            raise SystemExit(f'error: {e}') from None
    else:
        cfg.load_from = args.checkpoint
        check_checkpoint(args.checkpoint, 'load')

    if args.tile:
        # window by window over each image of the test set (mmretina.inference)
        from mmretina.evaluation.tiled import tiled_evaluate
        if args.tta or args.show or args.show_dir or args.launcher != 'none':
            raise SystemExit('error: --tile runs in one process without '
                             '--tta / --show / --show-dir')
        device = args.device or default_device()
        metrics = tiled_evaluate(
            cfg, args.checkpoint, args.tile, args.overlap, args.batch,
            args.merge, device=device, out=args.out)
        print('tiled evaluation (tile %d px, overlap %s, merge %s): %s' %
              (args.tile, args.overlap, args.merge, metrics))
        return

    if args.show or args.show_dir:
        cfg = trigger_visualization_hook(cfg, args)

    if args.tta:

        if 'tta_model' not in cfg:
            warnings.warn('Cannot find ``tta_model`` in config, '
                          'we will set it as default.')
            cfg.tta_model = dict(
                type='DetTTAModel',
                tta_cfg=dict(
                    nms=dict(type='nms', iou_threshold=0.5), max_per_img=100))
        if 'tta_pipeline' not in cfg:
            warnings.warn('Cannot find ``tta_pipeline`` in config, '
                          'we will set it as default.')
            test_data_cfg = cfg.test_dataloader.dataset
            while 'dataset' in test_data_cfg:
                test_data_cfg = test_data_cfg['dataset']
            cfg.tta_pipeline = deepcopy(test_data_cfg.pipeline)
            flip_tta = dict(
                type='TestTimeAug',
                transforms=[
                    [
                        dict(type='RandomFlip', prob=1.),
                        dict(type='RandomFlip', prob=0.)
                    ],
                    [
                        dict(
                            type='PackDetInputs',
                            meta_keys=('img_id', 'img_path', 'ori_shape',
                                       'img_shape', 'scale_factor', 'flip',
                                       'flip_direction'))
                    ],
                ])
            cfg.tta_pipeline[-1] = flip_tta
        cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)
        cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline

    # without CUDA: gloo backend, process group and DDP without device_ids
    setup_cpu_distributed(cfg)

    # build the runner from config
    if 'runner_type' not in cfg:
        # build the default runner
        runner = Runner.from_cfg(cfg)
    else:
        # build customized runner from the registry
        # if 'runner_type' is set in the cfg
        runner = RUNNERS.build(cfg)

    # add `DumpResults` dummy metric
    if args.out is not None:
        assert args.out.endswith(('.pkl', '.pickle')), \
            'The dump file must be a pkl file.'
        runner.test_evaluator.metrics.append(
            DumpDetResults(out_file_path=args.out))

    # start testing
    runner.test()


if __name__ == '__main__':
    main()
