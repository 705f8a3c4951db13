"""The tools as a pip user gets them: ``pip wheel .`` builds a wheel that
ships tools/ and configs/ in ``mmretina/.mim`` and one console command,
``mmretina``; installed (no dependencies: they come from this environment;
``--ignore-installed`` so that an mmretina of the environment is neither
used nor touched) in a fresh venv, ``mmretina <command>`` runs from outside
the repository, on the installed package.

The fresh venv sees this interpreter's site-packages through a ``.pth``
file (:func:`share_site_packages`), not ``system_site_packages=True``: in an
active virtualenv that would inherit the base interpreter's packages, not
the virtualenv's, and the commands would find no torch."""
import os
import os.path as osp
import subprocess
import sys
import venv
import zipfile

import pytest

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def share_site_packages(python: str) -> None:
    """Make the venv of ``python`` see the site-packages of the interpreter
    running the tests (a virtualenv's, its base's if it includes them, the
    user's), after its own, as ``site`` adds them (their ``.pth`` files
    processed)."""
    dirs = [
        p for p in sys.path
        if osp.basename(p.rstrip(os.sep)) in ('site-packages',
                                               'dist-packages')
        and osp.isdir(p)
    ]
    purelib = subprocess.run(
        [python, '-c', 'import sysconfig; '
         "print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, timeout=60, check=True).stdout.strip()
    with open(osp.join(purelib, '_mmretina_test_parent_env.pth'), 'w') as f:
        f.writelines(f'import site; site.addsitedir({d!r})\n' for d in dirs)


# about 50 s on an idle 2-core machine (a wheel build, a venv, six commands
# that import torch and mmdet); minutes when the machine is shared
@pytest.mark.slow
def test_wheel_ships_tools_and_commands_that_run(tmp_path):
    # no build isolation: setuptools comes from this environment (the test
    # machine reaches no package index)
    build = subprocess.run(
        [sys.executable, '-m', 'pip', 'wheel', REPO, '--no-deps',
         '--no-build-isolation', '-q', '-w', str(tmp_path / 'dist')],
        capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-3000:]
    wheel, = (tmp_path / 'dist').glob('mmretina-*.whl')
    names = zipfile.ZipFile(wheel).namelist()
    for shipped in ('mmretina/.mim/tools/train.py',
                    'mmretina/.mim/tools/dist_train.sh',
                    'mmretina/.mim/tools/infer.py',
                    'mmretina/.mim/tools/analysis_tools/analyze_anchors.py',
                    'mmretina/.mim/configs/retinanet_r50_fpn.py',
                    'mmretina/analysis/anchors.py',
                    'mmretina/datasets/converters/voc.py'):
        assert shipped in names, shipped

    env_dir = tmp_path / 'venv'
    venv.create(env_dir, with_pip=False)
    python = str(env_dir / 'bin' / 'python')
    share_site_packages(python)
    install = subprocess.run(
        [sys.executable, '-m', 'pip', '--python', python, 'install',
         '--no-deps', '--ignore-installed', '-q', str(wheel)],
        capture_output=True, text=True, timeout=300)
    if install.returncode != 0 and 'no such option' in install.stderr:
        # pip < 22.3 has no --python: use the venv's own pip
        install = subprocess.run(
            [python, '-m', 'pip', 'install', '--no-deps', '--ignore-installed',
             '-q', str(wheel)],
            capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr[-3000:]

    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    outside = tmp_path / 'elsewhere'
    outside.mkdir()
    where = subprocess.run(
        [python, '-c', 'import mmretina.cli, mmretina.utils.paths as p; '
         'print(mmretina.cli.__file__); print(p.resource_root())'],
        cwd=outside, env=env, capture_output=True, text=True, timeout=120)
    assert where.returncode == 0, where.stderr[-3000:]
    module, root = where.stdout.split()
    assert module.startswith(str(env_dir)), module
    assert root.startswith(str(env_dir)) and root.endswith('.mim'), root

    # one command surface: no mmretina-* script beside `mmretina`
    installed = sorted(p.name for p in (env_dir / 'bin').glob('mmretina*'))
    assert installed == ['mmretina'], installed
    # `mmretina <command> --help`: the usage line names the command its
    # module's parser was reached through, and one of that parser's options
    commands = {
        'train': '--resume',
        'test': '--backend',
        'predict': '--tile',
        'convert labels': '{voc,csv,yolo}',
        'analyze anchors': '--optimize',
        'analyze logs': 'plot_curve',
    }
    procs = {
        words: subprocess.Popen(
            [str(env_dir / 'bin' / 'mmretina'), *words.split(), '--help'],
            cwd=outside, env=env, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True)
        for words in commands
    }
    for words, proc in procs.items():
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, (words, out[-3000:])
        assert out.startswith(f'usage: mmretina {words} '), (words,
                                                            out[-3000:])
        assert commands[words] in out, (words, out[-3000:])
