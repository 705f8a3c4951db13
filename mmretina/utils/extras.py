"""The optional dependencies, by extra, and the one guard that imports them.

An extra is a requirements file beside the core install: ``geo`` (rasters
and GIS layers: rasterio, geopandas, pyogrio, shapely, pyproj), ``deploy``
(ONNX export and its runtimes: onnx, onnxscript, onnxruntime, openvino),
``rotated`` (oriented boxes: mmrotate-dev) and ``convert`` (weights
published as .safetensors). No module of mmretina imports
them when it is imported; the code that needs one calls :func:`require`,
whose error names the feature, the missing package and the command that
installs it.
"""
import importlib
from types import ModuleType
from typing import Tuple, Union

__all__ = ['INSTALL', 'require']

# extra -> how to install it (every message about a missing package ends
# with this)
INSTALL = {
    'geo': 'pip install -r requirements/geo.txt (or bash tools/install.sh)',
    'deploy': 'pip install -r requirements/deploy.txt',
    'rotated': 'pip install -r requirements/rotated.txt (mmrotate-dev '
               '1.0.1; or bash tools/install.sh)',
    'convert': 'pip install -r requirements/convert.txt',
}


def require(feature: str, *modules: str,
            extra: str) -> Union[ModuleType, Tuple[ModuleType, ...]]:
    """Import ``modules`` for ``feature``, or raise an ImportError that
    reads ``'<feature> needs <module> (the <extra> extra): <install>'``.

    Args:
        feature (str): what needs them, as the user asked for it (e.g.
            ``'x.onnx: --backend onnxruntime'``).
        *modules (str): the modules, imported in this order.
        extra (str): a key of :data:`INSTALL`.

    Returns:
        module or tuple of modules: one per name, in order (a single
        module when one name is given).
    """
    if extra not in INSTALL:
        raise ValueError(f'unknown extra {extra!r}: one of {sorted(INSTALL)}')
    out = []
    for name in modules:
        try:
            out.append(importlib.import_module(name))
        except ImportError as e:
            raise ImportError(f'{feature} needs {name} (the {extra} extra): '
                              f'{INSTALL[extra]}') from e
    return out[0] if len(out) == 1 else tuple(out)
