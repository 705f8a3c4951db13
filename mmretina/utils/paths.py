"""Where the repository's files are: a checkout's top folder, or the
``.mim`` folder an installed mmretina ships its ``configs/`` and ``tools/``
in (as mmdet does)."""
import os.path as osp

__all__ = ['resource_root']


def resource_root() -> str:
    """The folder holding ``configs/`` and ``tools/``: the checkout this
    package was imported from, else the installed package's ``.mim``.

    Raises FileNotFoundError when neither has ``configs/``."""
    package = osp.dirname(osp.dirname(osp.abspath(__file__)))
    for root in (osp.dirname(package), osp.join(package, '.mim')):
        if osp.isdir(osp.join(root, 'configs')):
            return root
    raise FileNotFoundError(
        f'neither {osp.dirname(package)} nor {package}/.mim holds configs/: '
        'reinstall mmretina (pip install .) or run from a checkout')
