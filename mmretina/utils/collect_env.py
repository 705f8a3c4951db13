"""What a bug report needs to know about this machine (``mmretina env``):
the versions of Python, torch, mmcv, mmdet and mmengine, whether mmcv's
compiled ops load, GDAL and its drivers, the GIS packages, the exported-
model runtimes, and the CPU with the extensions that decide convolution
speed. As mmdet's ``collect_env`` and ``sahi env``, shorter; a missing
package reads "not installed" and a broken one says why, so that the report
itself never fails.
"""
import importlib
import os.path as osp
import platform
import sys
from collections import OrderedDict
from typing import Any, Callable, Dict

__all__ = ['collect_env', 'format_env', 'NOT_INSTALLED', 'GDAL_DRIVERS']

NOT_INSTALLED = 'not installed'
# GDAL drivers mmretina's raster and layer I/O relies on
GDAL_DRIVERS = ('GTiff', 'COG', 'JP2OpenJPEG', 'GPKG')


def _add(env: Dict[str, Any], key: str, package: str,
         probe: Callable[[], Any]) -> None:
    """``env[key] = probe()``; a dict from ``probe`` adds its entries. A
    failure becomes the value of ``key``: ``not installed`` when ``package``
    itself is missing, else the error."""
    try:
        value = probe()
    except ModuleNotFoundError as e:
        value = (NOT_INSTALLED if e.name == package else
                 f'import failed: {e}')
    except Exception as e:  # a report must not crash on a broken package
        value = f'error: {type(e).__name__}: {e}'
    if isinstance(value, dict):
        env.update(value)
    else:
        env[key] = value


def _version(module: str) -> Callable[[], str]:
    return lambda: importlib.import_module(module).__version__


def _torch() -> dict:
    import torch
    from .cpu_info import cpu_capability
    if torch.version.cuda:
        build = f'CUDA {torch.version.cuda}, cuDNN ' \
            f'{torch.backends.cudnn.version()}'
    else:
        build = 'CPU only'
    out = OrderedDict([
        ('PyTorch', torch.__version__),
        ('PyTorch build', f'{build}, MKL '
         f'{"yes" if torch.backends.mkl.is_available() else "no"}, oneDNN '
         f'{"yes" if torch.backends.mkldnn.is_available() else "no"}'),
        ('CUDA available', torch.cuda.is_available()),
    ])
    if torch.cuda.is_available():
        out['GPUs'] = [torch.cuda.get_device_name(i)
                       for i in range(torch.cuda.device_count())]
    out['PyTorch threads'] = torch.get_num_threads()
    out['ATen CPU capability'] = cpu_capability()
    return out


def _mmcv() -> dict:
    import mmcv
    out = OrderedDict(MMCV=mmcv.__version__)
    try:
        from mmcv import ops
        out['MMCV compiled ops'] = (
            f'yes ({ops.get_compiler_version()}, CUDA '
            f'{ops.get_compiling_cuda_version()})')
    except Exception as e:  # the ops are built separately (mmcv-lite)
        out['MMCV compiled ops'] = f'no: {type(e).__name__}: {e}'
    return out


def _gdal() -> dict:
    import rasterio
    with rasterio.Env() as env:
        drivers = env.drivers()
    return OrderedDict([
        ('rasterio', rasterio.__version__),
        ('GDAL (rasterio)', rasterio.__gdal_version__),
        ('GDAL drivers', len(drivers)),
        ('GDAL drivers used', {d: d in drivers for d in GDAL_DRIVERS}),
    ])


def _pyogrio() -> dict:
    import pyogrio
    return OrderedDict([
        ('pyogrio', pyogrio.__version__),
        ('GDAL (pyogrio)', pyogrio.__gdal_version_string__),
        ('GPKG writable (pyogrio)',
         'w' in pyogrio.list_drivers().get('GPKG', '')),
    ])


def _shapely() -> str:
    import shapely
    return f'{shapely.__version__} (GEOS {shapely.geos_version_string})'


def _pyproj() -> str:
    import pyproj
    return f'{pyproj.__version__} (PROJ {pyproj.proj_version_str})'


def _onnxruntime() -> dict:
    import onnxruntime
    return OrderedDict([
        ('onnxruntime', onnxruntime.__version__),
        ('onnxruntime providers', onnxruntime.get_available_providers()),
    ])


def _openvino() -> dict:
    import openvino
    return OrderedDict([
        ('OpenVINO', openvino.__version__),
        ('OpenVINO devices', list(openvino.Core().available_devices)),
    ])


def _cpu() -> dict:
    from .cpu_info import describe_cpu, parse_cpuinfo
    info = describe_cpu()
    try:
        with open('/proc/cpuinfo') as f:
            _, flags = parse_cpuinfo(f.read())
    except OSError:
        flags = set()
    listed = sorted(f for f in flags if f in ('avx2', 'fma', 'avx_vnni')
                    or f.startswith(('avx512', 'amx')))
    return OrderedDict([
        ('CPU', info.model),
        ('CPU cores', info.cores),
        ('CPU flags', listed),
        ('CPU flags ATen uses', info.flags),
        ('bf16 native', info.bf16_native),
    ])


def collect_env() -> Dict[str, Any]:
    """The environment as an ordered ``{name: value}`` of JSON types (str,
    int, bool, list, dict): versions, "not installed", or the error that
    stopped a package from importing."""
    from mmretina.version import __version__
    env: Dict[str, Any] = OrderedDict()
    env['sys.platform'] = sys.platform
    env['Platform'] = platform.platform()
    env['Python'] = sys.version.replace('\n', '')
    env['mmretina'] = __version__
    env['mmretina path'] = osp.dirname(osp.dirname(osp.abspath(__file__)))
    _add(env, 'PyTorch', 'torch', _torch)
    _add(env, 'TorchVision', 'torchvision', _version('torchvision'))
    _add(env, 'MMCV', 'mmcv', _mmcv)
    _add(env, 'MMDetection', 'mmdet', _version('mmdet'))
    _add(env, 'MMEngine', 'mmengine', _version('mmengine'))
    _add(env, 'NumPy', 'numpy', _version('numpy'))
    _add(env, 'OpenCV', 'cv2', _version('cv2'))
    _add(env, 'rasterio', 'rasterio', _gdal)
    _add(env, 'pyogrio', 'pyogrio', _pyogrio)
    _add(env, 'geopandas', 'geopandas', _version('geopandas'))
    _add(env, 'shapely', 'shapely', _shapely)
    _add(env, 'pyproj', 'pyproj', _pyproj)
    _add(env, 'ONNX', 'onnx', _version('onnx'))
    _add(env, 'onnxruntime', 'onnxruntime', _onnxruntime)
    _add(env, 'OpenVINO', 'openvino', _openvino)
    _add(env, 'CPU', 'torch', _cpu)
    return env


def format_env(env: Dict[str, Any]) -> str:
    """``name: value`` lines; lists comma-separated, a dict of flags as the
    names that are set and those that are not (``GTiff, COG; missing:
    JP2OpenJPEG``)."""
    lines = []
    for key, value in env.items():
        if isinstance(value, dict):
            have = [k for k, v in value.items() if v]
            lack = [k for k, v in value.items() if not v]
            value = ', '.join(have) + (f'; missing: {", ".join(lack)}'
                                       if lack else '')
        elif isinstance(value, (list, tuple)):
            value = ', '.join(map(str, value)) or 'none'
        lines.append(f'{key}: {value}')
    return '\n'.join(lines)
