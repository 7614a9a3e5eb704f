"""The ``probe`` command. It only parses arguments and calls library functions.

Run ``probe --help`` or ``probe COMMAND --help``.
"""

from __future__ import annotations

import sys

import click

from volprobe import __version__
from volprobe.errors import VolprobeError


class ProbeGroup(click.Group):
    """Turns volprobe's own errors into a one-paragraph message and exit status 2."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (VolprobeError, FileNotFoundError) as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(2)


@click.group(cls=ProbeGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="volprobe")
def main() -> None:
    """volprobe: does a 3D medical VLM actually use the CT volume?

    \b
    Typical workflow on real data:
      probe segment CT.nii.gz --out masks/            # TotalSegmentator (local weights)
      probe relations CT.nii.gz --masks masks/ct.nii.gz --out rel.json
      probe questions rel.json --out items.jsonl      # mask-verified spatial questions
      probe run --model oracle --items items.jsonl --control full --control text_only --out runs/oracle
      probe report runs/oracle --out report/
    Or everything at once on synthetic phantoms:  probe demo
    """


def seed_option(default: int = 0):
    return click.option("--seed", type=int, default=default, show_default=True,
                        help="Random seed (recorded in every output).")


# ---------------------------------------------------------------------------------------------
# segmentation: segment, relations, phantom  (issue 2)
# ---------------------------------------------------------------------------------------------

# ---------------------------------------------------------------------------------------------
# question sets: questions  (issue 3)
# ---------------------------------------------------------------------------------------------

# ---------------------------------------------------------------------------------------------
# benchmarks: import 3drad / ctspatialvqa, score, fit-baseline  (issue 4)
# ---------------------------------------------------------------------------------------------

# ---------------------------------------------------------------------------------------------
# runs: run, merge, controls, models  (issue 5)
# ---------------------------------------------------------------------------------------------

# ---------------------------------------------------------------------------------------------
# statistics: report  (issue 6)
# ---------------------------------------------------------------------------------------------

# ---------------------------------------------------------------------------------------------
# demo  (issue 7)
# ---------------------------------------------------------------------------------------------


if __name__ == "__main__":  # pragma: no cover
    main()
