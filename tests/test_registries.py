"""Data sets, transformations and audit policies register themselves; the CLI lists what is registered."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from activemint.cli import build_parser, main
from activemint.data import DATASETS, dataset_info, list_datasets, register_dataset
from activemint.transforms import POLICIES, TRANSFORMS, AuditPolicy, apply_transform, register_policy, register_transform


@pytest.fixture
def toys():
    """A toy transformation, audit policy and data set, registered for one test and removed after it."""
    @register_transform("toy_invert", "inverted pixels", {"on": 1.0})
    def _invert(img, value, rng):
        return 255 - img

    register_policy("toy-policy", AuditPolicy({"toy_invert": (1.0, 1.0)}, p=1.0))
    register_dataset(dataclasses.replace(dataset_info("digits"), name="toy-digits", description="toy copy of digits"),
                     aliases=("toydigits",))
    try:
        yield
    finally:
        TRANSFORMS.pop("toy_invert", None)
        POLICIES.pop("toy-policy", None)
        DATASETS.pop("toy-digits", None)
        from activemint.data.registry import ALIASES

        ALIASES.pop("toydigits", None)


def test_registered_names_reach_the_cli(toys, capsys):
    import torch

    x = torch.arange(16, dtype=torch.uint8).reshape(1, 1, 4, 4)
    assert torch.equal(apply_transform(x, "toy_invert", "on"), 255 - x)
    assert torch.equal(POLICIES["toy-policy"](x, np.random.default_rng(0)), 255 - x)  # p = 1: always the view
    assert "toy-digits" in list_datasets() and dataset_info("toydigits").name == "toy-digits"

    assert main(["transforms"]) == 0
    out = capsys.readouterr().out
    assert "toy_invert" in out and "toy-policy" in out
    assert main(["datasets"]) == 0
    assert "toy-digits" in capsys.readouterr().out
    helps = {name: " ".join(build_parser()._subparsers._group_actions[0].choices[name].format_help().split())
             for name in ("robustness", "train")}
    assert "toy_invert" in helps["robustness"]
    assert "toy-policy" in helps["train"]


def test_a_name_is_registered_once(toys):
    with pytest.raises(ValueError, match="already registered"):
        register_transform("toy_invert", "again", {"on": 1.0})(lambda img, value, rng: img)
    with pytest.raises(ValueError, match="already registered"):
        register_policy("toy-policy", AuditPolicy({"toy_invert": (1.0, 1.0)}))
    with pytest.raises(ValueError, match="already registered"):
        register_dataset(dataset_info("digits"), aliases=())
    with pytest.raises(ValueError, match="already registered"):
        register_dataset(dataclasses.replace(dataset_info("digits"), name="other"), aliases=("toydigits",))
