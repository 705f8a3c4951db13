"""The Processing provider "mmretina" and its setting (the interpreter)."""
from qgis.core import QgsProcessingProvider

from .algorithms import ChipsAlgorithm, DetectAlgorithm, EvaluateAlgorithm
from .runner import DEFAULT_PYTHON, SETTING


class MmretinaProvider(QgsProcessingProvider):

    def id(self):
        return 'mmretina'

    def name(self):
        return 'mmretina'

    def longName(self):  # noqa: N802
        return 'mmretina (RetinaNet object detection)'

    def load(self):
        try:
            from processing.core.ProcessingConfig import (ProcessingConfig,
                                                          Setting)
            ProcessingConfig.settingIcons[self.name()] = self.icon()
            ProcessingConfig.addSetting(Setting(
                self.name(), SETTING,
                'Python interpreter (of the environment where mmretina is '
                'installed; or the path of its mmretina script)',
                DEFAULT_PYTHON, valuetype=Setting.FILE))
            ProcessingConfig.readSettings()
        except ImportError:  # Processing's Python plugin absent
            pass
        self.refreshAlgorithms()
        return True

    def unload(self):
        try:
            from processing.core.ProcessingConfig import ProcessingConfig
            ProcessingConfig.removeSetting(SETTING)
        except ImportError:
            pass

    def loadAlgorithms(self):  # noqa: N802
        for alg in (DetectAlgorithm(), EvaluateAlgorithm(), ChipsAlgorithm()):
            self.addAlgorithm(alg)
