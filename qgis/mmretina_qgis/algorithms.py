"""The three algorithms: Detect objects, Evaluate against labels, Make
training chips. Each is a thin layer over one mmretina command run by
:mod:`.runner`; layer sources are handed over as the paths GDAL reads."""
import csv
import json
import os
import os.path as osp
import shutil
import tempfile

from qgis.core import (QgsCoordinateTransform, QgsFeature, QgsFeatureSink,
                       QgsField, QgsFields, QgsGeometry, QgsPointXY,
                       QgsProcessing,
                       QgsProcessingAlgorithm, QgsProcessingException,
                       QgsProcessingLayerPostProcessorInterface,
                       QgsProcessingParameterEnum,
                       QgsProcessingParameterExtent,
                       QgsProcessingParameterFile,
                       QgsProcessingParameterFeatureSink,
                       QgsProcessingParameterFolderDestination,
                       QgsProcessingParameterNumber,
                       QgsProcessingParameterRasterLayer,
                       QgsProcessingParameterString,
                       QgsProcessingParameterVectorDestination,
                       QgsProcessingParameterVectorLayer,
                       QgsProcessingOutputNumber, QgsProviderRegistry,
                       QgsRectangle, QgsSpatialIndex, QgsVectorFileWriter,
                       QgsWkbTypes)
from qgis.PyQt.QtCore import QVariant

from . import runner

BACKENDS = ('pytorch', 'onnxruntime', 'openvino')
# The files of a folder mmretina reads as rasters: mmretina.geo.formats.
# IMAGE_EXTS (QGIS's Python cannot import mmretina; a test keeps the two
# equal).
RASTER_EXTS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp',
               '.jp2', '.vrt', '.img')


# -- layer sources as paths ------------------------------------------------

def absolute(path: str) -> str:
    """An existing relative file as an absolute path (mmretina runs in
    another working folder); GDAL virtual paths and the rest as they are."""
    if path and not path.startswith('/vsi') and osp.exists(path):
        return osp.abspath(path)
    return path


def raster_path(layer) -> str:
    """A raster layer's source as GDAL opens it: a file path, a /vsi...
    virtual path or a GDAL connection string, passed as it is."""
    if layer is None:
        raise QgsProcessingException('mmretina: no raster layer given')
    if layer.providerType() != 'gdal':
        raise QgsProcessingException(
            f'mmretina: the raster layer "{layer.name()}" is not read by GDAL '
            f'({layer.providerType()}); save it as a GeoTIFF first')
    return absolute(layer.source())


def vector_path(layer, tmp_dir: str, feedback=None) -> str:
    """A vector layer as a file mmretina reads: the file itself when the
    layer is the whole of an OGR file (``|layername=`` and the like
    stripped), else a GeoPackage copy of the layer (other providers, a
    filter, one layer of several in a file)."""
    if layer is None:
        raise QgsProcessingException('mmretina: no label layer given')
    if layer.providerType() == 'ogr':
        parts = QgsProviderRegistry.instance().decodeUri('ogr',
                                                         layer.source())
        path = parts.get('path', '')
        whole = not layer.subsetString() and osp.isfile(path)
        if whole and parts.get('layerName'):
            try:
                from osgeo import ogr
                ds = ogr.Open(path)
                whole = ds is not None and ds.GetLayerCount() == 1
            except ImportError:
                whole = False
        if path and (whole or path.startswith('/vsi')) \
                and not layer.subsetString():
            return absolute(path)
    out = osp.join(tmp_dir, 'labels.gpkg')
    if feedback is not None:
        feedback.pushInfo(f'writing the layer "{layer.name()}" to {out}')
    opts = QgsVectorFileWriter.SaveVectorOptions()
    opts.driverName = 'GPKG'
    from qgis.core import QgsCoordinateTransformContext
    res = QgsVectorFileWriter.writeAsVectorFormatV2(
        layer, out, QgsCoordinateTransformContext(), opts)
    if res[0] != QgsVectorFileWriter.NoError:
        raise QgsProcessingException(
            f'mmretina: cannot write the layer "{layer.name()}" to {out}: '
            f'{res[1]}')
    return out


def gsd_arg(text: str) -> str:
    """The GSD rule: auto, off or metres (checked here, as mmretina does)."""
    text = (text or 'auto').strip().lower()
    if text in ('auto', 'off'):
        return text
    try:
        if float(text) > 0:
            return text
    except ValueError:
        pass
    raise QgsProcessingException(
        f'mmretina: GSD rule "{text}": give auto, off or metres (e.g. 0.1)')


def raster_or_folder(alg, parameters, context, one_crs=''):
    """The raster layer (INPUT) or the folder of rasters (INPUT_FOLDER):
    exactly one of them; with ``one_crs`` (what needs it, e.g. "one
    layer"), a folder whose rasters are in several CRSs is refused. Returns
    (path mmretina reads, layer or None)."""
    layer = alg.parameterAsRasterLayer(parameters, 'INPUT', context)
    folder = alg.parameterAsFile(parameters, 'INPUT_FOLDER', context).strip()
    if (layer is None) == (not folder):
        raise QgsProcessingException(
            'mmretina: give either a raster layer (INPUT) or a folder of '
            'rasters (INPUT_FOLDER), not ' + ('both' if folder else 'neither'))
    if folder:
        folder = absolute(folder)
        if not osp.isdir(folder):
            raise QgsProcessingException(
                f'mmretina: the folder {folder} does not exist')
        if one_crs:
            check_one_crs(folder, one_crs)
        return folder, None
    return raster_path(layer), layer


def folder_rasters(folder: str):
    """The rasters of a folder, as mmretina lists them (sorted names with
    one of :data:`RASTER_EXTS`)."""
    return sorted(osp.join(folder, f) for f in os.listdir(folder)
                  if f.lower().endswith(RASTER_EXTS)
                  and osp.isfile(osp.join(folder, f)))


def check_one_crs(folder: str, what: str) -> None:
    """Refuse a folder whose rasters are not all in one CRS (or all without
    one), naming the files of each CRS: one layer holds one CRS. (mmretina
    refuses them too, from their headers before the model runs; this
    message names the QGIS tool that reprojects.) Files GDAL cannot open
    are left to mmretina, which names them."""
    from osgeo import gdal
    from qgis.core import QgsCoordinateReferenceSystem
    groups = {}  # WKT ('' for none) -> (QGIS's CRS or None, [file names])
    for path in folder_rasters(folder):
        ds = gdal.Open(path)
        if ds is None:
            continue
        wkt = ds.GetProjection() or ''
        ds = None
        if wkt not in groups:
            crs = QgsCoordinateReferenceSystem.fromWkt(wkt) if wkt else None
            same = [k for k, (c, _) in groups.items()
                    if crs is not None and c is not None and c == crs]
            if same:  # the same CRS written in another WKT
                wkt = same[0]
            else:
                groups[wkt] = (crs, [])
        groups[wkt][1].append(osp.basename(path))
    if len(groups) <= 1:
        return

    def listed(names):
        return ', '.join(names[:3]) + (f' and {len(names) - 3} more'
                                       if len(names) > 3 else '')

    parts = [f'{(crs.authid() or crs.description()) if crs else "no CRS"}: '
             f'{listed(names)}' for crs, names in groups.values()]
    raise QgsProcessingException(
        f'mmretina: the rasters of {folder} are in {len(groups)} different '
        f'CRSs ({"; ".join(parts)}), and {what} needs one CRS; reproject '
        'them to one CRS first (Raster > Projections > Warp (Reproject)) '
        'or run them one by one (Run as Batch Process)')


def input_params(alg, what):
    alg.addParameter(QgsProcessingParameterRasterLayer(
        'INPUT', 'Raster layer', optional=True))
    alg.addParameter(QgsProcessingParameterFile(
        'INPUT_FOLDER', f'Or a folder of rasters ({what})',
        behavior=QgsProcessingParameterFile.Folder, optional=True))


# -- style -------------------------------------------------------------------

def score_renderer():
    """Box outlines coloured by score: yellow (0.3) to red (1.0)."""
    from qgis.core import (QgsFillSymbol, QgsGraduatedSymbolRenderer,
                           QgsRendererRange)
    colors = ('#ffd92f', '#fdae61', '#f46d43', '#d73027')
    bounds = (0.0, 0.5, 0.7, 0.9, 1.0)
    ranges = []
    for lo, hi, color in zip(bounds, bounds[1:], colors):
        symbol = QgsFillSymbol.createSimple(
            dict(color='0,0,0,0', outline_color=color, outline_width='0.6'))
        ranges.append(QgsRendererRange(lo, hi, symbol,
                                       f'{lo:.1f} - {hi:.1f}'))
    return QgsGraduatedSymbolRenderer('score', ranges)


class _ScoreStyle(QgsProcessingLayerPostProcessorInterface):
    instance = None  # kept alive until QGIS calls it

    def postProcessLayer(self, layer, context, feedback):  # noqa: N802
        if layer is not None and layer.fields().indexOf('score') >= 0:
            layer.setRenderer(score_renderer())
            layer.triggerRepaint()

    @staticmethod
    def create():
        _ScoreStyle.instance = _ScoreStyle()
        return _ScoreStyle.instance


# -- algorithms --------------------------------------------------------------

class _Base(QgsProcessingAlgorithm):

    def group(self):
        return ''

    def groupId(self):  # noqa: N802
        return ''

    def createInstance(self):  # noqa: N802
        return type(self)()

    def _model_params(self):
        self.addParameter(QgsProcessingParameterFile(
            'MODEL', 'Model: config (.py), or an exported model (.onnx, '
            'OpenVINO .xml)', extension='', optional=False))
        self.addParameter(QgsProcessingParameterFile(
            'CHECKPOINT', 'Checkpoint (.pth) of the config', optional=True))

    def _model_args(self, parameters, context, backend='pytorch'):
        model = absolute(self.parameterAsFile(parameters, 'MODEL', context))
        ckpt = absolute(self.parameterAsFile(parameters, 'CHECKPOINT',
                                             context))
        if backend == 'pytorch':
            if not ckpt:
                raise QgsProcessingException(
                    'mmretina: the pytorch backend needs a config and a '
                    'checkpoint (.pth); for an exported model choose the '
                    'onnxruntime or openvino backend')
            return [model, ckpt]
        return [model]

    def _raster_params(self):
        self.addParameter(QgsProcessingParameterString(
            'GSD', 'GSD rule: auto (the model\'s), off (the raster\'s own) or '
            'metres', defaultValue='auto'))
        self.addParameter(QgsProcessingParameterString(
            'BANDS', 'Bands read as R,G,B (1-based, e.g. 4,3,2; empty: the '
            'model\'s or 1,2,3)', defaultValue='', optional=True))

    def _raster_args(self, parameters, context):
        args = ['--gsd', gsd_arg(self.parameterAsString(parameters, 'GSD',
                                                        context))]
        bands = self.parameterAsString(parameters, 'BANDS', context).strip()
        if bands:
            args += ['--bands', bands]
        return args


def subset(layer, rect: QgsRectangle, work: str, what: str) -> str:
    """A GDAL VRT of the raster layer cut to ``rect`` (in the layer's CRS,
    clipped to the raster; GDAL snaps it to whole pixels), written in
    ``work``: mmretina reads it like the raster and maps its boxes through
    the VRT's geotransform, so the detections stay in map coordinates."""
    from osgeo import gdal
    full = layer.extent()
    part = rect.intersect(full)
    if rect.isEmpty() or part.isEmpty() or part.width() <= 0 \
            or part.height() <= 0:
        raise QgsProcessingException(
            f'mmretina: the {what} ({rect.toString(3)} in '
            f'{layer.crs().authid() or "the raster CRS"}) does not overlap '
            f'the raster layer "{layer.name()}" ({full.toString(3)}); '
            f'choose {"an" if what[0] in "aeiou" else "a"} {what} on the '
            'raster')
    src = raster_path(layer)
    stem = osp.splitext(osp.basename(src.split('|')[0]))[0] or 'raster'
    os.makedirs(work, exist_ok=True)
    vrt = osp.join(work, stem + '.vrt')
    ds = gdal.Translate(vrt, src, format='VRT', projWin=[
        part.xMinimum(), part.yMaximum(), part.xMaximum(),
        part.yMinimum()])
    if ds is None:
        raise QgsProcessingException(
            f'mmretina: GDAL could not cut {src} to the {what} '
            f'{part.toString(3)}: {gdal.GetLastErrorMsg()} (a {what} '
            'smaller than a pixel?)')
    ds = None  # written on close
    return vrt


def keep_inside(path: str, crs, mask, context, feedback=None) -> int:
    """Delete from the GeoPackage ``path`` (boxes in ``crs``) the boxes
    whose centre is in no polygon of the layer ``mask`` (any CRS:
    reprojected to ``crs``). OGR edits the file (closed on return, so it
    can be moved). Returns how many boxes remain."""
    from osgeo import ogr
    xform = QgsCoordinateTransform(mask.crs(), crs,
                                   context.transformContext())
    polygons = {}
    index = QgsSpatialIndex()
    for feat in mask.getFeatures():
        geom = QgsGeometry(feat.geometry())
        if geom.isEmpty():
            continue
        geom.transform(xform)
        polygons[feat.id()] = geom
        index.addFeature(feat.id(), geom.boundingBox())
    ds = ogr.Open(path, 1)
    if ds is None:
        raise QgsProcessingException(f'mmretina: cannot open {path}')
    boxes = ds.GetLayer(0)
    drop, kept = [], 0
    for feat in boxes:
        x0, x1, y0, y1 = feat.GetGeometryRef().GetEnvelope()
        centre = QgsGeometry.fromPointXY(QgsPointXY((x0 + x1) / 2,
                                                    (y0 + y1) / 2))
        if any(polygons[i].contains(centre)
               for i in index.intersects(centre.boundingBox())):
            kept += 1
        else:
            drop.append(feat.GetFID())
    boxes.StartTransaction()
    for fid in drop:
        boxes.DeleteFeature(fid)
    boxes.CommitTransaction()
    boxes = ds = None  # closed: written
    if feedback is not None:
        feedback.pushInfo(f'mask: {kept} boxes with their centre inside '
                          f'kept, {len(drop)} outside removed')
    return kept


class DetectAlgorithm(_Base):

    def name(self):
        return 'detect'

    def displayName(self):  # noqa: N802
        return 'Detect objects'

    def shortHelpString(self):  # noqa: N802
        return ('Detects objects in a raster layer (or in every raster of a '
                'folder, into one layer) with an mmretina model '
                '(config + checkpoint, or an exported ONNX / OpenVINO '
                'model), window by window, and returns a GeoPackage of boxes '
                'in the raster\'s CRS (fields label, class_name, score, '
                'source, x1, y1, x2, y2: the pixel box), styled by score. '
                'An extent (any CRS) limits the detection to it; a polygon '
                'mask (any CRS) keeps the boxes whose centre is inside a '
                'polygon (and, without an extent, runs the model on the '
                'mask\'s bounding box only). '
                'Runs "mmretina predict" in the Python environment set in '
                'Processing > Options > Providers > mmretina.')

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer(
            'INPUT', 'Raster layer', optional=True))
        self.addParameter(QgsProcessingParameterFile(
            'INPUT_FOLDER', 'Or a folder of rasters (one layer for all; '
            'they share one CRS)',
            behavior=QgsProcessingParameterFile.Folder, optional=True))
        self._model_params()
        self.addParameter(QgsProcessingParameterEnum(
            'BACKEND', 'Backend', options=list(BACKENDS), defaultValue=0))
        self.addParameter(QgsProcessingParameterNumber(
            'SCORE_THR', 'Score threshold',
            QgsProcessingParameterNumber.Double, 0.3, minValue=0.0,
            maxValue=1.0))
        self._raster_params()
        self.addParameter(QgsProcessingParameterExtent(
            'EXTENT', 'Detect only inside this extent', optional=True))
        self.addParameter(QgsProcessingParameterVectorLayer(
            'MASK', 'Keep only boxes whose centre is inside these polygons',
            [QgsProcessing.TypeVectorPolygon], optional=True))
        self.addParameter(QgsProcessingParameterVectorDestination(
            'OUTPUT', 'Detections (GeoPackage)',
            QgsProcessing.TypeVectorPolygon))

    def _inputs(self, parameters, context, work):
        """The path mmretina predict reads (the raster, its VRT subset, or
        the folder), whether it is a folder, the mask layer (or None) and
        the raster's CRS."""
        layer = self.parameterAsRasterLayer(parameters, 'INPUT', context)
        folder = self.parameterAsFile(parameters, 'INPUT_FOLDER',
                                      context).strip()
        if (layer is None) == (not folder):
            raise QgsProcessingException(
                'mmretina: give either a raster layer (INPUT) or a folder of '
                'rasters (INPUT_FOLDER), not '
                + ('both' if folder else 'neither'))
        has_extent = parameters.get('EXTENT') not in (None, '')
        mask = (self.parameterAsVectorLayer(parameters, 'MASK', context)
                if parameters.get('MASK') not in (None, '') else None)
        if folder:
            if has_extent or mask is not None:
                raise QgsProcessingException(
                    'mmretina: EXTENT and MASK apply to a raster layer '
                    '(INPUT), not to a folder; run the rasters one by one '
                    '(Run as Batch Process)')
            folder = absolute(folder)
            if not osp.isdir(folder):
                raise QgsProcessingException(
                    f'mmretina: the folder {folder} does not exist')
            check_one_crs(folder, 'one layer of detections')
            return folder, True, None, None
        if has_extent:
            rect = self.parameterAsExtent(parameters, 'EXTENT', context,
                                          layer.crs())
            return (subset(layer, rect, osp.join(work, 'subset'), 'extent'),
                    False, mask, layer.crs())
        if mask is not None:
            xform = QgsCoordinateTransform(mask.crs(), layer.crs(),
                                           context.transformContext())
            rect = xform.transformBoundingBox(mask.extent())
            return (subset(layer, rect, osp.join(work, 'subset'),
                           'mask\'s bounding box'), False, mask, layer.crs())
        return raster_path(layer), False, None, layer.crs()

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        backend = BACKENDS[self.parameterAsEnum(parameters, 'BACKEND',
                                                context)]
        out = osp.abspath(self.parameterAsOutputLayer(parameters, 'OUTPUT',
                                                      context))
        if not out.lower().endswith('.gpkg'):
            raise QgsProcessingException(
                f'mmretina: the output {out} must be a GeoPackage (.gpkg)')
        thr = self.parameterAsDouble(parameters, 'SCORE_THR', context)
        work = tempfile.mkdtemp(prefix='mmretina_detect_')
        try:
            raster, is_folder, mask, crs = self._inputs(parameters, context,
                                                        work)
            found = osp.join(work, 'found')
            runner.run(['predict', raster]
                       + self._model_args(parameters, context, backend)
                       + ['--backend', backend, '--out-dir', found,
                          '--score-thr', repr(thr), '--format', 'gpkg']
                       + (['--merge-layers'] if is_folder else [])
                       + self._raster_args(parameters, context), feedback)
            # --merge-layers writes one detections.gpkg for all rasters
            layers = [f for f in os.listdir(found) if f.endswith('.gpkg')]
            if len(layers) != 1:
                raise QgsProcessingException(
                    f'mmretina: predict wrote no GeoPackage for {raster} '
                    '(a raster without CRS gets none)')
            if mask is not None:
                keep_inside(osp.join(found, layers[0]), crs, mask, context,
                            feedback)
            os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
            shutil.move(osp.join(found, layers[0]), out)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        if context.willLoadLayerOnCompletion(out):
            context.layerToLoadOnCompletionDetails(out).setPostProcessor(
                _ScoreStyle.create())
        return {'OUTPUT': out}


# the error layers: output name, description, status in matches.csv and
# outline colour (a colour-blind-safe trio: Okabe & Ito's bluish green,
# vermillion, blue)
ERROR_LAYERS = (('TRUE_POSITIVES', 'True positives', 'tp', '#009e73'),
                ('FALSE_POSITIVES', 'False positives', 'fp', '#d55e00'),
                ('MISSES', 'Misses', 'miss', '#0072b2'))


class _OutlineStyle(QgsProcessingLayerPostProcessorInterface):
    """Outlines in one colour, no fill: an error layer as it is loaded."""
    instances = {}  # colour -> post-processor, kept alive until QGIS calls

    def __init__(self, color: str):
        super().__init__()
        self.color = color

    def postProcessLayer(self, layer, context, feedback):  # noqa: N802
        from qgis.core import QgsFillSymbol, QgsSingleSymbolRenderer
        if layer is not None:
            layer.setRenderer(QgsSingleSymbolRenderer(
                QgsFillSymbol.createSimple(dict(
                    color='0,0,0,0', outline_color=self.color,
                    outline_width='0.6'))))
            layer.triggerRepaint()

    @staticmethod
    def create(color: str):
        if color not in _OutlineStyle.instances:
            _OutlineStyle.instances[color] = _OutlineStyle(color)
        return _OutlineStyle.instances[color]


class EvaluateAlgorithm(_Base):

    def name(self):
        return 'evaluate'

    def displayName(self):  # noqa: N802
        return 'Evaluate against labels'

    def shortHelpString(self):  # noqa: N802
        return ('Runs the model on a raster (or every raster of a folder, '
                'in one CRS) and compares its boxes with a label layer (any '
                'CRS) as the field reports it: precision and recall at IoU '
                '0.4, mAP. Returns the summary table (one row per raster, '
                'site and overall), the errors as three layers in the '
                'rasters\' CRS: true positives (the predicted boxes that '
                'match a label), false positives (the predicted boxes that '
                'match none) and misses (the labels no prediction matches), '
                'optionally all of them in one layer (status tp / fp / '
                'miss), and the folder of "mmretina evaluate" '
                '(summary.json, matches.csv, pictures).')

    def initAlgorithm(self, config=None):  # noqa: N802
        input_params(self, 'a summary row each and overall; they share '
                     'one CRS')
        self.addParameter(QgsProcessingParameterVectorLayer(
            'LABELS', 'Label layer (boxes or polygons)'))
        self._model_params()
        self.addParameter(QgsProcessingParameterNumber(
            'SCORE_THR', 'Score threshold',
            QgsProcessingParameterNumber.Double, 0.3, minValue=0.0,
            maxValue=1.0))
        self.addParameter(QgsProcessingParameterNumber(
            'IOU', 'A match has IoU above',
            QgsProcessingParameterNumber.Double, 0.4, minValue=0.0,
            maxValue=1.0))
        self._raster_params()
        self.addParameter(QgsProcessingParameterFeatureSink(
            'SUMMARY', 'Summary', QgsProcessing.TypeVector))
        for name, description, _, _ in ERROR_LAYERS:
            self.addParameter(QgsProcessingParameterFeatureSink(
                name, description, QgsProcessing.TypeVectorPolygon))
        self.addParameter(QgsProcessingParameterFeatureSink(
            'MATCHES', 'All matches in one layer (status tp / fp / miss)',
            QgsProcessing.TypeVectorPolygon, optional=True,
            createByDefault=False))
        self.addParameter(QgsProcessingParameterFolderDestination(
            'OUTPUT_FOLDER', 'Evaluation folder'))
        self.addOutput(QgsProcessingOutputNumber('PRECISION', 'Precision'))
        self.addOutput(QgsProcessingOutputNumber('RECALL', 'Recall'))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        raster, layer = raster_or_folder(
            self, parameters, context, one_crs='one layer of matches')
        folder = osp.abspath(self.parameterAsString(
            parameters, 'OUTPUT_FOLDER', context))
        os.makedirs(folder, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix='mmretina_eval_')
        try:
            labels = vector_path(self.parameterAsVectorLayer(
                parameters, 'LABELS', context), tmp, feedback)
            runner.run(['evaluate'] + self._model_args(parameters, context)
                       + ['--rasters', raster, '--labels', labels,
                          '--out-dir', folder, '--score-thr',
                          repr(self.parameterAsDouble(parameters,
                                                      'SCORE_THR', context)),
                          '--iou', repr(self.parameterAsDouble(
                              parameters, 'IOU', context))]
                       + self._raster_args(parameters, context), feedback)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        with open(osp.join(folder, 'summary.json')) as f:
            summary = json.load(f)
        results = {'OUTPUT_FOLDER': folder,
                   'PRECISION': summary['overall']['precision'],
                   'RECALL': summary['overall']['recall']}
        results['SUMMARY'] = self._summary(summary, parameters, context)
        results.update(self._matches(folder, layer, parameters, context,
                                     feedback))
        return results

    def _summary(self, summary, parameters, context):
        names = ('precision', 'recall', 'tp', 'n_gt', 'n_pred', 'mAP',
                 'mAP50')
        fields = QgsFields()
        fields.append(QgsField('level', QVariant.String))
        fields.append(QgsField('name', QVariant.String))
        for n in names:
            fields.append(QgsField(n, QVariant.Int if n in (
                'tp', 'n_gt', 'n_pred') else QVariant.Double))
        sink, dest = self.parameterAsSink(parameters, 'SUMMARY', context,
                                          fields, QgsWkbTypes.NoGeometry)
        rows = [('raster', k, v) for k, v in summary['per_raster'].items()]
        rows += [('site', k, v) for k, v in summary['per_site'].items()]
        rows += [('overall', 'all', summary['overall'])]
        for level, name, row in rows:
            feat = QgsFeature(fields)
            feat.setAttributes([level, name] + [row.get(n) for n in names])
            sink.addFeature(feat, QgsFeatureSink.FastInsert)
        return dest

    def _matches(self, folder, layer, parameters, context, feedback):
        """matches.csv (pixel boxes) as polygons in the rasters' CRS, split
        by status into TRUE_POSITIVES (the predicted box), FALSE_POSITIVES
        (the predicted box) and MISSES (the label's box), and all of them
        in MATCHES when it is asked for. Each row's box goes through the
        geotransform of its own raster (the ``image`` column; a folder's
        rasters share one CRS, checked before the run). Returns the
        outputs' destinations."""
        from osgeo import gdal
        from qgis.core import QgsCoordinateReferenceSystem
        transforms = {}

        def geotransform(image):
            if image not in transforms:
                path = (layer.source() if layer is not None
                        else absolute(image))
                ds = gdal.Open(path)
                if ds is None:
                    raise QgsProcessingException(
                        f'mmretina: cannot open the raster {path} of '
                        'matches.csv')
                transforms[image] = (ds.GetGeoTransform(),
                                     ds.GetProjection())
            return transforms[image][0]

        with open(osp.join(folder, 'matches.csv'), newline='') as f:
            rows = list(csv.DictReader(f))
        if layer is not None:
            crs = layer.crs()
        else:
            crs = QgsCoordinateReferenceSystem()
            if rows:
                geotransform(rows[0]['image'])
                wkt = transforms[rows[0]['image']][1]
                if wkt:
                    crs = QgsCoordinateReferenceSystem.fromWkt(wkt)

        fields = QgsFields()
        for n, t in (('status', QVariant.String), ('iou', QVariant.Double),
                     ('score', QVariant.Double),
                     ('true_label', QVariant.String),
                     ('predicted_label', QVariant.String),
                     ('truth_id', QVariant.Int),
                     ('prediction_id', QVariant.Int),
                     ('raster', QVariant.String)):
            fields.append(QgsField(n, t))
        sinks, dests = {}, {}
        for name, _, status, color in ERROR_LAYERS:
            sinks[status], dests[name] = self.parameterAsSink(
                parameters, name, context, fields, QgsWkbTypes.Polygon, crs)
            if context.willLoadLayerOnCompletion(dests[name]):
                context.layerToLoadOnCompletionDetails(
                    dests[name]).setPostProcessor(_OutlineStyle.create(color))
        every, dest = self.parameterAsSink(
            parameters, 'MATCHES', context, fields, QgsWkbTypes.Polygon, crs)
        if every is not None:  # optional: skipped unless asked for
            dests['MATCHES'] = dest
        for row in rows:
            if row['status'] not in sinks:
                raise QgsProcessingException(
                    f'mmretina: matches.csv in {folder} has the status '
                    f'"{row["status"]}"; expected tp, fp or miss')
            gt = geotransform(row['image'])

            def to_map(x, y):
                return QgsPointXY(gt[0] + x * gt[1] + y * gt[2],
                                  gt[3] + x * gt[4] + y * gt[5])

            side = 'gt' if row['status'] == 'miss' else 'pred'
            x1, y1, x2, y2 = (float(row[f'{side}_{k}'])
                              for k in ('xmin', 'ymin', 'xmax', 'ymax'))
            feat = QgsFeature(fields)
            feat.setGeometry(QgsGeometry.fromPolygonXY([[
                to_map(x1, y1), to_map(x2, y1), to_map(x2, y2),
                to_map(x1, y2), to_map(x1, y1)]]))
            feat.setAttributes([
                row['status'], float(row['iou'] or 0),
                float(row['score']) if row['score'] else None,
                row['true_label'] or None, row['predicted_label'] or None,
                int(row['truth_id']) if row['truth_id'] else None,
                int(row['prediction_id']) if row['prediction_id']
                else None, osp.basename(row['image'])])
            sinks[row['status']].addFeature(feat, QgsFeatureSink.FastInsert)
            if every is not None:
                every.addFeature(feat, QgsFeatureSink.FastInsert)
        if feedback is not None:
            counts = {s: sum(r['status'] == s for r in rows)
                      for _, _, s, _ in ERROR_LAYERS}
            feedback.pushInfo('matches: ' + ', '.join(
                f'{n} {s}' for s, n in counts.items()))
        return dests


class ChipsAlgorithm(_Base):

    def name(self):
        return 'chips'

    def displayName(self):  # noqa: N802
        return 'Make training chips'

    def shortHelpString(self):  # noqa: N802
        return ('Cuts training chips and COCO annotations from a raster (or '
                'a folder of rasters) and a '
                'label layer (any CRS), split by spatial blocks (e.g. '
                'train=0.8,val=0.2); a folder of rasters gives the chips of '
                'all in one COCO: the folder "mmretina convert raster" '
                'writes (images/, annotations/*.json).')

    def initAlgorithm(self, config=None):  # noqa: N802
        input_params(self, 'chips of all in one COCO')
        self.addParameter(QgsProcessingParameterVectorLayer(
            'LABELS', 'Label layer (boxes, polygons or points)'))
        self.addParameter(QgsProcessingParameterNumber(
            'CHIP', 'Chip side (px)', QgsProcessingParameterNumber.Integer,
            400, minValue=16))
        self.addParameter(QgsProcessingParameterString(
            'SPLIT', 'Split (e.g. train=0.8,val=0.2; empty: one file, '
            'all.json)', defaultValue='', optional=True))
        self.addParameter(QgsProcessingParameterString(
            'CLASS_FIELD', 'Class attribute (empty: one class)',
            defaultValue='', optional=True))
        self.addParameter(QgsProcessingParameterString(
            'BANDS', 'Bands read as R,G,B (1-based; empty: 1,2,3)',
            defaultValue='', optional=True))
        self.addParameter(QgsProcessingParameterString(
            'GSD', 'Resample to this GSD in metres (empty: the raster\'s own)',
            defaultValue='', optional=True))
        self.addParameter(QgsProcessingParameterFolderDestination(
            'OUTPUT', 'Chip folder'))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        raster, _ = raster_or_folder(self, parameters, context)
        folder = osp.abspath(self.parameterAsString(parameters, 'OUTPUT',
                                                    context))
        args = ['--out-dir', folder, '--chip',
                str(self.parameterAsInt(parameters, 'CHIP', context))]
        for key, flag in (('SPLIT', '--split'),
                          ('CLASS_FIELD', '--class-field'),
                          ('BANDS', '--bands'), ('GSD', '--gsd')):
            value = self.parameterAsString(parameters, key, context).strip()
            if value:
                args += [flag, value]
        tmp = tempfile.mkdtemp(prefix='mmretina_chips_')
        try:
            labels = vector_path(self.parameterAsVectorLayer(
                parameters, 'LABELS', context), tmp, feedback)
            runner.run(['convert', 'raster', raster, labels] + args,
                       feedback)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return {'OUTPUT': folder}
