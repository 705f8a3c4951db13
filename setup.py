"""mmretina: RetinaNet for MMDetection 3.x. Install with tools/install.sh,
which builds mmcv's compiled ops when no wheel fits this torch."""
import os
import os.path as osp
import shutil
import sys

from setuptools import find_packages, setup


def version():
    scope = {}
    with open(osp.join(osp.dirname(__file__), 'mmretina', 'version.py')) as f:
        exec(f.read(), scope)
    return scope['__version__']


def add_mim_extension():
    """Ship tools/ and configs/ inside the package, in mmretina/.mim, as
    mmdet ships its own (mmdet's setup.py): copied when a wheel or sdist is
    built, linked for a develop install, so that a pip user has the tools
    (``mmretina-*`` commands) and the configs they name."""
    if 'develop' in sys.argv or 'editable_wheel' in sys.argv:
        mode = 'symlink'
    elif any(cmd in sys.argv for cmd in ('sdist', 'bdist_wheel', 'install',
                                         'build', 'build_py')):
        mode = 'copy'
    else:
        return
    repo = osp.dirname(osp.abspath(__file__))
    mim = osp.join(repo, 'mmretina', '.mim')
    os.makedirs(mim, exist_ok=True)
    for name in ('tools', 'configs'):
        src, dst = osp.join(repo, name), osp.join(mim, name)
        if osp.islink(dst) or osp.isfile(dst):
            os.remove(dst)
        elif osp.isdir(dst):
            shutil.rmtree(dst)
        if mode == 'symlink':
            os.symlink(osp.relpath(src, mim), dst)
        else:
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns(
                '__pycache__', '*.pyc'))


def requirements(name):
    with open(osp.join(osp.dirname(__file__), 'requirements', name)) as f:
        return [
            line.split('#')[0].strip() for line in f
            if line.split('#')[0].strip()
        ]


# one console command, `mmretina <command>` (mmretina/cli/main.py), over the
# argparse mains of mmretina/cli, which tools/*.py call too (mmdet's names)
CONSOLE_SCRIPTS = [
    'mmretina = mmretina.cli.main:main',
]

add_mim_extension()
setup(
    name='mmretina',
    version=version(),
    description='RetinaNet (Focal Loss for Dense Object Detection) for '
    'MMDetection 3.x: mmdet-exact, faster head',
    long_description=open(osp.join(osp.dirname(__file__), 'README.md')).read()
    if osp.exists(osp.join(osp.dirname(__file__), 'README.md')) else '',
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    # mmdet 3.3 and mmengine 0.10 support 3.7+; torch 2.1 needs 3.8+. Tested
    # on 3.11 (CPU) and 3.12 (CUDA).
    python_requires='>=3.8',
    packages=find_packages(include=['mmretina', 'mmretina.*']),
    # tools/ and configs/ (add_mim_extension), and the shell launchers
    package_data={'mmretina': ['.mim/tools/*', '.mim/tools/**/*',
                               '.mim/configs/*', '.mim/configs/**/*']},
    entry_points={'console_scripts': CONSOLE_SCRIPTS},
    install_requires=requirements('runtime.txt'),
    extras_require={
        'tests': requirements('tests.txt'),
        'deploy': requirements('deploy.txt'),
        'convert': requirements('convert.txt'),
        'geo': requirements('geo.txt'),
        'rotated': requirements('rotated.txt'),
    },
    zip_safe=False,
)
