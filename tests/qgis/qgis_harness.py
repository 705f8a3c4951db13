"""Helpers of the QGIS plugin tests. Real QGIS, headless: ``qgis_process``
(Debian's ``qgis`` package, 3.22) with the plugin copied into a temporary
profile. QGIS's embedded Python is
the system python3; the environment given to it holds no venv / pyenv
directory and no PYTHONPATH, PYTHONHOME or VIRTUAL_ENV (it would load their
sys.path and fail), and ``MMRETINA_PYTHON`` names the interpreter of these
tests, where mmretina is installed."""
import os
import os.path as osp
import shutil
import subprocess
import sys

# Debian's /usr/bin/qgis_process wrapper adds --noversioncheck, refused by
# 3.22; $MMRETINA_QGIS_PROCESS names another qgis_process
QGIS_PROCESS = os.environ.get('MMRETINA_QGIS_PROCESS',
                              '/usr/bin/qgis_process.bin')
REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
PLUGIN = osp.join(REPO, 'qgis', 'mmretina_qgis')
DF_CONFIG = osp.join(REPO, 'configs', 'retinanet_r18_fpn_deepforest.py')


def qgis_env(profile, **extra):
    """The environment of qgis_process and QGIS's python3."""
    env = dict(HOME=os.environ.get('HOME', '/tmp'), PATH='/usr/bin:/bin',
               LANG='C.UTF-8', QT_QPA_PLATFORM='offscreen',
               QGIS_CUSTOM_CONFIG_PATH=str(profile),
               MMRETINA_PYTHON=sys.executable, OMP_NUM_THREADS='1',
               MKL_NUM_THREADS='1',
               XDG_RUNTIME_DIR=str(profile))
    env.update({k: str(v) for k, v in extra.items()})
    return env


def qgis_process(profile, *args, timeout=300, cwd=None, **extra):
    return subprocess.run([QGIS_PROCESS, *map(str, args)],
                          env=qgis_env(profile, **extra), cwd=cwd,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=timeout)


def install(plugin_dir, profile):
    """Copy a plugin folder into the profile and enable it."""
    plugins = osp.join(str(profile), 'profiles', 'default', 'python',
                       'plugins')
    os.makedirs(plugins, exist_ok=True)
    shutil.copytree(plugin_dir, osp.join(plugins, 'mmretina_qgis'),
                    ignore=shutil.ignore_patterns('__pycache__'))
    proc = qgis_process(profile, 'plugins', 'enable', 'mmretina_qgis')
    assert proc.returncode == 0, proc.stdout[-3000:]
    return proc


def mmretina_cli(*args, timeout=300):
    """The command line, as a user runs it (one thread, as the plugin's
    child in these tests)."""
    env = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')
    proc = subprocess.run([sys.executable, '-m', 'mmretina', *map(str, args)],
                          env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout[-3000:]
    return proc


def shifted_folder(tif, root):
    """``root/rasters`` holding ``tif`` as OSBS_029.tif and a copy of it
    100 m east, shifted.tif (the same pixels, the origin moved)."""
    import rasterio
    from rasterio.transform import Affine
    folder = root / 'rasters'
    folder.mkdir()
    shutil.copy(tif, folder / 'OSBS_029.tif')
    with rasterio.open(tif) as r:
        profile = dict(r.profile,
                       transform=Affine.translation(100, 0) @ r.transform)
        with rasterio.open(folder / 'shifted.tif', 'w', **profile) as w:
            w.write(r.read())
    return folder


QGIS_PYTHON = '/usr/bin/python3'  # QGIS's embedded Python, without torch
TOOLBOX = osp.join(osp.dirname(osp.abspath(__file__)), 'toolbox.py')


def toolbox(profile, spec, timeout=600):
    """Run toolbox.py (an algorithm as the Processing Toolbox runs it) with
    QGIS's python3 and the plugin importable; its RESULT as a dict."""
    import json
    import tempfile
    env = qgis_env(profile, PYTHONPATH='/usr/share/qgis/python'
                   + os.pathsep + osp.dirname(PLUGIN))
    with tempfile.NamedTemporaryFile('w', suffix='.json', dir=str(profile),
                                     delete=False) as f:
        json.dump(dict(spec, timeout_s=timeout - 30), f)
    proc = subprocess.run([QGIS_PYTHON, TOOLBOX, f.name], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=timeout)
    lines = [x for x in proc.stdout.splitlines() if x.startswith('RESULT ')]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:]
    return json.loads(lines[-1][len('RESULT '):])
