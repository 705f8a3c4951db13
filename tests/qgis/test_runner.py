"""The plugin's runner under QGIS's own python3 (no torch): progress lines
drive the progress bar. (Cancel is tested where the user clicks it, in the
Toolbox: test_toolbox.py.)"""
import os
import os.path as osp
import subprocess
import textwrap

from qgis_harness import PLUGIN, QGIS_PYTHON, qgis_env

SCRIPT = textwrap.dedent('''
    import json, sys
    from qgis.core import QgsProcessingException
    from mmretina_qgis import runner

    class Feedback:  # QgsProcessingFeedback's calls the runner makes
        def __init__(self):
            self.progress, self.lines = [], []
        def isCanceled(self):
            return False
        def setProgress(self, p):
            self.progress.append(p)
        def pushConsoleInfo(self, line):
            self.lines.append(line)
        def pushCommandInfo(self, line):
            self.lines.append(line)

    fb = Feedback()
    result = dict(progress=fb.progress)
    try:
        result['lines'] = runner.run(sys.argv[1:], fb)
    except QgsProcessingException as e:
        result['error'] = str(e)
    print('RESULT ' + json.dumps(result))
''')


def run_runner(profile, *args):
    env = qgis_env(profile, PYTHONPATH='/usr/share/qgis/python'
                   + os.pathsep + osp.dirname(PLUGIN))
    proc = subprocess.run([QGIS_PYTHON, '-c', SCRIPT, *map(str, args)],
                          env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:]
    import json
    line = [x for x in proc.stdout.splitlines() if x.startswith('RESULT ')]
    assert line, proc.stdout[-3000:]
    return json.loads(line[-1][len('RESULT '):])


def test_progress_lines_drive_the_progress_bar(osbs, df_checkpoint,
                                               tmp_path):
    assert subprocess.run([QGIS_PYTHON, '-c', 'import torch'],
                          env=qgis_env(tmp_path),
                          capture_output=True).returncode != 0, \
        "QGIS's python3 has torch: this test would not show the split"
    tif, _ = osbs
    config, ckpt = df_checkpoint
    res = run_runner(tmp_path, 'predict', tif, config, ckpt,
                     '--out-dir', tmp_path / 'out', '--tile', 200,
                     '--gsd', 'off')
    assert 'error' not in res, res
    assert res['progress'][-1] == 100.0
    assert res['progress'] == sorted(res['progress'])
    assert (tmp_path / 'out' / 'OSBS_029.gpkg').is_file()
