"""Shared fixtures: mmdet's modules registered, deterministic torch; the
helpers of the tests that run tools/ as a user does (subprocesses), on the
tiny data set and config of :mod:`mmretina.testing`."""
import os
import os.path as osp
import socket
import subprocess
import sys

import pytest
import torch

from mmretina.testing import (CLASSES, IMG_SIZE, make_coco,
                              scope_and_logger_kept, write_tiny_config)


def pytest_configure(config):
    config.addinivalue_line(
        'markers', 'slow: over 30 s on the 2-core test machine (still in the '
        'default run; deselect with -m "not slow")')


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


@pytest.fixture
def runner_globals_kept():
    """mmengine's current DefaultScope and MMLogger as they were before the
    test, whatever Runners it built (a module that builds Runners in-process
    names it in ``pytestmark``)."""
    with scope_and_logger_kept():
        yield


# the DeepForest image / checkpoint / ONNX fixtures, for every directory
pytest_plugins = ['df_fixtures']

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TOOLS = osp.join(REPO_ROOT, 'tools')


def tool_env(threads=1):
    """Environment for the tool subprocesses: repo on PYTHONPATH, few
    threads (the test machine has 2 cores shared with others)."""
    env = dict(os.environ)
    env['PYTHONPATH'] = REPO_ROOT + os.pathsep + env.get('PYTHONPATH', '')
    for var in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS'):
        env[var] = str(threads)
    env.pop('CUDA_VISIBLE_DEVICES', None)
    return env


def run_tool(args, timeout=300, env=None, cwd=None):
    """Run ``args`` (a list) as a subprocess; return CompletedProcess with
    text stdout+stderr in ``.stdout``."""
    return subprocess.run(
        args,
        cwd=cwd or REPO_ROOT,
        env=env or tool_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout)


def python_tool(name, *args, **kwargs):
    return run_tool([sys.executable, osp.join(TOOLS, name), *map(str, args)],
                    **kwargs)


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


class _Helpers:
    """Helper functions handed to the tests through the ``tools_helpers``
    fixture (test modules should not import ``conftest`` by name)."""
    REPO_ROOT = REPO_ROOT
    TOOLS = TOOLS
    CLASSES = CLASSES
    IMG_SIZE = IMG_SIZE
    make_coco = staticmethod(make_coco)
    write_tiny_config = staticmethod(write_tiny_config)
    tool_env = staticmethod(tool_env)
    run_tool = staticmethod(run_tool)
    python_tool = staticmethod(python_tool)
    free_port = staticmethod(free_port)


@pytest.fixture(scope='session')
def tools_helpers():
    return _Helpers


@pytest.fixture(scope='module')
def tiny_data(tmp_path_factory):
    """Root of a tiny synthetic COCO-format set (images/ + ann.json)."""
    root = tmp_path_factory.mktemp('tiny_coco')
    make_coco(str(root))
    return str(root)
