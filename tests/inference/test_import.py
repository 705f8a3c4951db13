"""``import mmretina`` (and ``mmretina.inference``) stays free of onnx and
onnxruntime (imported only by the export and the ORT backend) and of
rasterio / geopandas (the geo extra: imported when a raster is read or a
layer written)."""
import subprocess
import sys


def test_import_mmretina_does_not_import_onnx():
    code = ('import sys, mmretina, mmretina.inference; '
            'mods = [m for m in ("onnx", "onnxruntime", "onnxscript", '
            '"rasterio", "geopandas", "pyogrio") '
            'if m in sys.modules]; '
            'assert not mods, mods; '
            'assert callable(mmretina.inference.tiled.TiledInferencer)')
    proc = subprocess.run([sys.executable, '-c', code],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:]
