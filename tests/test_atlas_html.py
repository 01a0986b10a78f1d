"""The HTML atlas opened in headless Chromium: every image loads, every target is listed,
pending targets show as pending, and a screenshot is written."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from inverset import Box, Result
from inverset.jobs import atlas
from inverset.report.html import build_report, in_range_count, metric_line
from tests.conftest import missing

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
CHECK = """<script>
window.addEventListener('load', () => {
  const imgs = [...document.images];
  const out = {
    images: imgs.length,
    broken: imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.getAttribute('src')),
    keys: [...document.querySelectorAll('[data-key]')].map(e => e.dataset.key),
    pending: [...document.querySelectorAll('.pending')].length,
  };
  const pre = document.createElement('pre');
  pre.id = 'inverset-check';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    missing("chromium is not installed (apt-get install -y chromium chromium-driver)")


def browse(page: Path, profile: Path, *args: str) -> str:
    p = subprocess.run(
        [chromium(), *FLAGS, f"--user-data-dir={profile}", *args, page.as_uri()],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    return p.stdout


def check_page(page: Path, profile: Path) -> dict:
    """Open a copy of ``page`` (same directory, so relative links hold) with a script that
    writes what the browser saw into the DOM, and read it back with --dump-dom."""
    probe = page.with_name("_check_" + page.name)
    probe.write_text(page.read_text().replace("</body>", CHECK + "</body>"))
    try:
        dom = browse(probe, profile, "--dump-dom", "--virtual-time-budget=5000")
    finally:
        probe.unlink()
    m = re.search(r'<pre id="inverset-check">(.*?)</pre>', dom, re.S)
    assert m, "the check script did not run:\n" + dom[-1500:]
    return json.loads(html.unescape(m.group(1)))


@pytest.fixture(scope="module")
def image_atlas(digits_cnn, tmp_path_factory):
    out = tmp_path_factory.mktemp("html") / "conv1"
    s = atlas(
        digits_cnn.model, out, layer="conv1", mode="visualize", steps=24, domain=Box(0, 1), seed=0
    )
    assert s.status == "complete" and s.index == out / "index.html"
    return out


@pytest.fixture(scope="module")
def tabular_atlas(tmp_path_factory):
    """A 5-feature model, 4 output targets, interrupted after 2: two results, two pending."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 4))
    names = ["age", "bmi", "bp", "s1", "s2"]
    dom = Box([-1, 0, 0, -2, 0], [1, 2, 1, 2, 3], names=names)
    out = tmp_path_factory.mktemp("html") / "tab"

    def stop(key, result):
        if key == "out_1":
            raise KeyboardInterrupt

    s = atlas(model, out, classes="all", domain=dom, steps=20, starts=4, on_result=stop)
    assert s.status == "interrupted" and s.remaining == ["out_2", "out_3"]
    return out


def test_image_atlas_in_chromium(image_atlas, tmp_path):
    seen = check_page(image_atlas / "index.html", tmp_path / "profile")
    keys = [f"conv1_{c}" for c in range(16)]
    assert seen["keys"] == keys, "every target listed, in order"
    assert seen["images"] == 16 and seen["broken"] == [] and seen["pending"] == 0
    text = (image_atlas / "index.html").read_text()
    assert "http://" not in text and "https://" not in text, "works offline"
    for c in range(16):
        assert f">conv1:{c}</a>" in text
    # a target's page: its input, its convergence plot, its query
    page = image_atlas / "conv1_5" / "index.html"
    seen = check_page(page, tmp_path / "profile")
    assert seen["images"] == 2 and seen["broken"] == []
    body = page.read_text()
    assert "convergence" in body and "&quot;visualize&quot;" in body and "conv1:5" in body
    shot = tmp_path / "atlas.png"
    browse(
        image_atlas / "index.html",
        tmp_path / "profile",
        f"--screenshot={shot}",
        "--window-size=1280,1000",
        "--hide-scrollbars",
    )
    with Image.open(shot) as im:
        assert im.size == (1280, 1000)
        px = np.asarray(im.convert("L"), dtype=float)
    assert px.std() > 20, "the screenshot shows something besides a blank page"
    keep = os.environ.get("INVERSET_KEEP_SCREENSHOT")
    if keep:
        shutil.copy(shot, keep)


def test_tabular_atlas_bars_and_pending_in_chromium(tabular_atlas, tmp_path):
    seen = check_page(tabular_atlas / "index.html", tmp_path / "profile")
    assert seen["keys"] == ["out_0", "out_1", "out_2", "out_3"]
    assert seen["images"] == 2 and seen["broken"] == [] and seen["pending"] == 2
    page = tabular_atlas / "out_0" / "index.html"
    seen = check_page(page, tmp_path / "profile")
    assert seen["broken"] == [] and seen["images"] >= 2  # bar chart + convergence
    with Image.open(tabular_atlas / "out_0" / "thumb.png") as im:
        assert im.size[0] > im.size[1], "a bar chart, wider than tall"
    shot = tmp_path / "tab.png"
    browse(
        tabular_atlas / "index.html",
        tmp_path / "profile",
        f"--screenshot={shot}",
        "--window-size=1000,700",
    )
    assert shot.stat().st_size > 5000
    keep = os.environ.get("INVERSET_KEEP_SCREENSHOT")
    if keep:
        shutil.copy(shot, Path(keep).with_name("tab_" + Path(keep).name))


def test_report_rebuilds_only_what_changed(image_atlas):
    thumb = image_atlas / "conv1_0" / "thumb.png"
    before = {p: p.stat().st_mtime_ns for p in image_atlas.glob("*/*.png")}
    thumb.unlink()
    (image_atlas / "index.html").unlink()
    build_report(image_atlas)
    assert thumb.is_file() and (image_atlas / "index.html").is_file()
    after = {p: p.stat().st_mtime_ns for p in image_atlas.glob("*/*.png")}
    unchanged = [p for p in before if p != thumb and after[p] == before[p]]
    assert len(unchanged) == len(before) - 1, "fresh pictures are not redrawn"


def test_metric_line_value_bound_gap_and_in_range():
    r = Result(x=np.zeros(3), value=2.5, status="optimal", bound=2.75, gap=0.25)
    assert metric_line(r) == "value 2.5 · bound 2.75 · gap 0.25"
    s = Result(
        x=np.zeros(3),
        value=0.7,
        status="found",
        values=np.array([0.2, 0.7, 0.9, 1.4]),
        query={"goal": {"kind": "range", "low": 0.5, "high": 1.0}},
    )
    assert in_range_count(s) == (2, 4)
    assert metric_line(s).startswith("in range 2/4")
