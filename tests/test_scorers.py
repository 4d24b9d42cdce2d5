"""The scorer registry: a toy scorer with one parameter in one file, and conformance of every scorer.

Uses the small cached session runs of test_compare.py (400 members, 15 epochs; trained once by
``conftest.trained_run``).  The conformance test runs every registered scorer on the exact
roles of the audited run (tiny heads and reference models: this checks the protocol, not the
strength of the methods).
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import pytest
import torch
from conftest import trained_run

from activemint.attacks import GradientMintConfig, PassiveMintConfig, ReferenceConfig
from activemint.cli import build_parser, main
from activemint.cli.scorers import scorer_configs
from activemint.compare import compare_context, run_compare
from activemint.config import ConfigBase
from activemint.errors import UserError
from activemint.runs import load_run
from activemint.scorers import REGISTRY, Scorer, ScorerCache, register, score_views, unregister

SMALL = dict(members=400, external=800, validation=100, calibration=300, eval_nonmembers=400, epochs=15)


@pytest.fixture(scope="module")
def small_runs():
    return trained_run(**SMALL), trained_run(**SMALL, mint=False)


# ---------------------------------------------------------------- a toy scorer, one file
class ScaledMeanPixel(Scorer):
    """A toy method with one parameter: ``scale`` x the image's mean pixel value."""

    key, method, family, needs = "toy_scaled", "Scaled mean pixel (toy)", "toy", "the images only"
    name = "Scaled mean pixel (toy)"
    suites = ("compare", "robustness")

    @dataclass
    class Config(ConfigBase):
        scale: float = field(default=2.5, metadata={"help": "factor on the mean pixel"})
        name: ClassVar[str] = "toy scorer"
        bounds: ClassVar[dict] = {"scale": (0.0, 100.0)}

    def prepare(self, ctx):
        self.scale = ctx.config(type(self)).scale

    def score_images(self, images):
        return self.scale * images.double().mean(dim=(1, 2, 3)).numpy()


@pytest.fixture
def toy():
    register(ScaledMeanPixel)
    yield ScaledMeanPixel
    unregister(ScaledMeanPixel.key)


def test_toy_scorer_flag_in_both_commands_default_written_once(toy, capsys):
    for command in ("compare", "robustness"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        out = capsys.readouterr().out
        # its flag, with the default the Config states (the only place 2.5 is written)
        assert "--toy-scaled-scale SCALE" in out and "factor on the mean pixel (default 2.5)" in " ".join(out.split())
        args = build_parser().parse_args([command, "x" if command == "robustness" else "--active-run=x"])
        assert scorer_configs(args, command) == {}  # not given: the scorer uses Config()'s default
        args = build_parser().parse_args([command, *(["x"] if command == "robustness" else []), "--toy-scaled-scale", "4"])
        assert scorer_configs(args, command) == {"toy_scaled": ScaledMeanPixel.Config(scale=4.0)}
        # a bound of the config, reported by the flag
        args = build_parser().parse_args([command, *(["x"] if command == "robustness" else []), "--toy-scaled-scale", "500"])
        with pytest.raises(UserError, match="^--toy-scaled-scale must be in"):
            scorer_configs(args, command)


def test_toy_scorer_gets_rows_in_both_tables(toy, small_runs, tmp_path, capsys):
    active, plain = small_runs
    # compare: the flag, parsed as the CLI does, reaches the scorer
    args = build_parser().parse_args(["compare", "--active-run", str(active), "--toy-scaled-scale", "4"])
    res = run_compare(None, tmp_path / "c", active_run=active, plain_run=plain, cache_dir=tmp_path / "cache",
                      configs=scorer_configs(args, "compare"), scorers=["active_mint", "toy_scaled"], bootstrap=0, progress=False,
                      log=lambda m: None)
    run = load_run(active)
    members = run.data.train.images[np.asarray(run.data.splits.members)]
    assert [(r.method, r.model) for r in res.rows][1:] == [("Scaled mean pixel (toy)", "plain"),
                                                           ("Scaled mean pixel (toy)", "active")]
    np.testing.assert_allclose(res.rows[1].scores["members"], 4 * members.double().mean(dim=(1, 2, 3)).numpy(), rtol=1e-15)
    assert sum(ln.startswith("Scaled mean pixel (toy),") for ln in (tmp_path / "c" / "compare.csv").read_text().splitlines()) == 2
    # robustness, through the CLI
    assert main(["robustness", str(active), "--scorers", "toy_scaled", "--transforms", "hflip", "--max-samples", "150",
                 "--bootstrap", "0", "--out", str(tmp_path / "r"), "--toy-scaled-scale", "4"]) == 0
    rows = json.loads((tmp_path / "r" / "robustness.json").read_text())["rows"]
    assert {(r["scorer"], r["transform"]) for r in rows} == {("toy_scaled", "none"), ("toy_scaled", "hflip")}
    # a mean pixel is invariant to a horizontal flip: the same AUC on the flipped copies
    assert rows[0]["auc"] == rows[1]["auc"]


# ---------------------------------------------------------------- conformance of every scorer
TINY_CONFIGS = {"passive_mint": PassiveMintConfig(epochs=1), "gmint": GradientMintConfig(epochs=2, external_limit=200)}
TINY_REFERENCE = ReferenceConfig(n_models=4, epochs=1, population=300)


@pytest.fixture(scope="module")
def contexts(small_runs, tmp_path_factory):
    """Fresh contexts on the small runs (one per call), sharing a cache folder.

    ``robust``: the audited run trained with ``--audit-policy robust`` (what the robust post-hoc
    head copies), on the same splits as the plain run."""
    active, plain = small_runs
    a, p = load_run(active), load_run(plain)
    cache = tmp_path_factory.mktemp("conformance")

    def make(plain_run=True, reference=True, audited=True, robust=False):
        run = (load_run(trained_run(**SMALL, audit_policy="robust")) if robust else a) if audited else p
        return compare_context(run, p if plain_run else None, cache, configs=TINY_CONFIGS,
                               reference=TINY_REFERENCE if reference else None)
    return make


@pytest.mark.parametrize("key", list(REGISTRY))
def test_every_registered_scorer_conforms(key, contexts):
    cls = REGISTRY[key]
    robust = key == "posthoc_head_robust"  # it copies the audited run's audit policy
    ctx = contexts(robust=robust)
    assert cls.applies(ctx) is None, (key, cls.applies(ctx))
    runs = []
    for _ in range(2):  # determinism: fresh instances and contexts, same seeds, no score cache
        ctx = contexts(robust=robust)
        insts = cls.instances(ctx)
        (scored,), _work = score_views(ctx, insts)
        runs.append(scored)
    for sc, s1, s2 in zip(insts, *runs):
        for role in ctx.roles:
            # shape: one float64 score per sample of the role, finite, the same on a second run
            assert s1[role].shape == (len(ctx.images[role]),) and s1[role].dtype == np.float64, (sc.row, role)
            assert np.isfinite(s1[role]).all(), (sc.row, role)
            np.testing.assert_array_equal(s1[role], s2[role], err_msg=f"{sc.row} {role}")
    # a run it does not apply to: a plain run as the audited one, no plain twin, no reference models
    bad = contexts(plain_run=False, reference=False, audited=False)
    why = cls.applies(bad)
    needs_more = key in ("active_mint", "passive_mint", "posthoc_head", "posthoc_head_robust", "lira", "rmia")
    assert (why is not None) == needs_more, (key, why)
    if why is not None:
        assert why.strip() and "\n" not in why
    else:  # it applies to any run: it scores this one too
        (scored,), _work = score_views(bad, [cls("active")])
        assert all(np.isfinite(scored[0][r]).all() and len(scored[0][r]) == len(bad.images[r]) for r in bad.roles)
    # a model the context does not have: one line
    with pytest.raises(UserError, match="^no plain model in this context$"):
        bad.model("plain")


def test_scorer_cache_round_trip_is_what_the_loop_reads(contexts, tmp_path):
    """A cached scorer's second run reads its scores back, bit for bit, and says it reused them."""
    ctx = contexts()
    cache = ScorerCache(tmp_path)
    insts = REGISTRY["passive_mint"].instances(ctx)[:1]
    (first,), w1 = score_views(ctx, insts, cache=cache)
    (again,), w2 = score_views(contexts(), REGISTRY["passive_mint"].instances(ctx)[:1], cache=cache)
    assert len(w1.trained) == 1 and w2.trained == [] and len(w2.reused) == 1
    for role in ctx.roles:
        np.testing.assert_array_equal(first[0][role], again[0][role])


def test_configs_are_dataclasses_with_help_for_every_flag():
    from activemint.cli.scorers import scorer_fields

    for suite in ("compare", "robustness"):
        for ck, cfg, f, flag in scorer_fields(suite):
            assert dataclasses.is_dataclass(cfg) and f.metadata["help"].strip(), (ck, f.name)
            assert flag.startswith(f"--{ck.replace('_', '-')}-")


def test_neighbourhood_rows_of_one_scorer_share_its_view_scores():
    """Several aggregations of one scorer score each image set's views once, for every role in turn."""
    from activemint.scorers import NeighbourhoodScorer

    calls = []

    class Mean(Scorer):
        key = "toy_mean"

        def score_images(self, images):
            calls.append(len(images))
            return images.double().mean(dim=(1, 2, 3)).numpy()

    gen = np.random.default_rng(0)
    roles = [torch.as_tensor(gen.integers(0, 256, (n, 1, 12, 12), dtype=np.uint8)) for n in (5, 7, 3)]
    timing = {"seconds": 0.0, "queries": 0}
    shared = {"timing": timing}
    inner = Mean()
    rows = [NeighbourhoodScorer(inner, "shift1", agg, shared=shared) for agg in ("max", "mean")]
    for w in rows:  # as the scoring loop calls them: each row scores every role
        for x in roles:
            got = w.score_images(x)
            assert got.shape == (len(x),)
    assert sum(calls) == 9 * sum(len(x) for x in roles)  # 9 views of each image, once for both rows
    assert timing["queries"] == sum(len(x) for x in roles)
    np.testing.assert_array_equal(rows[0].score_images(roles[0]), NeighbourhoodScorer(Mean(), "shift1", "max").score_images(roles[0]))


def test_no_progress_context_prints_no_bars(contexts, capfd):
    """``compare --no-progress`` reaches the scoring loop and the passive head's training: nothing on stderr."""
    ctx = dataclasses.replace(contexts(reference=False), progress=False)
    score_views(ctx, REGISTRY["passive_mint"].instances(ctx))
    assert capfd.readouterr().err == ""
