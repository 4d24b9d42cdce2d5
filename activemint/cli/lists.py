"""``activemint datasets``, ``activemint archs`` and ``activemint transforms``: what is registered."""
from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    sub.add_parser("datasets", help="list the registered data sets").set_defaults(func=datasets)
    sub.add_parser("archs", help="list the architectures and their tap points").set_defaults(func=archs)
    sub.add_parser("transforms", help="list the transformations (robustness --transforms) and audit policies (train --audit-policy)"
                   ).set_defaults(func=transforms)


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


def transforms(args: argparse.Namespace) -> int:
    from activemint.transforms import POLICIES, TRANSFORMS

    for t in TRANSFORMS.values():
        print(f"{t.name:20s} {t.parameter}{' (RGB only)' if t.rgb_only else ''}; levels: {', '.join(t.levels)}")
    print()
    for name, policy in POLICIES.items():
        print(f"policy {name:13s} p = {policy.p:g} of {', '.join(policy.ranges)}")
    return 0
