"""tools/build_qgis_plugin.sh builds the zip QGIS installs; unzipped into a
fresh profile, qgis_process lists the plugin and its algorithms."""
import os.path as osp
import subprocess
import zipfile

from qgis_harness import REPO, qgis_process


def test_the_zip_installs_into_a_fresh_profile(tmp_path):
    out = tmp_path / 'mmretina_qgis.zip'
    proc = subprocess.run(['bash', osp.join(REPO, 'tools',
                                            'build_qgis_plugin.sh'), str(out)],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout
    with zipfile.ZipFile(out) as z:
        names = z.namelist()
        assert 'mmretina_qgis/metadata.txt' in names
        assert all(n.startswith('mmretina_qgis/') for n in names)
        assert not any('__pycache__' in n for n in names)
        profile = tmp_path / 'profile'
        plugins = profile / 'profiles' / 'default' / 'python' / 'plugins'
        z.extractall(plugins)  # as Install from ZIP does
    enable = qgis_process(profile, 'plugins', 'enable', 'mmretina_qgis')
    assert enable.returncode == 0, enable.stdout[-2000:]
    plugins = qgis_process(profile, 'plugins')
    assert '* mmretina_qgis' in plugins.stdout, plugins.stdout[-2000:]
    listed = qgis_process(profile, 'list')
    assert 'mmretina:detect' in listed.stdout
