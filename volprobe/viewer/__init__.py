"""See what the model saw: an HTML report with an item browser, and one item as a paper-ready figure.

This part reads run records *and* the items, volumes and masks behind them (so it sits above both
``probes`` and ``stats``):

- :func:`~volprobe.viewer.html.write_html_report`: ``report.html`` beside ``report.md`` (``probe report``,
  ``probe demo``): verdicts, tables, figures and an item browser showing, per item and control, the
  evidence slices as the control presented them with the question's structures outlined, and every
  model's raw and parsed answer;
- :func:`~volprobe.viewer.figure.item_figure`: ``probe figure ITEM_ID --runs RUN... --out FIG.pdf``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

from volprobe.viewer.browser import BrowserSettings


def html_report_writer(runs: Sequence[str | Path], settings: BrowserSettings | None = None) -> Callable:
    """For :func:`volprobe.stats.report.make_report`'s ``extra``: writes ``report.html`` into the finished report."""
    def write(report) -> list[Path]:
        from volprobe.viewer.html import write_html_report

        return [write_html_report(report, runs, settings)]

    return write


__all__ = ["BrowserSettings", "html_report_writer"]
