"""Draw vector layers over a georeferenced raster with map coordinates on
the axes (a quick look without opening QGIS).

    # the detections tools/infer.py wrote, over their raster
    python tools/analysis_tools/plot_layer.py OSBS_029.tif out/OSBS_029.gpkg \\
        --out OSBS_029_map.png --score-thr 0.3
    # detections and ground truth (any CRS: reprojected to the raster's)
    python tools/analysis_tools/plot_layer.py plot.tif dets.gpkg crowns.gpkg \\
        --labels detections "ground truth" --out plot_map.png

The raster is read as inference reads it (--bands, --scale) and decimated to
--max-side px; the axes are the raster's CRS (eastings and northings in
metres for a projected CRS). The library: ``mmretina.geo.writers.
plot_layer_on_raster``.
"""
import argparse
import os.path as osp
import sys

COLOURS = ('#ff3838', '#ffd21d', '#38c8ff', '#48f90a', '#ff38c8')


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog='mmretina analyze plot-layer',
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split('\n\n', 1)[1] + '\nexamples:\n'
        '  mmretina analyze plot-layer OSBS_029.tif out/OSBS_029.gpkg \\\n'
        '      --out OSBS_029_map.png --score-thr 0.3\n')
    p.add_argument('raster', help='a georeferenced raster')
    p.add_argument('layers', nargs='+', help='vector layers (GeoPackage, '
                   'Shapefile, GeoJSON, FlatGeobuf)')
    p.add_argument('--out', required=True, help='the PNG to write')
    p.add_argument('--labels', nargs='+', help='legend entry per layer '
                   '(default: the file names)')
    p.add_argument('--score-thr', type=float, default=0.0,
                   help='features whose score is below it are not drawn')
    p.add_argument('--bands', help='1-based bands read as R,G,B')
    p.add_argument('--scale', nargs='+', help='LO,HI per band or for all')
    p.add_argument('--max-side', type=int, default=2048)
    p.add_argument('--title')
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from mmretina.geo.writers import plot_layer_on_raster
    from mmretina.geo.raster import RasterError
    labels = args.labels or [osp.basename(x) for x in args.layers]
    if len(labels) != len(args.layers):
        print(f'error: {len(labels)} --labels for {len(args.layers)} layers',
              file=sys.stderr)
        return 2
    missing = [x for x in args.layers if not osp.isfile(x)]
    if missing:
        print(f'error: {missing[0]}: no such file', file=sys.stderr)
        return 2
    layers = [(x, label, COLOURS[i % len(COLOURS)])
              for i, (x, label) in enumerate(zip(args.layers, labels))]
    try:
        counts = plot_layer_on_raster(
            args.out, args.raster, layers, bands=args.bands,
            scale=args.scale, max_side=args.max_side,
            score_thr=args.score_thr, title=args.title)
    except (RasterError, ValueError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    print(f'{args.out}: ' + ', '.join(
        f'{n} features of {label}' for n, label in zip(counts, labels)))
    return 0


if __name__ == '__main__':
    sys.exit(main())
