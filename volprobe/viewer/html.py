"""``report.html``: the report in one self-contained page, with an item browser.

One file, beside ``report.md``: verdicts, notes, every table, the figures (PNG previews inlined) and the
item browser (:mod:`volprobe.viewer.browser`), whose thumbnails are inlined as data URIs, so the page needs
no server and no network (it opens from a ``file://`` URL and can be mailed). The page's script and style
are in ``viewer/static/`` and are inlined too.
"""

from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path
from typing import Sequence

from volprobe.viewer.browser import BrowserData, BrowserSettings, build_browser

STATIC = Path(__file__).parent / "static"


def _markdown_inline(text: str) -> str:
    """``**bold**`` and ```code``` of the report's text as HTML (the rest escaped)."""
    out = html.escape(text, quote=False)
    out = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", out)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", out)


def markdown_list(text: str) -> str:
    """The report's definitions (a Markdown list of paragraphs) as an HTML list."""
    entries: list[str] = []
    for line in text.splitlines():
        if line.startswith("- "):
            entries.append(line[2:])
        elif entries and line.strip():
            entries[-1] += " " + line.strip()
    return "<ul>" + "".join(f"<li>{_markdown_inline(e)}</li>" for e in entries) + "</ul>"


def _table_html(table) -> str:
    return table.to_html(index=False, border=0, classes="data", escape=True, na_rep="–")


def _figure_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _script_json(data) -> str:
    """JSON safe inside a <script> element."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).replace("</", "<\\/")


def render_page(report, browser: BrowserData) -> str:
    """The page's HTML for a finished :class:`~volprobe.stats.report.Report` and the browser's data."""
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    from volprobe.stats.report import DEFINITIONS, TABLE_TITLES, headline, settings_line
    from volprobe.stats.tables import display_tables, error_summary, group_label

    a, verdicts = report.analysis, report.verdicts
    overall = verdicts[verdicts["grouping"] == "all"] if not verdicts.empty else verdicts
    verdict_rows = []
    for r in overall.itertuples():
        verdict_rows.append({
            "model": r.model, "group": "" if r.group == "all" else group_label(r.grouping, r.group),
            "verdict": r.verdict, "summary": r.summary,
            "extras": [e for e in (r.leakage_text, r.baseline_text, r.other_controls) if e], "basis": r.basis})
    tables = [{"name": name, "title": TABLE_TITLES[name].format(reference=a.settings.reference), "caption": caption,
               "html": _table_html(table)} for name, (caption, table) in display_tables(a, verdicts).items()]
    errors = a.panel.errors
    if errors is not None and not errors.empty:  # as report.md: counts per model and control, the first records
        tables.append({"name": "errors", "title": "Model errors",
                       "caption": f"{len(errors):,} records ended in an error (all in tables/errors.csv); per model "
                                  f"and control, then the first {min(len(errors), 20)}",
                       "html": _table_html(error_summary(errors)) + _table_html(errors.head(20))})
    figures = [{"name": p.stem, "uri": _figure_uri(p), "pdf": str(p.with_suffix(".pdf").relative_to(report.out))}
               for p in sorted(report.files) if p.suffix == ".png" and p.parent.name == "figures"]
    env = Environment(loader=FileSystemLoader(str(Path(__file__).parent / "templates")),
                      autoescape=select_autoescape(["html", "j2"]))
    return env.get_template("report.html.j2").render(
        headline=headline(a, report.records), settings=settings_line(a), runs=report.records.runs, notes=a.notes,
        verdicts=verdict_rows, tables=tables, figures=figures, definitions=markdown_list(DEFINITIONS),
        browser=browser, browser_json=_script_json(browser.to_json()),
        style=(STATIC / "report.css").read_text(encoding="utf-8"),
        script=(STATIC / "browser.js").read_text(encoding="utf-8"))


def write_html_report(report, runs: Sequence[str | Path], settings: BrowserSettings | None = None) -> Path:
    """Write ``report.html`` into the report's folder; returns its path."""
    from volprobe.fileio import atomic_output

    browser = build_browser(runs, settings)
    path = report.out / "report.html"
    with atomic_output(path) as fh:
        fh.write(render_page(report, browser))
    return path
