"""``activemint datasets`` and ``activemint archs``: what is registered."""
from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    sub.add_parser("datasets", help="list the registered data sets").set_defaults(func=datasets)
    sub.add_parser("archs", help="list the architectures and their tap points").set_defaults(func=archs)


def datasets(args: argparse.Namespace) -> int:
    from activemint import data

    for n in data.list_datasets():
        info = data.dataset_info(n)
        print(f"{n:16s} {tuple(info.input_shape)} {info.num_classes:>6d} classes  {info.description}")
    return 0


def archs(args: argparse.Namespace) -> int:
    from activemint import models

    for n in models.list_archs():
        spec = models.arch_spec(n)
        print(f"{n:14s} " + "  ".join(f"{s}={','.join(spec.taps[s])}" for s in ("entry", "middle", "output")))
    return 0
