"""Command line interface (filled in below)."""


def main(argv=None) -> int:
    return 0
