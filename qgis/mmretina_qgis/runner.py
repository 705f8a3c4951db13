"""Running mmretina's command in the user's environment from QGIS.

QGIS's Python has no torch; mmretina runs in a child process started with
the interpreter the provider's setting names (or an ``mmretina`` script),
in an environment cleaned of what QGIS sets for its own Python and GDAL.
Its progress lines (``[mmretina] NAME 1/2: 3/12 windows (25%), ...``) drive
the progress bar; Cancel kills the child and raises, so nothing is loaded.
"""
import os
import os.path as osp
import queue
import re
import shutil
import signal
import subprocess
import tempfile
import threading
from typing import Dict, List, Optional, Sequence

from qgis.core import QgsProcessingException

SETTING = 'MMRETINA_PYTHON'
DEFAULT_PYTHON = 'python3'
FIX = ('set Processing > Options > Providers > mmretina > Python interpreter '
       'to the python of the environment where mmretina is installed '
       '(pip install -e /path/to/mmretina)')

# QGIS's own Python and GDAL / PROJ data: a child on another Python with
# its own GDAL (rasterio's wheel) must not see them.
_DROP = ('PYTHONPATH', 'PYTHONHOME', 'PYTHONSTARTUP', 'PYTHONEXECUTABLE',
         'PYTHONNOUSERSITE', 'GDAL_DATA', 'GDAL_DRIVER_PATH', 'PROJ_LIB',
         'PROJ_DATA', 'QT_PLUGIN_PATH', 'QGIS_PREFIX_PATH')
_PROGRESS = re.compile(r'(?:(\d+)/(\d+): )?.*?\((\d+(?:\.\d+)?)%\)')


def child_env(base: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """The environment of the child: ``base`` (default os.environ) without
    QGIS's Python and GDAL variables, output unbuffered and in UTF-8."""
    env = {k: v for k, v in (os.environ if base is None else base).items()
           if k not in _DROP}
    env['PYTHONUNBUFFERED'] = '1'
    env['PYTHONIOENCODING'] = 'utf-8'
    return env


def interpreter() -> str:
    """The provider's setting when changed from its default, else
    ``$MMRETINA_PYTHON`` (for ``qgis_process`` runs and tests), else
    python3."""
    value = ''
    try:
        from processing.core.ProcessingConfig import ProcessingConfig
        value = ProcessingConfig.getSetting(SETTING) or ''
    except Exception:  # outside Processing (tests of this module)
        pass
    value = str(value).strip()
    if value and value != DEFAULT_PYTHON:  # set by the user
        return value
    return os.environ.get(SETTING, '').strip() or DEFAULT_PYTHON


def command(python: str) -> List[str]:
    """argv prefix running mmretina: ``python -m mmretina``, or the path of
    an ``mmretina`` script as it is."""
    if osp.basename(python).lower().split('.')[0] == 'mmretina':
        return [python]
    return [python, '-m', 'mmretina']


_FIND = ('import importlib.util as u, sys\n'
         'missing = [m for m in ("mmretina", "torch", "mmdet") '
         'if u.find_spec(m) is None]\n'
         'print(" ".join(missing) or u.find_spec("mmretina").origin)\n'
         'sys.exit(1 if missing else 0)')
# the child's working folder: not the user's project folder, whose own
# ``mmretina`` source tree would shadow the installed package
_CWD = tempfile.gettempdir()


def check(python: str) -> str:
    """Whether ``python`` can run mmretina; the path of its package, or
    QgsProcessingException with the one-line fix.

    It looks mmretina, torch and mmdet up (``importlib.util.find_spec``,
    0.1 s) rather than running ``mmretina --version``, which imports them
    (6 s on 2 cores) before every run; an install broken otherwise fails the
    command itself with its own message. An ``mmretina`` script is checked
    to exist."""
    argv = command(python)
    found = (shutil.which(argv[0]) if not osp.isabs(argv[0])
             else (argv[0] if osp.isfile(argv[0]) else None))
    if found is None:
        raise QgsProcessingException(
            f'mmretina: the Python interpreter "{python}" was not found: '
            + FIX)
    if len(argv) == 1:  # an mmretina script
        return found
    try:
        proc = subprocess.run([python, '-c', _FIND], env=child_env(),
                              cwd=_CWD,
                              stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True,
                              timeout=60, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise QgsProcessingException(
            f'mmretina: "{python}" could not run ({e}): ' + FIX)
    if proc.returncode != 0:
        raise QgsProcessingException(
            f'mmretina: "{python}" has no module '
            f'{", ".join(proc.stdout.split()[-3:])}: ' + FIX)
    return proc.stdout.strip()


def overall_progress(line: str) -> Optional[float]:
    """Percent of the whole run from a progress line: raster k of n at p%
    is ((k - 1) + p / 100) / n."""
    m = _PROGRESS.search(line)
    if m is None or 'windows' not in line:
        return None
    pct = float(m.group(3))
    if m.group(1):
        k, n = int(m.group(1)), int(m.group(2))
        if n > 0 and 1 <= k <= n:
            return 100.0 * ((k - 1) + pct / 100.0) / n
    return pct


def _kill(proc: subprocess.Popen) -> None:
    try:  # the child's session: its workers (data loader threads) too
        os.killpg(proc.pid, signal.SIGKILL)
    except (AttributeError, OSError):
        proc.kill()
    proc.wait()


def run(args: Sequence[str], feedback, python: Optional[str] = None,
        poll_s: float = 0.2) -> List[str]:
    """Run ``mmretina ARGS`` in the user's environment.

    Each output line goes to ``feedback.pushConsoleInfo``, progress lines
    also to ``feedback.setProgress``. Cancel (``feedback.isCanceled()``)
    kills the child and raises; a non-zero exit raises with the last lines.
    Returns the output lines.
    """
    python = python or interpreter()
    check(python)
    argv = command(python) + [str(a) for a in args]
    if feedback is not None:
        feedback.pushCommandInfo(' '.join(argv))
    proc = subprocess.Popen(
        argv, env=child_env(), cwd=_CWD, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        encoding='utf-8', errors='replace', bufsize=1,
        start_new_session=(os.name == 'posix'))
    lines: 'queue.Queue[Optional[str]]' = queue.Queue()

    def read():
        for line in proc.stdout:
            lines.put(line.rstrip('\r\n'))
        lines.put(None)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    out: List[str] = []
    done = False
    try:
        while not done:
            if feedback is not None and feedback.isCanceled():
                _kill(proc)
                raise QgsProcessingException('mmretina: canceled')
            try:
                line = lines.get(timeout=poll_s)
            except queue.Empty:
                continue
            while line is not None:
                out.append(line)
                if feedback is not None:
                    pct = overall_progress(line)
                    if pct is not None:
                        feedback.setProgress(pct)
                    feedback.pushConsoleInfo(line)
                    if feedback.isCanceled():
                        break
                try:
                    line = lines.get_nowait()
                except queue.Empty:
                    break
            else:
                done = True
        code = proc.wait()
    finally:  # the pipe closed once the reader has seen its end
        if proc.poll() is None:
            _kill(proc)
        reader.join(timeout=10)
        proc.stdout.close()
    if code != 0:
        tail = '\n'.join(out[-15:])
        raise QgsProcessingException(
            f'mmretina {args[0] if args else ""} failed (exit {code}):\n'
            + tail)
    return out
