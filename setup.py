"""mmretina: RetinaNet for MMDetection 3.x. Install with tools/install.sh,
which builds mmcv's compiled ops when no wheel fits this torch."""
import os.path as osp

from setuptools import find_packages, setup


def version():
    scope = {}
    with open(osp.join(osp.dirname(__file__), 'mmretina', 'version.py')) as f:
        exec(f.read(), scope)
    return scope['__version__']


def requirements(name):
    with open(osp.join(osp.dirname(__file__), 'requirements', name)) as f:
        return [
            line.split('#')[0].strip() for line in f
            if line.split('#')[0].strip()
        ]


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
    install_requires=requirements('runtime.txt'),
    extras_require={
        'tests': requirements('tests.txt'),
        'deploy': requirements('deploy.txt'),
        'geo': requirements('geo.txt'),
    },
    zip_safe=False,
)
