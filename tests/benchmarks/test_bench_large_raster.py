"""benchmarks/bench_large_raster.py runs: a 1000 px raster window by window
(the outputs timed apart through the run's own methods) and in memory, the
two giving the same detections. It broke silently once when the run's
outputs moved to mmretina.inference.outputs."""
import os.path as osp
import subprocess
import sys

import pytest

pytest.importorskip('rasterio')
REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def test_windowed_and_in_memory_on_a_small_raster(tmp_path):
    proc = subprocess.run(
        [sys.executable, osp.join(REPO, 'benchmarks', 'bench_large_raster.py'),
         '--sizes', '1000', '--modes', 'windowed', 'in-memory',
         '--input-px', '128', '--work-dir', str(tmp_path)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert 'windowed: failed' not in proc.stdout, proc.stdout[-4000:]
    assert 'writing the outputs' in proc.stdout
    assert '1000 px: windowed detections == in-memory detections' in \
        proc.stdout, proc.stdout[-4000:]
