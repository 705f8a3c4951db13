"""Run one mmretina algorithm as QGIS's Processing Toolbox runs it, headless,
with QGIS's own python3 (``PYTHONPATH=/usr/share/qgis/python``,
``QT_QPA_PLATFORM=offscreen``; see qgis_harness.toolbox)::

    python3 toolbox.py SPEC.json

SPEC holds ``algorithm`` (e.g. "mmretina:detect"), ``parameters`` (values
as in ``processing.run``; the names in ``load_outputs`` are destinations
loaded into the project on completion, as with the dialog's "Open output
file after running"), ``rasters`` (files loaded into the project first, as
the user has them), ``cancel_at_progress`` (true: Cancel as soon as the
progress bar moves) and ``render`` ({"path", "width"}:
draw the project's layers, the first raster's extent, to an image).

What the Toolbox's AlgorithmDialog does in QGIS 3.22, step by step: the
plugin's provider registered by the plugin's own classFactory and
initProcessing; the context of ``processing.tools.dataobjects``; the
algorithm run in a QgsProcessingAlgRunnerTask on the application's task
manager (a worker thread, the main thread free for the Cancel button:
``feedback.cancel()``); then ``handleAlgorithmResults``, which loads the
outputs into the project and applies the algorithm's post-processors
(the styles), called whether the run succeeded or not, as the dialog's
``finish`` does. Prints one line ``RESULT {json}``: ok, results, the log and
errors, the project's layers (name, source, features, renderer) and, for a
Cancel, the child processes alive before and after it.
"""
import json
import os
import os.path as osp
import sys
import time

PLUGINS = '/usr/share/qgis/python/plugins'  # processing


def _processes(marker: str):
    """pid -> command line of this process's descendants whose command line
    holds ``marker`` (mmretina's child and its workers)."""
    parents, cmds = {}, {}
    for pid in filter(str.isdigit, os.listdir('/proc')):
        try:
            with open(f'/proc/{pid}/stat') as f:
                stat = f.read()
            with open(f'/proc/{pid}/cmdline', 'rb') as f:
                cmd = f.read().replace(b'\0', b' ').decode(errors='replace')
        except OSError:
            continue
        fields = stat[stat.rindex(')') + 2:].split()
        if fields[0] == 'Z':  # a zombie has ended
            continue
        parents[int(pid)], cmds[int(pid)] = int(fields[1]), cmd
    ours = {os.getpid()}
    changed = True
    while changed:
        changed = False
        for pid, ppid in parents.items():
            if ppid in ours and pid not in ours:
                ours.add(pid)
                changed = True
    return {pid: cmds[pid] for pid in ours
            if pid != os.getpid() and marker in cmds[pid]}


def _layer_info(layer):
    from qgis.core import QgsMapLayerType
    info = dict(name=layer.name(), source=layer.source(),
                type='raster' if layer.type() == QgsMapLayerType.RasterLayer
                else 'vector')
    if info['type'] == 'vector':
        renderer = layer.renderer()  # None: a table without geometry
        info.update(features=layer.featureCount(), crs=layer.crs().authid(),
                    renderer=renderer.type() if renderer else None)
        if renderer is None:
            pass
        elif renderer.type() == 'graduatedSymbol':
            info['attribute'] = renderer.classAttribute()
            info['colors'] = [r.symbol().symbolLayer(0).strokeColor().name()
                              for r in renderer.ranges()]
        elif renderer.type() == 'singleSymbol':
            info['colors'] = [
                renderer.symbol().symbolLayer(0).strokeColor().name()]
    return info


def render(project, extent_layer, path: str, width: int) -> None:
    """The project's layers, in the layer tree's order, over the extent of
    ``extent_layer``, drawn by QGIS's map renderer to ``path`` (PNG or
    JPEG by its extension)."""
    from qgis.core import QgsMapRendererParallelJob, QgsMapSettings
    from qgis.PyQt.QtCore import QSize
    from qgis.PyQt.QtGui import QColor
    settings = QgsMapSettings()
    settings.setLayers(project.layerTreeRoot().layerOrder())  # top first
    settings.setDestinationCrs(extent_layer.crs())
    ext = extent_layer.extent()
    settings.setExtent(ext)
    settings.setBackgroundColor(QColor('white'))
    settings.setOutputSize(QSize(
        width, max(1, round(width * ext.height() / ext.width()))))
    job = QgsMapRendererParallelJob(settings)
    job.start()
    job.waitForFinished()
    fmt = 'JPG' if path.lower().endswith(('.jpg', '.jpeg')) else 'PNG'
    if not job.renderedImage().save(path, fmt, 85 if fmt == 'JPG' else -1):
        raise RuntimeError(f'{path}: QGIS could not write the image')


def run(spec: dict) -> dict:
    from qgis.core import (QgsApplication, QgsProcessingAlgRunnerTask,
                           QgsProcessingFeedback,
                           QgsProcessingOutputLayerDefinition, QgsProject,
                           QgsRasterLayer)
    from qgis.PyQt.QtCore import QEventLoop, QTimer

    sys.path.insert(0, PLUGINS)
    from processing.core.Processing import Processing
    from processing.gui.Postprocessing import handleAlgorithmResults
    from processing.tools import dataobjects
    Processing.initialize()
    import mmretina_qgis
    plugin = mmretina_qgis.classFactory(None)  # as QGIS loads the plugin
    plugin.initProcessing()

    project = QgsProject.instance()
    rasters = []
    for path in spec.get('rasters', []):
        layer = QgsRasterLayer(path, osp.basename(path))
        if not layer.isValid():
            raise RuntimeError(f'{path}: QGIS cannot open it')
        project.addMapLayer(layer)
        rasters.append(layer)

    class Feedback(QgsProcessingFeedback):
        """The dialog's log: what the algorithm reports, by kind."""

        def __init__(self):
            super().__init__()
            self.log, self.errors = [], []

        def pushInfo(self, info):  # noqa: N802
            self.log.append(info)

        def pushCommandInfo(self, info):  # noqa: N802
            self.log.append(info)

        def pushConsoleInfo(self, info):  # noqa: N802
            self.log.append(info)

        def reportError(self, error, fatalError=False):  # noqa: N802
            self.errors.append(error)

    alg = QgsApplication.processingRegistry().createAlgorithmById(
        spec['algorithm'])
    feedback = Feedback()
    context = dataobjects.createContext(feedback)
    parameters = dict(spec['parameters'])
    for name in spec.get('load_outputs', []):
        parameters[name] = QgsProcessingOutputLayerDefinition(
            parameters[name], project)
    out = dict(cancel=None)
    loop = QEventLoop()
    done = dict(ok=None, results={})
    t0 = time.time()

    def on_complete(ok, results):
        done.update(ok=ok, results=results, seconds=time.time() - t0)
        loop.quit()

    task = QgsProcessingAlgRunnerTask(alg, parameters, context, feedback)
    task.executed.connect(on_complete)
    QgsApplication.taskManager().addTask(task)

    def cancel_when_due():  # the user's click on Cancel, in the main thread
        if out['cancel'] is not None or done['ok'] is not None:
            return
        if feedback.progress() > 0:
            out['cancel'] = dict(
                progress=feedback.progress(),
                alive_before=sorted(_processes(' -m mmretina ')))
            feedback.cancel()

    timer = QTimer()
    if spec.get('cancel_at_progress'):
        timer.timeout.connect(cancel_when_due)
        timer.start(50)
    QTimer.singleShot(int(spec.get('timeout_s', 600) * 1000), loop.quit)
    loop.exec_()
    timer.stop()
    if done['ok'] is None:
        raise RuntimeError(f'{spec["algorithm"]} did not finish in time')
    if out['cancel'] is not None:
        before = out['cancel']['alive_before']
        out['cancel']['alive_after'] = sorted(
            set(before) & set(_processes(' -m mmretina ')))
    # the dialog's finish(): load what the algorithm left to load
    handleAlgorithmResults(alg, context, feedback, False, done['results'])
    out.update(ok=bool(done['ok']), seconds=done['seconds'],
               results={k: v if isinstance(v, (int, float, str)) else str(v)
                        for k, v in done['results'].items()},
               log=feedback.log, errors=feedback.errors,
               layers=[_layer_info(node.layer()) for node in
                       project.layerTreeRoot().findLayers()])  # top first
    if spec.get('render'):
        render(project, rasters[0], spec['render']['path'],
               spec['render'].get('width', 600))
    return out


def main():
    from qgis.core import QgsApplication
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    app = QgsApplication([], False)
    app.initQgis()
    result = run(spec)
    print('RESULT ' + json.dumps(result), flush=True)
    app.exitQgis()


if __name__ == '__main__':
    main()
