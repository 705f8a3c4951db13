"""Cut training chips and COCO annotations from rasters and vector labels.

    # one orthomosaic, crowns drawn in a GeoPackage (any CRS)
    python tools/dataset_converters/raster_to_coco.py ortho.tif crowns.gpkg \\
        --out-dir data/chips --chip 400 --split train=0.8,val=0.2 \\
        --block 50m
    # a folder of rasters, stems as points, a class attribute
    python tools/dataset_converters/raster_to_coco.py rasters/ stems.shp \\
        --out-dir data/chips --point-radius 1.5 --class-field species
    # a CSV of raster,labels rows (each raster its own layer)
    python tools/dataset_converters/raster_to_coco.py pairs.csv \\
        --out-dir data/chips --bands 4,3,2 --keep-geo

RASTERS: a raster, a folder of rasters or a CSV of ``raster,labels`` rows;
LABELS: a GeoPackage, Shapefile, GeoJSON, FlatGeobuf or CSV of map
coordinates (``x,y`` or ``xmin,ymin,xmax,ymax``; ``--label-crs``), or a
folder of them. Labels are reprojected to each raster's CRS; boxes and
polygons become their pixel envelope, points a square of --point-radius
metres each side. Chips are read with the bands and scaling rule of
inference (``--bands``, ``--scale``; uint16 / float: 2-98 percentile
stretch). A box cut by a chip edge is kept (clipped) with at least
--min-visible of its area inside, else written as an ignore region
(iscrowd=1). ``--split`` deals square blocks (``--block``) to the splits; no
pixel is shared between splits.

Writes OUT_DIR/images/*.png (or .tif with --keep-geo) and
OUT_DIR/annotations/<split>.json, checks each with mmretina.CocoDataset and
prints the lines to paste into a config. The library:
:mod:`mmretina.datasets.converters.raster`.

--rotated (oriented detectors, mmrotate): each label becomes the
minimum-area rotated rectangle of its vertices in the raster's pixels,
written as DOTA label files (four corners, class, difficult) in the layout
of mmrotate's DOTADataset: OUT_DIR/<split>/images/ and
OUT_DIR/<split>/annfiles/. A rectangle with at least --min-visible of its
area in a chip is kept whole, with difficult 2 where the chip's edge cuts
it (the rule of DOTA's patches); below, it is left out.
"""
import argparse
import sys

from mmretina.cli.options import parse_gsd_flag
from mmretina.datasets.converters.records import ConversionError


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog='mmretina convert raster',
        description=__doc__.split('\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split('\n', 1)[1] + '\nexamples:\n'
        '  mmretina convert raster ortho.tif crowns.gpkg \\\n'
        '      --out-dir data/chips --chip 400 --split train=0.8,val=0.2 '
        '\\\n'
        '      --block 50m\n'
        '  mmretina convert raster ortho.tif ships.gpkg --out-dir data/ships '
        '\\\n'
        '      --rotated --class-field type --chip 1024 --min-visible 0.7\n')
    p.add_argument('rasters', help='a raster, a folder of rasters, or a CSV '
                   'of raster,labels rows')
    p.add_argument('labels', nargs='?', help='a vector layer or a folder of '
                   'them (omit with a CSV of pairs)')
    p.add_argument('--out-dir', required=True)
    p.add_argument('--chip', type=int, default=400, help='chip side, px '
                   '(default %(default)s)')
    p.add_argument('--overlap', type=float, default=0.0,
                   help='chip overlap: px, or a fraction of --chip when < 1 '
                   '(default %(default)g)')
    p.add_argument('--class-field', help='the attribute holding the class '
                   '(default: one class, "object")')
    p.add_argument('--classes', help='class names in order, comma '
                   'separated (default: the values found, sorted)')
    p.add_argument('--point-radius', type=float,
                   help='metres: point labels become boxes of twice this '
                   'side')
    p.add_argument('--label-crs', help='CRS of label layers that have none '
                   '(CSV, Shapefile without .prj), e.g. EPSG:32617')
    p.add_argument('--min-visible', type=float, default=0.5,
                   help='a box cut by a chip edge is kept with at least this '
                   'fraction inside, else ignored (iscrowd=1); default '
                   '%(default)s')
    p.add_argument('--empty-ratio', type=float, default=0.1,
                   help='chips without boxes kept per chip with boxes '
                   '(default %(default)s)')
    p.add_argument('--split', help='e.g. train=0.8,val=0.2 (default: one '
                   'file, all.json)')
    p.add_argument('--block', help='split block side: metres (50m) or px '
                   '(2000 or 2000px); default 5 chips')
    p.add_argument('--bands', help='1-based bands read as R,G,B (default '
                   '1,2,3, or 1,1,1 for a one-band raster), as at inference')
    p.add_argument('--scale', nargs='+', help='LO,HI (all bands) or one '
                   'per band, or pLO,pHI percentiles; default: uint8 as is, '
                   'others p2,p98, as at inference')
    p.add_argument('--gsd', type=parse_gsd_flag, default='off',
                   help='cut chips from rasters with a CRS resampled to this '
                   'ground sample distance in metres, e.g. 0.1 (default '
                   'off: each raster\'s own); the config lines printed '
                   'state the chips\' gsd')
    p.add_argument('--keep-geo', action='store_true',
                   help='write GeoTIFF chips with their georeferencing '
                   '(default PNG)')
    p.add_argument('--rotated', action='store_true',
                   help='minimum-area rotated rectangles in the DOTA layout '
                   '(mmrotate\'s DOTADataset) instead of COCO boxes')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--no-check', action='store_true',
                   help='do not load the output with mmretina.CocoDataset '
                   '(--rotated: mmrotate\'s DOTADataset)')
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from mmretina.geo.raster import RasterError, parse_bands
    from mmretina.datasets.converters.convert import check_with_mmretina
    from mmretina.datasets.converters.dota import check_dota_layout
    from mmretina.datasets.converters.raster import (raster_config_lines,
                                                     raster_to_coco)
    try:
        result = raster_to_coco(
            args.rasters, args.labels, args.out_dir, chip=args.chip,
            overlap=args.overlap, class_field=args.class_field,
            classes=([c.strip() for c in args.classes.split(',')]
                     if args.classes else None),
            point_radius=args.point_radius, label_crs=args.label_crs,
            min_visible=args.min_visible, empty_ratio=args.empty_ratio,
            split=args.split, block=args.block,
            bands=parse_bands(args.bands), scale=args.scale,
            gsd=None if args.gsd == 'off' else args.gsd,
            keep_geo=args.keep_geo, seed=args.seed, rotated=args.rotated)
        for reason, n in sorted(result['report'].items()):
            if n:
                print(f'  {reason}: {n}')
        for name, o in result['splits'].items():
            if args.rotated:
                line = (f"{name}: {o['path']}: {o['chips']} chips, "
                        f"{o['objects']} rotated boxes ({o['cut']} cut by a "
                        'chip edge, difficult 2)')
                if not args.no_check and o['chips']:
                    line += ("; mmrotate's DOTADataset loads it: "
                             + check_dota_layout(o['path'], o['img_dir'],
                                                 result['classes'],
                                                 result['img_suffix']))
                print(line)
                continue
            coco = o['coco']
            crowd = sum(a['iscrowd'] for a in coco['annotations'])
            line = (f"{name}: {o['path']}: {len(coco['images'])} chips, "
                    f"{len(coco['annotations']) - crowd} boxes, {crowd} "
                    'ignore regions')
            if not args.no_check and coco['images']:
                line += ('; mmretina.CocoDataset loads it: '
                         + check_with_mmretina(o['path'], result['img_dir'],
                                               result['classes']))
            print(line)
    except (ConversionError, RasterError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    except ImportError as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    print(raster_config_lines(result))
    return 0


if __name__ == '__main__':
    sys.exit(main())
