"""The HTML pages opened in a real browser (headless Chromium, Debian's ``chromium`` package): every
image loads, the tables are there, and a screenshot is drawn. Skipped where no Chromium is installed.
Fixtures are tiny fake run folders (tests/run_fixtures.py): a long run, a multi-class run, many runs."""

import json
import re
import shutil
import subprocess

import pytest
from run_fixtures import fake_run

CHROMIUM = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no headless Chromium (Debian: apt-get install chromium)")

# after load: which images decoded (complete and with a width), and how many tables and rows the page has
PROBE = (
    "<script>window.addEventListener('load', () => {"
    "const imgs = [...document.images].map(i => ({alt: i.alt, ok: i.complete && i.naturalWidth > 0}));"
    "const p = document.createElement('pre'); p.id = 'mbk-probe';"
    "p.textContent = JSON.stringify({images: imgs, tables: [...document.querySelectorAll('table')]"
    ".map(t => t.querySelectorAll('tr').length)});"
    "document.body.appendChild(p); });</script>"
)


def _chromium(tmp_path, *args):
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'chromium-profile'}", "--virtual-time-budget=5000"]  # fmt: skip
    r = subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


def open_in_browser(page, tmp_path, extra: str = "") -> dict:
    """The page as Chromium loaded it (with the probe appended): images and tables; also a screenshot."""
    probed = tmp_path / f"probed-{page.name}"
    probed.write_text(page.read_text(encoding="utf-8").replace("</body>", extra + PROBE + "</body>"), encoding="utf-8")
    dom = _chromium(tmp_path, "--dump-dom", probed.as_uri())
    found = re.search(r'<pre id="mbk-probe">(.*?)</pre>', dom, re.S)
    assert found, "the probe did not run: the page did not finish loading"
    shot = tmp_path / f"{page.stem}.png"
    _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,2400", probed.as_uri())
    return {**json.loads(found.group(1).replace("&quot;", '"')), "screenshot": shot}


def _drawn(png) -> bool:
    """A screenshot with something on it (not one flat colour)."""
    import matplotlib.image as mpimg

    pixels = mpimg.imread(str(png))
    return pixels.ndim == 3 and pixels.shape[0] > 100 and float(pixels[..., :3].std()) > 0.02


def test_run_report_images_load_and_tables_are_present(cli, tmp_path):
    run = fake_run(tmp_path, "long", steps=20_000, classes=5, transfer_set=True)  # a long, multi-class run
    r = cli("report", run)
    assert r.exit_code == 0, r.output
    # a broken image next to the real ones: the probe must see it fail (the check can fail)
    broken = "<img alt='broken' src='data:image/png;base64,iVBORw0KGgo='>"
    page = open_in_browser(run / "report.html", tmp_path, extra=broken)
    images = {i["alt"]: i["ok"] for i in page["images"]}
    assert images == {
        "Training curves (per step)": True,
        "Accuracy vs latency": True,
        "Accuracy vs size": True,
        "broken": False,
    }
    assert len(page["tables"]) >= 3 and all(rows >= 2 for rows in page["tables"])  # models, training logs, stages
    assert _drawn(page["screenshot"])


def test_comparison_of_many_runs_renders(cli, tmp_path):
    runs = [fake_run(tmp_path, f"run{i}", steps=500 * (i + 1), overrides={"distill.alpha": i / 10}) for i in range(8)]
    r = cli("report", *runs, "-o", tmp_path / "cmp")
    assert r.exit_code == 0, r.output
    page = open_in_browser(tmp_path / "cmp" / "compare.html", tmp_path)
    assert [i["ok"] for i in page["images"]] == [True]
    # runs, paired accuracy, three stages, phone model, config differences
    assert len(page["tables"]) == 7
    assert page["tables"][1] == 1 + 3 * 7  # header + (teacher, student, phone) x 7 later runs
    assert _drawn(page["screenshot"])
