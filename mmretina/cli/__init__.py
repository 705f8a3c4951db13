"""The command lines of mmretina: each module holds the argparse ``main`` of
one tool; ``tools/<same path>.py`` and ``mmretina <command>``
(:mod:`mmretina.cli.main`) call it. The work is done by library functions these modules import."""
