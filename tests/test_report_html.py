"""HTML reports: they open in headless Chromium with the verdict, p-value and plots present.

Issue 24's acceptance 2: each of the audit, run (report), robustness and compare pages shows its
verdict or takeaway line and its limits sentence in the first screen (1400x900), nothing overflows
and text is readable at 100% zoom (the ``first_screen`` tests)."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from activemint.cli import main

# The Debian package `chromium`, installed by scripts/setup.sh (apt-get, as root or via sudo)
# so that these tests run on a fresh clone instead of skipping.
CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
RUN_FILES = ("config.yaml", "manifest.csv", "model.safetensors", "model.json", "scores.npz", "metrics.json", "metrics.jsonl")


def chromium(args: list[str], url: str) -> subprocess.CompletedProcess:
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    cmd = [CHROMIUM, "--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars",
           "--virtual-time-budget=5000", *args, url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def render(html_path: Path, shot: Path) -> str:
    """Screenshot + DOM of a local HTML file in headless Chromium (one call); returns the DOM."""
    url = html_path.resolve().as_uri()
    r = chromium([f"--screenshot={shot}", "--window-size=1200,3000", "--dump-dom"], url)
    assert r.returncode == 0, r.stderr[-2000:]
    with Image.open(shot) as im:
        assert im.size == (1200, 3000)
        px = np.asarray(im.convert("L"))
    assert px.std() > 10  # not a blank page
    # Chromium logs page problems (failed loads, script errors) on stderr
    assert not re.search(r"Uncaught|Failed to load resource|ERR_FILE_NOT_FOUND|Not allowed to load", r.stderr), r.stderr[-2000:]
    assert r.stdout.lstrip().startswith("<!DOCTYPE html>") or "<html" in r.stdout[:200]
    return r.stdout


@pytest.fixture(scope="module")
def run_copy(audited_run_dir, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("report") / "run"
    d.mkdir()
    for name in RUN_FILES:
        shutil.copy2(audited_run_dir / name, d / name)
    return d


@pytest.fixture(scope="module")
def mixed_audit(run_copy):
    """An audit of 100 real images, 20 of them members, through the library."""
    from activemint.audit import audit
    from activemint.runs import load_run

    run = load_run(run_copy, device="cpu")
    data, s = run.data, run.data.splits
    rng = np.random.default_rng(11)
    folder = run_copy.parent / "mixed"
    folder.mkdir()
    for i in rng.choice(s.members, 20, replace=False):
        Image.fromarray(data.train.images[i, 0].numpy()).save(folder / f"a_{i}.png")
    for i in rng.choice(s.eval_nonmembers, 80, replace=False):
        Image.fromarray(data.test.images[i, 0].numpy()).save(folder / f"b_{i}.png")
    result = audit(run_copy, [str(folder)], device="cpu")
    from activemint.report.audit import write_audit

    out = write_audit(result, run_copy.parent / "audit-out")
    return result, out


def test_audit_report_renders_in_chromium(mixed_audit, tmp_path):
    result, out = mixed_audit
    html = (out / "report.html").read_text()
    assert "http://" not in html and "https://" not in html and "<script" not in html  # self-contained
    dom = render(out / "report.html", tmp_path / "audit.png")
    verdict = re.search(r'<div class="verdict (reject|keep)" id="verdict">([^<]+)</div>', dom)
    assert verdict, dom[:2000]
    assert verdict.group(1) == ("reject" if result.tests.reject else "keep")
    assert verdict.group(2).startswith("Members detected") and result.tests.reject
    from activemint.audit.pipeline import fmt_p

    assert fmt_p(result.tests.p_value) in verdict.group(2) and fmt_p(result.tests.p_value) in dom
    imgs = re.findall(r'<img class="plot" src="data:image/png;base64,([A-Za-z0-9+/=]+)"', dom)
    assert len(imgs) >= 3  # suspect vs calibration, members vs non-members, ROC
    assert "ROC" in dom and result.model["weights_sha256"] in dom and result.suspect.data_sha256 in dom
    assert "estimated member fraction" in dom
    md = (out / "summary.md").read_text()
    assert result.verdict in md and "| mixture (decides) |" in md and "| exceedance |" in md and result.suspect.data_sha256 in md


def test_report_of_a_training_run(run_copy, tmp_path, capsys):
    out = run_copy / "report.html"  # the default place
    assert main(["report", str(run_copy)]) == 0
    assert str(out) in capsys.readouterr().out
    dom = render(out, tmp_path / "run.png")
    for text in ("Learning curves", "Membership test", "Score distributions", "ROC curves", "Configuration"):
        assert text in dom, text
    assert len(re.findall(r'<img class="plot" src="data:image/png;base64,', dom)) == 3


def test_report_of_an_unfinished_run_and_bad_dirs(run_copy, tmp_path, capsys):
    partial = tmp_path / "partial"
    partial.mkdir()
    for name in ("config.yaml", "metrics.jsonl"):
        shutil.copy2(run_copy / name, partial / name)
    assert main(["report", str(partial)]) == 0
    html = (partial / "report.html").read_text()
    assert "has not finished" in html and "Learning curves" in html
    capsys.readouterr()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["report", str(empty)]) == 2
    assert "neither metrics.jsonl nor metrics.json" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert not (empty / "report.html").exists()


def test_compare_report_from_scores_dict(audited_run_dir, tmp_path):
    from activemint.report import compare_report_html

    with np.load(audited_run_dir / "scores.npz") as z:
        mem, non = z["members"], z["eval_nonmembers"]
    rng = np.random.default_rng(0)
    methods = {"aMINT": (mem, non), "aMINT + noise": (mem + rng.normal(0, 3, len(mem)), non + rng.normal(0, 3, len(non)))}
    html = compare_report_html(methods, note="two scorers on the test run", bootstrap=20)
    path = tmp_path / "compare.html"
    path.write_text(html)
    dom = render(path, tmp_path / "compare.png")
    assert "aMINT + noise" in dom and "two scorers on the test run" in dom
    assert len(re.findall(r"<img ", dom)) == 3  # bars, ROC, histograms


def test_run_summary_still_works(audited_run_dir):
    import json

    from activemint.report import run_summary

    text = run_summary(json.loads((audited_run_dir / "metrics.json").read_text()))
    assert "membership test" in text and "AUC" in text


def test_report_of_a_compare_directory(audited_run_dir, tmp_path, capsys):
    """A directory written by activemint.compare's own writer renders as a comparison."""
    compare = pytest.importorskip("activemint.compare")
    from activemint.metrics import membership_metrics

    with np.load(audited_run_dir / "scores.npz") as z:
        real = {r: z[r] for r in ("members", "eval_nonmembers", "calibration")}
    rng = np.random.default_rng(1)
    noisy = {r: v + rng.normal(0, 4, len(v)) for r, v in real.items()}
    rows = []
    for method, model, scores in (("Active MINT", "active", real), ("Loss attack", "plain", noisy)):
        m = membership_metrics(scores["members"], scores["eval_nonmembers"], calibration_scores=scores["calibration"],
                               half_threshold=0.0, bootstrap=20)
        rows.append(compare.MethodResult(method, model, "test", f"{method} scores", ["scores"], {}, 0.0, m, 0.85, scores))
    info = {"dataset": "fashion-mnist", "arch": "small_cnn", "setup": "entry", "n_members": 1000, "n_eval_nonmembers": 2000,
            "n_calibration": 1000, "n_external": 4000, "target_fpr": 0.01, "reference_models": {},
            "command": "activemint compare --members 1000 --bootstrap 20 --out cmp"}
    out = tmp_path / "cmp"
    compare.write_outputs(out, rows, compare.headline_line(rows), info, [], [], 1.0)
    assert main(["report", str(out)]) == 0
    capsys.readouterr()
    dom = render(out / "report.html", tmp_path / "cmp.png")
    assert "Command: <code>activemint compare --members 1000 --bootstrap 20 --out cmp</code>" in dom  # the full command (issue 24)
    assert "Active MINT (active model)" in dom and "Loss attack (plain model)" in dom
    assert "fashion-mnist / small_cnn / aMINT setup entry" in dom
    assert f"{rows[0].metrics.auc:.3f}" in dom
    assert len(re.findall(r'<img class="plot" src="data:image/png;base64,', dom)) == 3


def test_report_of_a_plain_run(plain_run_dir, tmp_path, capsys):
    out = tmp_path / "plain.html"
    assert main(["report", str(plain_run_dir), "--out", str(out)]) == 0
    capsys.readouterr()
    html = out.read_text()
    assert "plain training (no aMINT)" in html and "Learning curves" in html
    assert "Membership test" not in html  # no head, no membership figures


# ------------------------------------------------------------------ the first screen (issue 24)
SCREEN = (1400, 900)
#: Measures, in the page, where the verdict / limits / takeaway are and whether anything overflows.
PROBE = """<script>
(() => {
  const out = {ids: {}};
  for (const id of ["verdict", "limits", "takeaway", "how-to-read"]) {
    const e = document.getElementById(id);
    if (!e) continue;
    const r = e.getBoundingClientRect();
    out.ids[id] = {top: r.top, bottom: r.bottom, height: r.height, font: parseFloat(getComputedStyle(e).fontSize)};
  }
  out.scrollWidth = document.documentElement.scrollWidth;
  out.innerWidth = window.innerWidth;
  const main = document.querySelector("main").getBoundingClientRect();
  out.overflow = [];
  for (const e of document.querySelectorAll("main *")) {
    if (e.closest("details:not([open])") && e.tagName !== "SUMMARY") continue;  // folded: not on screen
    const r = e.getBoundingClientRect();
    if (r.width > 0 && r.right > main.right + 1) out.overflow.push(e.tagName + "." + e.className);
  }
  out.minFont = 100;
  for (const e of document.querySelectorAll("p, li, td, th, summary, .verdict, .keyfig")) {
    if (e.offsetParent !== null && e.textContent.trim()) out.minFont = Math.min(out.minFont, parseFloat(getComputedStyle(e).fontSize));
  }
  const pre = document.createElement("pre");
  pre.id = "probe";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
</script>"""


def first_screen(html_path: Path, tmp_path: Path, name: str) -> dict:
    """Render a copy of the page (with :data:`PROBE`) at 1400x900; screenshot it; return the probe's findings."""
    import json

    probe_copy = tmp_path / f"{name}-probe.html"
    probe_copy.write_text(html_path.read_text().replace("</body>", PROBE + "\n</body>"))
    shot = tmp_path / f"{name}-screen.png"
    r = chromium([f"--screenshot={shot}", f"--window-size={SCREEN[0]},{SCREEN[1]}", "--dump-dom"], probe_copy.resolve().as_uri())
    assert r.returncode == 0, r.stderr[-2000:]
    with Image.open(shot) as im:
        assert im.size == SCREEN and np.asarray(im.convert("L")).std() > 10
    m = re.search(r'<pre id="probe">([^<]+)</pre>', r.stdout)
    assert m, r.stdout[-2000:]
    found = json.loads(m.group(1).replace("&quot;", '"'))
    assert found["scrollWidth"] <= found["innerWidth"], found  # no horizontal scrolling
    assert found["overflow"] == [], found["overflow"][:10]  # no element sticks out of the page column
    assert found["minFont"] >= 12, found  # readable at 100% zoom (CSS px)
    return found


def _visible(found: dict, *ids: str) -> None:
    for i in ids:
        box = found["ids"].get(i)
        assert box is not None, (i, found)
        assert box["height"] > 0 and 0 <= box["top"] and box["bottom"] <= SCREEN[1], (i, box)


def test_first_screen_of_the_audit_and_run_pages(mixed_audit, run_copy, tmp_path, capsys):
    _, out = mixed_audit
    _visible(first_screen(out / "report.html", tmp_path, "audit"), "verdict", "limits", "how-to-read")
    assert main(["report", str(run_copy), "--out", str(tmp_path / "run.html")]) == 0
    capsys.readouterr()
    html = (tmp_path / "run.html").read_text()
    assert "kept epoch" in html  # the learning curves' alt text; the marker itself is drawn in the PNG
    _visible(first_screen(tmp_path / "run.html", tmp_path, "run"), "takeaway", "limits")


def test_first_screen_of_the_robustness_page(run_copy, tmp_path, capsys):
    out = tmp_path / "rb"
    assert main(["robustness", str(run_copy), "--scorers", "active_mint,exact_sha256,phash", "--transforms",
                 "jpeg:q50,translate:2px", "--max-samples", "150", "--bootstrap", "0", "--out", str(out)]) == 0
    capsys.readouterr()
    found = first_screen(out / "robustness.html", tmp_path, "robustness")
    _visible(found, "takeaway", "limits")  # the takeaway per scorer, then what the figures can say (n, FPRs supported)
    html = (out / "robustness.html").read_text()
    assert "What these figures can say: 150 members vs 150 non-members" in html and "too few for 1% and 0.1% FPR" in html


def test_first_screen_of_the_compare_page_and_best_per_family(audited_run_dir, tmp_path, capsys):
    compare = pytest.importorskip("activemint.compare")
    from activemint.metrics import membership_metrics

    with np.load(audited_run_dir / "scores.npz") as z:
        real = {r: z[r] for r in ("members", "eval_nonmembers", "calibration")}
    rng = np.random.default_rng(2)
    rows = []
    # noise sd per method: within a family the first is far less noisy (sd 1-3 vs 4-12 on logits spread over
    # several units, AUC gaps of many standard errors), so it is that family's best
    sds = {"output": (1, 4, 8), "reference": (2, 6, 10), "MINT": (3, 7, 12)}
    specs = [("Active MINT", "active", "MINT", 0)] + [(f"{fam} method {k}", "plain", fam, sd)
                                                     for fam, v in sds.items() for k, sd in enumerate(v)]
    for method, model, fam, sd in specs:
        scores = {r: v + rng.normal(0, sd, len(v)) for r, v in real.items()}
        m = membership_metrics(scores["members"], scores["eval_nonmembers"], calibration_scores=scores["calibration"],
                               half_threshold=0.0, bootstrap=0)
        rows.append(compare.MethodResult(method, model, fam, f"{method} scores", ["scores"], {}, 0.0, m, 0.85, scores))
    info = {"dataset": "fashion-mnist", "arch": "small_cnn", "setup": "entry", "n_members": 1000, "n_eval_nonmembers": 2000,
            "n_calibration": 1000, "n_external": 4000, "target_fpr": 0.01, "reference_models": {}, "command": None}
    out = tmp_path / "cmp"
    compare.write_outputs(out, rows, compare.headline_line(rows), info, [], [], 1.0)
    assert main(["report", str(out)]) == 0
    capsys.readouterr()
    html = (out / "report.html").read_text()
    # 10 methods in the table; the ROC draws Active MINT (also the best of MINT) and the best of the two other families
    assert "(3 of 10; every method is in the table above)" in html
    _visible(first_screen(out / "report.html", tmp_path, "compare"), "takeaway", "limits")
    assert "What these figures can say: 1000 members vs 2000 non-members" in html and "too few for 0.1% FPR" in html
    from activemint.compare.plots import best_per_family

    assert [r.method for r in best_per_family(rows)] == ["Active MINT", "output method 0", "reference method 0"]
