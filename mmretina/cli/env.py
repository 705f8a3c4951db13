"""Print the environment for a bug report: Python, torch, mmcv (and whether
its compiled ops load), mmdet, mmengine, GDAL and its drivers, the GIS
packages, the ONNX Runtime / OpenVINO runtimes and the CPU
(:mod:`mmretina.utils.collect_env`)."""
import argparse
import json

from mmretina.utils.collect_env import collect_env, format_env


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog='mmretina env',
        description=__doc__.split('\n\n')[0].replace('\n', ' '),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='examples:\n'
        '  mmretina env          # paste the lines into the issue\n'
        '  mmretina env --json   # one JSON object\n')
    p.add_argument('--json', action='store_true',
                   help='print one JSON object instead of name: value lines')
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    env = collect_env()
    print(json.dumps(env, indent=2) if args.json else format_env(env))
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
