"""Make the README's pictures from a ``probe demo`` folder: the item browser of report.html (headless Chromium)
and one ``probe figure`` panel, as small palette PNGs in docs/.

    python docs/screenshots.py probe-demo          # after `probe demo`
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent / "tests"))

from chromium import Browser  # noqa: E402


def small_png(source: Path, target: Path, width: int | None = None) -> None:
    """``source`` resized to ``width`` pixels (if given) and saved with a 256-colour palette (the outline colours
    kept exact: they are the most frequent colours after the greys)."""
    from PIL import Image

    with Image.open(source) as image:
        image = image.convert("RGB")
        if width and image.width > width:
            image = image.resize((width, round(image.height * width / image.width)), Image.LANCZOS)
        image.quantize(256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE).save(target, optimize=True)
    print(f"wrote {target} ({target.stat().st_size // 1024} kB)")


def browser_shot(report: Path, filters: dict[str, str], target: Path) -> None:
    """The item browser with some filters set (select id -> value), cut to the first item's card."""
    with Browser(width=1180, height=1400) as browser:
        browser.open(report.resolve().as_uri() + "#items")
        for name, value in filters.items():
            browser.evaluate(f"(s => {{ s.value = {json.dumps(value)}; s.dispatchEvent(new Event('change')); }})"
                             f"(document.getElementById({json.dumps(name)}))")
        box = browser.evaluate("(() => { const r = document.querySelector('.item-card').getBoundingClientRect(); "
                               "const f = document.querySelector('.filters').getBoundingClientRect(); "
                               "return {x: 0, y: f.top + scrollY - 8, width: 1180, "
                               "height: Math.min(r.bottom - f.top + 16, 1150)}; })()")
        assert not browser.errors, browser.errors
        raw = target.with_suffix(".raw.png")
        browser.screenshot(raw, full_page=True, clip=box)
    small_png(raw, target)
    raw.unlink()


def main(demo: str) -> None:
    demo_dir = Path(demo)
    items = [json.loads(line) for line in open(demo_dir / "items" / "test.jsonl")]
    page = demo_dir / "report" / "report.html"
    data = json.loads(page.read_text().split('id="browser-data">', 1)[1].split("</script>", 1)[0])
    shown = {it["id"] for it in data["items"]}
    # a superior-inferior question in the browser's sample whose gold flips with flip_si: axial and coronal views
    item = next(i for i in items if i["id"] in shown and "si" in i["evidence"]["axes"]
                and i["counterfactual"].get("flip_si") not in (None, i["answer"])
                and len(i["evidence"]["structures"]) == 2 and i["metadata"].get("format") == "two_option")
    # the browser filtered as a reader checking a counterfactual would: the oracle's answers that follow flip_si
    browser_shot(page, {"f-control": "flip_si", "f-outcome": "followed", "f-model": "oracle"},
                 DOCS / "item-browser.png")
    runs = [str(demo_dir / "runs" / m) for m in ("oracle", "prior", "random")]
    figure = demo_dir / "figure.pdf"
    subprocess.run(["probe", "figure", item["id"], *[a for r in runs for a in ("--runs", r)], "--out", str(figure)],
                   check=True)
    small_png(figure.with_suffix(".png"), DOCS / "figure-item.png", width=1100)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "probe-demo")
