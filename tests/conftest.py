"""Shared fixtures: mmdet's modules registered, deterministic torch."""
import pytest
import torch


@pytest.fixture(autouse=True, scope='session')
def _register_mmdet():
    from mmdet.utils import register_all_modules
    register_all_modules(init_default_scope=True)
    import mmretina  # noqa: F401
    torch.set_num_threads(2)
