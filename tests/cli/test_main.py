"""The ``mmretina`` command (mmretina/cli/main.py): its command list, its
errors, ``--version``, ``env``, and for every command a ``--help`` that
names it ``mmretina <command>`` and ends with examples its own parser
accepts."""
import importlib
import json
import os
import os.path as osp
import re
import shlex
import subprocess
import sys

import pytest

from mmretina.cli.main import COMMANDS, main
from mmretina.version import __version__

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def leaves(commands=COMMANDS, path=()):
    """(command words, module) of every command that runs a module."""
    for name, entry in commands.items():
        if isinstance(entry, dict):
            yield from leaves(entry, path + (name,))
        else:
            yield path + (name,), entry[0]


LEAVES = list(leaves())


def run(argv, capsys):
    """(exit status, stdout + stderr) of ``mmretina ARGV`` in-process."""
    try:
        status = main(argv)
    except SystemExit as e:
        status = e.code
    out = capsys.readouterr()
    return status, out.out + out.err


def example_lines(help_text):
    """The ``mmretina ...`` command lines of a help text as argv lists:
    backslash continuations joined, ``# comments`` dropped."""
    text = re.sub(r'\\\n\s*', ' ', help_text)
    return [shlex.split(line, comments=True) for line in text.splitlines()
            if line.strip().startswith('mmretina ')]


def parse_example(argv, tmp_path, monkeypatch):
    """Parse ``mmretina ARGV`` with the parser of the module it runs, in a
    folder where every file it names exists (``loss-cdf`` checks its
    inputs while parsing); a parse error fails with argparse's message."""
    words, entry = argv[1:], COMMANDS
    while isinstance(entry, dict):
        entry = entry[words[0]]
        words = words[1:]
    monkeypatch.chdir(tmp_path)
    # train / test set LOCAL_RANK while parsing when it is unset
    monkeypatch.setenv('LOCAL_RANK', '0')
    for word in words:
        if not word.startswith('-') and re.search(r'\.[a-z]\w*$', word):
            os.makedirs(osp.dirname(word) or '.', exist_ok=True)
            open(word, 'a').close()
    module = importlib.import_module(entry[0])
    try:
        parsed = module.parse_args(words)
    except SystemExit as e:
        pytest.fail(f'{" ".join(argv)}: the example does not parse '
                    f'(exit {e.code}; argparse\'s message above)')
    if isinstance(parsed, tuple):  # browse: parse_known_args, rest to mmdet
        assert parsed[1] == [], f'{argv}: unknown arguments {parsed[1]}'


def test_version_names_mmretina_and_its_frameworks(capsys):
    status, out = run(['--version'], capsys)
    assert status == 0
    assert out.startswith(f'mmretina {__version__} (')
    for dist in ('mmdet', 'mmcv', 'mmengine', 'torch'):
        assert f'{dist} ' in out


def test_no_command_lists_every_command_and_exits_2(capsys):
    status, out = run([], capsys)
    assert status == 2
    assert out.startswith('usage: mmretina')
    for name, entry in COMMANDS.items():
        assert re.search(rf'^\s+{re.escape(name)}\s+\S', out, re.M), name
        if isinstance(entry, tuple):
            assert entry[1] in out


def test_unknown_command_exits_2_naming_the_commands(capsys):
    status, out = run(['detect', 'a.tif'], capsys)
    assert status == 2
    assert "invalid choice: 'detect'" in out
    assert all(f"'{name}'" in out for name in COMMANDS)


def test_group_without_or_with_an_unknown_subcommand_exits_2(capsys):
    status, out = run(['analyze'], capsys)
    assert status == 2
    assert out.startswith('usage: mmretina analyze')
    assert all(name in out for name in COMMANDS['analyze'])
    status, out = run(['convert', 'xml'], capsys)
    assert status == 2
    assert "invalid choice: 'xml'" in out
    assert all(f"'{name}'" in out for name in COMMANDS['convert'])


def test_help_lists_examples_that_parse(capsys, tmp_path, monkeypatch):
    status, out = run(['--help'], capsys)
    assert status == 0
    examples = example_lines(out)
    assert len(examples) >= 3
    for argv in examples:
        parse_example(argv, tmp_path, monkeypatch)


@pytest.mark.parametrize('words,module', LEAVES,
                         ids=[' '.join(w) for w, _ in LEAVES])
def test_command_help_names_it_and_has_examples_that_parse(
        words, module, capsys, tmp_path, monkeypatch):
    status, out = run([*words, '--help'], capsys)
    assert status == 0, out
    prog = 'mmretina ' + ' '.join(words)
    assert out.startswith(f'usage: {prog} '), out[:200]
    assert 'examples:' in out
    examples = [a for a in example_lines(out)
                if a[:len(words) + 1] == prog.split()]
    assert examples, f'{prog} --help: no example starts with "{prog}"'
    for argv in examples:
        parse_example(argv, tmp_path, monkeypatch)


def test_env_reports_versions_gdal_runtimes_and_cpu(capsys):
    status, out = run(['env'], capsys)
    assert status == 0
    lines = dict(line.split(': ', 1) for line in out.splitlines())
    assert lines['mmretina'] == __version__
    for key in ('Python', 'PyTorch', 'MMCV', 'MMCV compiled ops',
                'MMDetection', 'MMEngine', 'GDAL (rasterio)', 'onnxruntime',
                'OpenVINO', 'CPU', 'CPU flags', 'bf16 native'):
        assert key in lines, key
    status, out = run(['env', '--json'], capsys)
    assert status == 0
    env = json.loads(out)
    assert env['mmretina'] == __version__
    assert set(env['GDAL drivers used']) == {'GTiff', 'COG', 'JP2OpenJPEG',
                                             'GPKG'}


@pytest.fixture(scope='module')
def version_run():
    """``python -X importtime -m mmretina --version``, once (it imports
    the package: seconds)."""
    proc = subprocess.run(
        [sys.executable, '-X', 'importtime', '-m', 'mmretina', '--version'],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    imported = {line.rsplit('|', 1)[1].strip()
                for line in proc.stderr.splitlines()
                if line.startswith('import time:') and '|' in line}
    return proc, imported


def test_python_m_mmretina_imports_no_command(version_run):
    proc, imported = version_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith(f'mmretina {__version__} (')
    commands = {m for m in imported if m.startswith('mmretina.cli.')}
    assert commands == {'mmretina.cli.main'}, commands


@pytest.mark.xfail(strict=True, reason='mmretina/__init__.py imports the '
                   'models (and torch) to register them: `mmretina '
                   '--version` waits for them')
def test_version_does_not_import_torch(version_run):
    _, imported = version_run
    assert 'torch' not in imported
