"""The one guard of the optional dependencies."""
import json
import os.path as osp
import sys

import pytest

import mmretina
from mmretina.utils.extras import INSTALL, require


def test_returns_the_modules_in_order():
    assert require('x', 'json', extra='geo') is json
    assert require('x', 'json', 'sys', extra='geo') == (json, sys)


def test_a_missing_module_names_feature_module_and_install(monkeypatch):
    monkeypatch.setitem(sys.modules, 'onnxruntime', None)
    with pytest.raises(ImportError) as e:
        require('m.onnx: --backend onnxruntime', 'json', 'onnxruntime',
                extra='deploy')
    assert str(e.value) == (
        'm.onnx: --backend onnxruntime needs onnxruntime (the deploy '
        'extra): pip install -r requirements/deploy.txt')
    assert isinstance(e.value.__cause__, ImportError)


@pytest.mark.parametrize('extra', sorted(INSTALL))
def test_every_extra_installs_a_requirements_file(extra):
    repo = osp.dirname(osp.dirname(osp.abspath(mmretina.__file__)))
    assert INSTALL[extra].startswith(f'pip install -r requirements/{extra}.txt')
    assert osp.isfile(osp.join(repo, 'requirements', f'{extra}.txt'))


def test_unknown_extra():
    with pytest.raises(ValueError, match="unknown extra 'gis'"):
        require('x', 'json', extra='gis')


def test_the_features_use_it(monkeypatch, tmp_path):
    # the geo, rotated, deploy and convert features raise its message
    from mmretina.deploy.backends import check_exported_model
    from mmretina.geo.formats import require as require_geo
    from mmretina.models.converters.torchvision import load_weights_file
    from mmretina.utils.mmrotate import require_mmrotate
    weights = tmp_path / 'w.safetensors'
    weights.write_bytes(b'')
    for name in ('rasterio', 'mmrotate', 'onnx', 'safetensors'):
        monkeypatch.setitem(sys.modules, name, None)
    for call, text in [
        (lambda: require_geo('reading rasters'),
         'reading rasters needs rasterio (the geo extra)'),
        (lambda: require_mmrotate('oriented boxes'),
         'oriented boxes needs mmrotate (the rotated extra)'),
        (lambda: check_exported_model('m.onnx'),
         'm.onnx: reading an ONNX model needs onnx (the deploy extra)'),
        (lambda: load_weights_file(str(weights)),
         'reading .safetensors needs safetensors (the convert extra)'),
    ]:
        with pytest.raises(ImportError) as e:
            call()
        assert text in str(e.value)
