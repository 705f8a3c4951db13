"""mmretina.BF16OptimWrapper: bf16 autocast on CPU, fp32 master weights."""
import logging

import pytest
import torch
from torch import nn
from mmengine.optim import build_optim_wrapper

import mmretina  # noqa: F401
from mmretina.engine.optimizers import BF16OptimWrapper
from mmretina.engine.optimizers import bf16_optim_wrapper as mod


def _wrapper(enabled='auto', model=None):
    model = model or nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())
    cfg = dict(type='mmretina.BF16OptimWrapper', enabled=enabled,
               optimizer=dict(type='SGD', lr=0.1))
    return model, build_optim_wrapper(model, cfg)


def test_builds_from_the_mmretina_scope():
    _, wrapper = _wrapper()
    assert isinstance(wrapper, BF16OptimWrapper)


@pytest.mark.parametrize('enabled,dtype', [(True, torch.bfloat16),
                                           (False, torch.float32)])
def test_forward_dtype_inside_the_context(enabled, dtype):
    model, wrapper = _wrapper(enabled)
    with wrapper.optim_context(model):
        out = model(torch.randn(1, 3, 8, 8))
    assert out.dtype == dtype
    # outside the context the model is plain fp32 again
    assert model(torch.randn(1, 3, 8, 8)).dtype == torch.float32


def test_weights_grads_and_update_stay_fp32():
    model, wrapper = _wrapper(True)
    before = model[0].weight.detach().clone()
    with wrapper.optim_context(model):
        loss = model(torch.randn(2, 3, 8, 8)).float().square().mean()
    wrapper.update_params(loss)
    assert model[0].weight.dtype == torch.float32
    assert not torch.equal(before, model[0].weight)


def test_auto_falls_back_to_fp32_with_a_warning(monkeypatch):
    monkeypatch.setattr(mod, 'bf16_supported', lambda device_type: False)
    logged = []
    monkeypatch.setattr(mod, 'print_log',
                        lambda msg, **kw: logged.append((msg, kw['level'])))
    model, wrapper = _wrapper('auto')
    for _ in range(2):
        with wrapper.optim_context(model):
            out = model(torch.randn(1, 3, 8, 8))
        assert out.dtype == torch.float32
    # warned once, not every iteration
    assert len(logged) == 1
    assert 'no native bfloat16' in logged[0][0]
    assert logged[0][1] == logging.WARNING


def test_auto_uses_bf16_where_supported(monkeypatch):
    monkeypatch.setattr(mod, 'bf16_supported', lambda device_type: True)
    model, wrapper = _wrapper('auto')
    with wrapper.optim_context(model):
        assert model(torch.randn(1, 3, 8, 8)).dtype == torch.bfloat16


def test_bad_enabled_value_is_refused():
    with pytest.raises(ValueError, match="True, False or 'auto'"):
        _wrapper('yes')


@pytest.mark.parametrize('enabled,native,bf16', [
    ('auto', True, True), ('auto', False, False), (True, False, True),
    (False, True, False)])
def test_bf16_enabled_is_the_wrappers_rule(monkeypatch, enabled, native,
                                           bf16):
    assert mod.bf16_enabled(enabled, native) is bf16
    monkeypatch.setattr(mod, 'bf16_supported', lambda device_type: native)
    model, wrapper = _wrapper(enabled)
    with wrapper.optim_context(model):
        out = model(torch.randn(1, 3, 8, 8))
    assert out.dtype == (torch.bfloat16 if bf16 else torch.float32)
