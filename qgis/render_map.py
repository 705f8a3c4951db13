"""Render a detections layer over its raster with QGIS itself (headless),
styled as the plugin styles it (outlines by score), to a PNG: the picture
of docs/user_guides/qgis.md.

Run with QGIS's python3 (``PYTHONPATH=/usr/share/qgis/python:qgis``,
``QT_QPA_PLATFORM=offscreen``)::

    python3 qgis/render_map.py OSBS_029.tif detections.gpkg map.png
"""
import argparse
import os.path as osp
import sys

_APP = None


def render(raster: str, layer: str, out: str, width: int = 800) -> None:
    from qgis.core import QgsApplication

    global _APP  # kept alive to the end: QGIS crashes when it goes first
    _APP = QgsApplication([], False)
    _APP.initQgis()
    try:
        _draw(raster, layer, out, width)  # its layers are gone on return
    finally:
        _APP.exitQgis()


def _draw(raster: str, layer: str, out: str, width: int) -> None:
    from qgis.core import (QgsMapRendererParallelJob, QgsMapSettings,
                           QgsRasterLayer, QgsVectorLayer)
    from qgis.PyQt.QtCore import QSize
    from qgis.PyQt.QtGui import QColor

    from mmretina_qgis.algorithms import score_renderer

    base = QgsRasterLayer(raster, osp.basename(raster))
    boxes = QgsVectorLayer(layer, osp.basename(layer), 'ogr')
    for lyr, path in ((base, raster), (boxes, layer)):
        if not lyr.isValid():
            raise SystemExit(f'{path}: QGIS cannot open it')
    boxes.setRenderer(score_renderer())
    settings = QgsMapSettings()
    settings.setLayers([boxes, base])  # top first
    settings.setDestinationCrs(base.crs())
    settings.setExtent(base.extent())
    settings.setBackgroundColor(QColor('white'))
    ext = base.extent()
    settings.setOutputSize(QSize(
        width, max(1, round(width * ext.height() / ext.width()))))
    job = QgsMapRendererParallelJob(settings)
    job.start()
    job.waitForFinished()
    if not job.renderedImage().save(out, 'PNG'):
        raise SystemExit(f'{out}: cannot write the PNG')


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('raster')
    parser.add_argument('layer')
    parser.add_argument('out')
    parser.add_argument('--width', type=int, default=800)
    args = parser.parse_args(argv)
    render(args.raster, args.layer, args.out, args.width)
    print(f'wrote {args.out}')


if __name__ == '__main__':
    sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
    main()
