"""The report's HTML laid out by a real browser: headless Chromium (Debian's `chromium`
package) lays every MathML formula out with a non-zero size and shows no raw LaTeX. Skipped,
saying so, where Chromium is not installed."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
from spec_factory import FLAGSHIP

from workbench.compile import load_spec
from workbench.report import write_report
from workbench.theory.derive import derive

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
PROBE = """<script>
const boxes = [...document.querySelectorAll('math')].map(m => {
  const r = m.getBoundingClientRect(); return [r.width, r.height]; });
document.body.setAttribute('data-math', JSON.stringify(boxes));
const raw = /\\\\(frac|int|left|dot)/.test(document.body.innerText);
document.body.setAttribute('data-raw-latex', String(raw));
</script></body>"""


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium here: `apt install chromium` to run")
def test_mathematics_is_laid_out_by_a_browser(tmp_path):
    write_report(FLAGSHIP, tmp_path, formats=("html",))
    page = (tmp_path / "report.html").read_text().replace("</body>", PROBE)
    probe = tmp_path / "probe.html"
    probe.write_text(page)
    dom = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", probe.as_uri()],
        capture_output=True, text=True, timeout=120,
    ).stdout  # fmt: skip
    boxes = json.loads(re.search(r'data-math="([^"]*)"', dom).group(1).replace("&quot;", '"'))
    rules = sum(len(s["rules"]) for s in derive(load_spec(FLAGSHIP)).to_dict()["stages"])
    assert len(boxes) == rules
    assert all(width > 5 and height > 5 for width, height in boxes)
    assert 'data-raw-latex="false"' in dom


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium here: `apt install chromium` to run")
def test_pdf_is_printed_by_the_browser(tmp_path):
    files = write_report(FLAGSHIP, tmp_path, formats=("pdf",))
    pdf = tmp_path / "report.pdf"
    assert pdf in files.files and not (tmp_path / "report.html").exists()
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF") and len(data) > 50_000
