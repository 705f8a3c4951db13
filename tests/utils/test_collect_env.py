"""mmretina/utils/collect_env.py: the bug-report environment never fails on
a missing or broken package, and prints as ``name: value`` lines."""
import json
from collections import OrderedDict

from mmretina.utils.collect_env import (NOT_INSTALLED, _add, collect_env,
                                        format_env)


def test_missing_package_reads_not_installed_and_broken_one_says_why():
    env = OrderedDict()

    def missing():
        import mmretina_no_such_package  # noqa: F401

    def missing_dependency():
        raise ModuleNotFoundError("No module named 'libfoo'", name='libfoo')

    def broken():
        raise RuntimeError('GDAL_DATA not found')

    _add(env, 'absent', 'mmretina_no_such_package', missing)
    _add(env, 'half', 'foo', missing_dependency)
    _add(env, 'broken', 'bar', broken)
    _add(env, 'several', 'baz', lambda: OrderedDict(a=1, b=[2, 3]))
    assert env == {
        'absent': NOT_INSTALLED,
        'half': "import failed: No module named 'libfoo'",
        'broken': 'error: RuntimeError: GDAL_DATA not found',
        'a': 1, 'b': [2, 3]}


def test_format_lists_flags_and_missing_drivers():
    text = format_env(OrderedDict([
        ('CPU flags', ['avx2', 'fma']), ('GPUs', []),
        ('GDAL drivers used', {'GTiff': True, 'COG': True,
                               'JP2OpenJPEG': False}),
        ('bf16 native', False)]))
    assert text.splitlines() == [
        'CPU flags: avx2, fma', 'GPUs: none',
        'GDAL drivers used: GTiff, COG; missing: JP2OpenJPEG',
        'bf16 native: False']


def test_collect_env_is_json_and_names_the_cpu():
    env = collect_env()
    assert json.loads(json.dumps(env)) == env
    assert env['CPU'] and isinstance(env['CPU flags ATen uses'], list)
    assert isinstance(env['bf16 native'], bool)
