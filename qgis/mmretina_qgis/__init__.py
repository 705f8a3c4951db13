"""The mmretina QGIS plugin: a Processing provider whose algorithms run
mmretina's command in the user's own Python environment."""


def classFactory(iface):  # noqa: N802 (QGIS's name)
    from .plugin import MmretinaPlugin
    return MmretinaPlugin(iface)
