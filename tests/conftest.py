"""Shared fixtures: mmdet's modules registered, deterministic torch."""
import pytest
import torch


@pytest.fixture(autouse=True, scope='session')
def _register_mmdet():
    from mmdet.utils import register_all_modules
    register_all_modules(init_default_scope=True)
    import mmretina  # noqa: F401
    torch.set_num_threads(2)


@pytest.fixture
def one_thread():
    """In-process training or benchmarking on one thread: with two,
    OpenMP's spinning threads slow an iteration 10-30x when another process
    holds a core (the test machine has two, shared)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
