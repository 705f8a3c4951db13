"""Registers the provider with QGIS (desktop and ``qgis_process``)."""
from qgis.core import QgsApplication

from .provider import MmretinaProvider


class MmretinaPlugin:

    def __init__(self, iface=None):
        self.iface = iface
        self.provider = None

    def initProcessing(self):  # noqa: N802 (QGIS calls it)
        self.provider = MmretinaProvider()
        QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self):  # noqa: N802
        if self.provider is None:  # qgis_process calls initProcessing only
            self.initProcessing()

    def unload(self):
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
