"""The command lines of mmretina: each module holds the argparse ``main`` of
one tool; ``tools/<same path>.py`` and the ``mmretina-*`` console commands
call it. The work is done by library functions these modules import."""
import os.path as osp
import runpy
import sys

__all__ = ['run_shipped_tool', 'infer', 'export_onnx']


def run_shipped_tool(relpath: str) -> None:
    """Run ``tools/<relpath>`` (of the checkout, or the copy an installed
    mmretina ships in ``mmretina/.mim/tools``) as ``__main__`` with this
    command's arguments -- for the tools whose ``main`` is not yet in this
    package (as ``mim run`` does for mmdet's)."""
    from mmretina.utils.paths import resource_root
    path = osp.join(resource_root(), 'tools', relpath)
    if not osp.isfile(path):
        raise SystemExit(f'error: {path} does not exist: reinstall mmretina '
                         '(its wheel ships tools/ in mmretina/.mim).')
    sys.argv = [path] + sys.argv[1:]
    runpy.run_path(path, run_name='__main__')


def infer() -> None:
    """``mmretina-infer``: ``tools/infer.py``."""
    run_shipped_tool('infer.py')


def export_onnx() -> None:
    """``mmretina-export-onnx``: ``tools/deployment/export_onnx.py``."""
    run_shipped_tool(osp.join('deployment', 'export_onnx.py'))
