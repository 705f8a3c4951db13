"""The plugin's runner under QGIS's own python3 (no torch): progress lines
drive the progress bar, and Cancel kills the child and returns no layer."""
import os
import os.path as osp
import subprocess
import textwrap

from qgis_harness import PLUGIN, qgis_env

QGIS_PYTHON = '/usr/bin/python3'

SCRIPT = textwrap.dedent('''
    import json, os, sys, time
    sys.argv = sys.argv[1:]
    from qgis.core import QgsProcessingException
    from mmretina_qgis import runner

    class Feedback:  # QgsProcessingFeedback's calls the runner makes
        def __init__(self, cancel_after):
            self.cancel_after, self.progress, self.lines = cancel_after, [], []
        def isCanceled(self):
            return (self.cancel_after is not None
                    and len(self.progress) >= self.cancel_after)
        def setProgress(self, p):
            self.progress.append(p)
        def pushConsoleInfo(self, line):
            self.lines.append(line)
        def pushCommandInfo(self, line):
            self.lines.append(line)

    mode, args = sys.argv[0], sys.argv[1:]
    fb = Feedback(1 if mode == 'cancel' else None)
    result = dict(progress=fb.progress)
    t0 = time.time()
    try:
        result['lines'] = runner.run(args, fb)
    except QgsProcessingException as e:
        result['error'] = str(e)
    result['seconds'] = time.time() - t0
    result['canceled_at'] = len(fb.lines)
    print('RESULT ' + json.dumps(result))
''')


def run_runner(profile, mode, *args):
    env = qgis_env(profile, PYTHONPATH='/usr/share/qgis/python'
                   + os.pathsep + osp.dirname(PLUGIN))
    proc = subprocess.run([QGIS_PYTHON, '-c', SCRIPT, mode, *map(str, args)],
                          env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:]
    import json
    line = [x for x in proc.stdout.splitlines() if x.startswith('RESULT ')]
    assert line, proc.stdout[-3000:]
    return json.loads(line[-1][len('RESULT '):])


def children_writing_to(path):
    """Processes whose command line names ``path``."""
    found = []
    for pid in filter(str.isdigit, os.listdir('/proc')):
        try:
            with open(f'/proc/{pid}/cmdline', 'rb') as f:
                if str(path).encode() in f.read():
                    found.append(int(pid))
        except OSError:
            pass
    return found


def test_cancel_kills_the_child_and_leaves_no_layer(osbs, df_checkpoint,
                                                     tmp_path):
    assert not subprocess.run([QGIS_PYTHON, '-c', 'import torch'],
                              env=qgis_env(tmp_path),
                              capture_output=True).returncode == 0, \
        "QGIS's python3 has torch: this test would not show the split"
    tif, _ = osbs
    config, ckpt = df_checkpoint
    out = tmp_path / 'out'
    # --tile 64: 100 windows, so the run is far from done at the first line
    res = run_runner(tmp_path, 'cancel', 'predict', tif, config, ckpt,
                     '--out-dir', out, '--tile', 64, '--gsd', 'off')
    assert res.get('error') == 'mmretina: canceled', res
    # canceled after the first progress line, far from the end
    assert len(res['progress']) >= 1 and res['progress'][-1] < 100, res
    assert children_writing_to(out) == []  # the child is gone
    assert not any(p.suffix == '.gpkg' for p in out.rglob('*')) \
        if out.exists() else True


def test_progress_lines_drive_the_progress_bar(osbs, df_checkpoint,
                                               tmp_path):
    tif, _ = osbs
    config, ckpt = df_checkpoint
    res = run_runner(tmp_path, 'run', 'predict', tif, config, ckpt,
                     '--out-dir', tmp_path / 'out', '--tile', 200,
                     '--gsd', 'off')
    assert 'error' not in res, res
    assert res['progress'][-1] == 100.0
    assert res['progress'] == sorted(res['progress'])
    assert (tmp_path / 'out' / 'OSBS_029.gpkg').is_file()


def test_qgis_renders_the_detections_over_the_raster(osbs, df_checkpoint,
                                                     tmp_path):
    """qgis/render_map.py: QGIS draws the layer over the raster, outlined
    in the score colours (the picture of docs/user_guides/qgis.md)."""
    import numpy as np
    from PIL import Image

    tif, _ = osbs
    config, ckpt = df_checkpoint
    from qgis_harness import mmretina_cli
    mmretina_cli('predict', tif, config, ckpt, '--out-dir', tmp_path)
    out = tmp_path / 'map.png'
    env = qgis_env(tmp_path, PYTHONPATH='/usr/share/qgis/python')
    proc = subprocess.run(
        [QGIS_PYTHON, osp.join(osp.dirname(PLUGIN), 'render_map.py'), tif,
         str(tmp_path / 'OSBS_029.gpkg'), str(out), '--width', '400'],
        env={k: str(v) for k, v in env.items()}, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:]
    img = np.asarray(Image.open(out).convert('RGB')).astype(int)
    assert img.shape == (400, 400, 3)
    # the outline colour of scores 0.3-0.5, #ffd92f, drawn on the raster
    yellow = (np.abs(img - (0xff, 0xd9, 0x2f)).sum(-1) < 40).mean()
    assert 0.01 < yellow < 0.5
