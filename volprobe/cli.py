"""The ``probe`` command. It only parses arguments and calls library functions.

Run ``probe --help`` or ``probe COMMAND --help``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from volprobe import __version__
from volprobe.errors import VolprobeError

#: Exit status of `probe run` when the run finished but some records hold an error (rerun to retry them).
EXIT_RECORD_ERRORS = 3


def _fail(message: str, status: int = 2) -> None:
    click.secho(f"error: {message}", fg="red", err=True)
    sys.exit(status)


class ProbeGroup(click.Group):
    """Turns user errors into one ``error: ...`` message and exit status 2: volprobe's own errors, bad
    options (click's usage errors), environment faults (full disk, read-only folder) and running out of memory."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """Options before the command (``probe --bogus``) get the same one line as a command's own."""
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":  # bare ``probe``: click shows the help
                raise
            _fail(f"{exc.format_message()} (see '{ctx.command_path} --help')", exc.exit_code)

    def invoke(self, ctx: click.Context):
        from volprobe.fileio import describe_os_error

        try:
            return super().invoke(ctx)
        except (VolprobeError, FileNotFoundError) as exc:
            _fail(str(exc))
        except click.ClickException as exc:
            where = getattr(exc, "ctx", None)
            hint = f" (see '{where.command_path} --help')" if isinstance(exc, click.UsageError) and where else ""
            _fail(exc.format_message() + hint, exc.exit_code)
        except OSError as exc:
            _fail(describe_os_error(exc))
        except MemoryError:
            _fail("out of memory; use smaller inputs or settings (e.g. a smaller --shape, --batch-size or "
                  "--limit), or a machine with more memory")


def _guard(command: str, outputs, inputs, folder=None) -> None:
    """Refuse, before any work, outputs that would overwrite an input (see :mod:`volprobe.outputs`)."""
    from volprobe.outputs import check_outputs

    check_outputs(command, outputs, inputs, folder=folder)


def _file_outputs(out) -> list:
    from volprobe.outputs import file_outputs

    return file_outputs(out) if out else []


def _distinct_inputs(paths, what: str) -> None:
    """The same input given twice would count everything twice."""
    seen: dict[str, str] = {}
    for p in paths:
        real = os.path.realpath(p)
        if real in seen:
            raise VolprobeError(f"{p} is given twice{'' if seen[real] == p else f' (also as {seen[real]})'}; "
                                f"each {what} counts once")
        seen[real] = p


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
      probe report runs/oracle --out report/          # report.md, report.html (open it in a browser)
      probe figure ITEM_ID --runs runs/oracle --out item.pdf
    Or everything at once on synthetic phantoms:  probe demo
    """


def seed_option(default: int = 0):
    return click.option("--seed", type=int, default=default, show_default=True,
                        help="Random seed (recorded in every output).")


# ---------------------------------------------------------------------------------------------
# segmentation: segment, relations, phantom
# ---------------------------------------------------------------------------------------------

@main.command("phantom")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Folder for <case>.nii.gz, <case>_seg.nii.gz, <case>_layout.json and manifest.json.")
@click.option("--n", "n", type=click.IntRange(min=1), default=8, show_default=True, help="Number of phantoms.")
@seed_option()
@click.option("--shape", nargs=3, type=click.IntRange(min=2), default=None, metavar="I J K",
              help="Voxels along the array axes (~left-right, anterior-posterior, superior-inferior). "
                   "[default: 96 80 84]")
@click.option("--spacing", nargs=3, type=click.FloatRange(min=0, min_open=True), default=None, metavar="I J K",
              help="Voxel size in mm along the array axes (positive). [default: 4 4 5]")
@click.option("--orientation", type=click.Choice(["RAS", "LPS", "LAS", "oblique", "mixed"]), default="RAS",
              show_default=True, help="Array layout (the anatomy is the same); 'mixed' cycles through all four.")
@click.option("--variation", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="0 = canonical anatomy; 1 = sizes/positions jittered and the varying relations "
                   "(which kidney is higher/larger, which lung is larger, ...) are fair coins.")
@click.option("--situs-inversus", is_flag=True, help="Mirror the organs left-right (liver on the left); "
                                                     "*_left structures stay on the patient's left.")
@click.option("--noise", "noise_hu", type=click.FloatRange(min=0), default=2.0, show_default=True,
              help="SD of the Gaussian noise in HU.")
@click.option("--overwrite", is_flag=True,
              help="Replace phantoms made with other settings in OUT (default: refuse, since items made from them "
                   "would point at new volumes).")
def phantom_cmd(out_dir, n, seed, shape, spacing, orientation, variation, situs_inversus, noise_hu,
                overwrite) -> None:
    """Write synthetic torso CTs with TotalSegmentator-named masks (volprobe's embedded data).

    \b
    Each case: <case>.nii.gz (CT, int16 HU), <case>_seg.nii.gz (multilabel, label names in
    the NIfTI header extension as TotalSegmentator writes them) and <case>_layout.json (the
    generator's known layout in patient RAS+ mm and the designed relations). One scan per
    patient; cases already written with the same settings are kept. A folder holding phantoms
    made with other settings is refused unless --overwrite.
    Example:
      probe phantom --out phantoms/ --n 16 --seed 0 --orientation mixed
      probe relations phantoms/phantom_s0_000.nii.gz --masks phantoms/phantom_s0_000_seg.nii.gz --out rel.json
    """
    from volprobe.segmentation.phantoms.generate import DEFAULT_SHAPE, DEFAULT_SPACING, generate_phantoms

    _guard("probe phantom", [Path(out_dir) / "manifest.json"], [], folder=out_dir)
    cases = generate_phantoms(out_dir, n, seed, shape=shape or DEFAULT_SHAPE, spacing=spacing or DEFAULT_SPACING,
                              orientation=orientation, variation=variation, situs_inversus=situs_inversus,
                              noise_hu=noise_hu, overwrite=overwrite)
    click.echo(f"wrote {len(cases)} phantoms to {out_dir} (manifest: {out_dir}/manifest.json)")

@main.command("segment")
@click.argument("cts", nargs=-1, required=True, type=click.Path())
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Folder for OUT/<ct name>.nii.gz (multilabel, on the CT's grid) and a manifest beside each.")
@click.option("--fast", is_flag=True, help="3 mm model: one pass, needs Dataset297 (default: 1.5 mm, Dataset291-295).")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N.")
@click.option("--roi-subset", multiple=True, metavar="NAME",
              help="Only this TotalSegmentator class (repeatable), e.g. --roi-subset liver. Needs Dataset298 too.")
@click.option("--weights-dir", type=click.Path(file_okay=False),
              help="Folder holding the Dataset* weight folders (before $TOTALSEG_WEIGHTS_PATH, "
                   "$TOTALSEG_HOME_DIR/nnunet/results, ~/.totalsegmentator/nnunet/results).")
@click.option("--cache-dir", type=click.Path(file_okay=False),
              help="Result cache (default $VOLPROBE_CACHE_DIR or ~/.cache/volprobe/totalsegmentator).")
@click.option("--series", default=None, metavar="UID", help="DICOM SeriesInstanceUID (or unique prefix) to read.")
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Stop one CT after this many seconds.")
def segment_cmd(cts, out_dir, fast, device, roi_subset, weights_dir, cache_dir, series, timeout_s) -> None:
    """Segment CTs with TotalSegmentator (task 'total'), offline.

    \b
    CT: NIfTI, NRRD/MHA or a DICOM series folder. Weights must already be on disk
    (volprobe never downloads; missing weights fail at once and say how to install
    them). Usage statistics are off and TotalSegmentator cannot reach the network.
    A CT segmented before with the same settings is taken from the cache.
    Example:
      probe segment ct1.nii.gz ct2.nii.gz --out masks/ --fast
      probe relations ct1.nii.gz --masks masks/ct1.nii.gz --out rel.json
    """
    from volprobe.segmentation.totalseg.runner import segment_many, unique_output_names

    _guard("probe segment", [o for name in unique_output_names(list(cts))
                             for o in _file_outputs(Path(out_dir) / f"{name}.nii.gz")], list(cts), folder=out_dir)
    results = segment_many(list(cts), out_dir, fast=fast, device=device, roi_subset=roi_subset or None,
                           weights_dir=weights_dir, cache_dir=cache_dir, series=series, timeout_s=timeout_s)
    for r in results:
        if r.error:
            click.secho(f"FAILED {r.ct}: {r.error}", fg="red", err=True)
        else:
            click.echo(f"{r.ct} -> {r.output} ({r.structures} structures{', from cache' if r.cached else ''})")
    failed = [r for r in results if r.error]
    if failed:
        raise VolprobeError(f"{len(failed)} of {len(results)} CTs failed (see above); the others were written")

@main.command("relations")
@click.argument("ct", type=click.Path())
@click.option("--masks", required=True, type=click.Path(),
              help="TotalSegmentator multilabel NIfTI, or a folder of <name>.nii.gz masks.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Relation graph JSON to write.")
@click.option("--resample-masks", is_flag=True,
              help="Resample masks on another grid to the CT by nearest neighbour (default: refuse).")
@click.option("--centroid-margin", type=click.FloatRange(min=0), default=5.0, show_default=True,
              help="mm; centroid directions closer than this are 'indeterminate'.")
@click.option("--extent-margin", type=click.FloatRange(min=0), default=3.0, show_default=True,
              help="mm; gap/overlap of extents needed for 'entirely above' or 'overlap'.")
@click.option("--contact-tolerance", type=click.FloatRange(min=0), default=1.5, show_default=True,
              help="mm; surface gap up to which two structures touch.")
@click.option("--quiet", is_flag=True, help="Do not print the summary.")
def relations_cmd(ct, masks, out, resample_masks, centroid_margin, extent_margin, contact_tolerance, quiet) -> None:
    """Build the anatomy relation graph of a CT from its masks (patient RAS+ mm).

    \b
    Per structure: volume, centroid, extents, components, whether the field of view cuts it.
    Per pair: left/right, anterior/posterior, superior/inferior (by centroids and by extents),
    contact, containment, surface distance, volume ratio; each with its margin in mm and
    'indeterminate' under the thresholds. A laterality audit checks that *_left/*_right
    structures lie on their side of the midline; a failure (mirrored image, wrong header) is
    printed loudly and stored in the output. The file also holds the graph of the masks under every
    geometric control (mirror_lr, flip_si, flip_ap and plugins), transformed as the control transforms
    the CT: the counterfactual gold answers of `probe questions` come from them.
    Example:
      probe relations ct.nii.gz --masks masks/ct.nii.gz --out ct_relations.json
    """
    from volprobe.controls.counterfactuals import relations_for_case
    from volprobe.segmentation.relations.graph import RelationThresholds, summarize

    _guard("probe relations", _file_outputs(out), [ct, masks])
    thresholds = RelationThresholds(centroid_margin_mm=centroid_margin, extent_margin_mm=extent_margin,
                                    contact_tolerance_mm=contact_tolerance)
    graph = relations_for_case(ct, masks, out, resample_masks=resample_masks, thresholds=thresholds)
    if not quiet:
        click.echo(summarize(graph))
    if not graph.audit.passed:
        click.secho("WARNING: " + graph.audit.summary(), fg="red", bold=True, err=True)
    click.echo(f"wrote {out}")


# ---------------------------------------------------------------------------------------------
# question sets: questions
# ---------------------------------------------------------------------------------------------

def _split_names(ctx, param, values) -> tuple[str, ...]:
    """Repeated and/or comma-separated values → one tuple."""
    return tuple(v.strip() for value in values for v in value.split(",") if v.strip())


@main.command("questions")
@click.argument("cases", nargs=-1, required=True, type=click.Path())
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="Items file (JSON Lines); the manifest is written to OUT.manifest.json.")
@click.option("--per-case", type=click.IntRange(min=1), default=60, show_default=True,
              help="At most this many items per case (a counterbalanced pair is never split).")
@click.option("--categories", multiple=True, callback=_split_names, metavar="LIST",
              help="Only these (comma-separated or repeated): laterality, longitudinal, anterior_posterior, "
                   "medial_lateral, adjacency, extent, size. [default: all]")
@click.option("--formats", multiple=True, callback=_split_names, metavar="LIST",
              help="Only these: yes_no, two_option, four_option. [default: all]")
@seed_option()
@click.option("--masks-suffix", default=None, metavar="SUFFIX",
              help="Also take CTs NAME.nii.gz with masks NAME<SUFFIX> beside them (e.g. _seg.nii.gz; folders of "
                   "such pairs too: a CT there without its masks is an error); relation graphs are computed on the "
                   "fly. Folders written by `probe phantom` need no suffix (their manifest lists the pairs).")
@click.option("--structures", "include", multiple=True, callback=_split_names, metavar="GLOB",
              help="Only ask about structures matching GLOB (repeatable), e.g. --structures 'kidney_*,liver'.")
@click.option("--exclude", multiple=True, callback=_split_names, metavar="GLOB",
              help="Never ask about structures matching GLOB (repeatable), e.g. --exclude 'rib_*'.")
@click.option("--min-volume", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="mL; structures smaller than this in a case are not asked about there.")
@click.option("--prior-min-cases", type=click.IntRange(min=1), default=10, show_default=True,
              help="Cases with a clear answer a family needs before it is tagged prior_fixed true/false "
                   "(fewer: null = unknown).")
@click.option("--prior-threshold", type=click.FloatRange(0.5, 1.0, min_open=True), default=0.9, show_default=True,
              help="Share of cases with the family's most common answer at which it is prior_fixed.")
@click.option("--prior-reference", type=click.Path(dir_okay=False), default=None,
              help="Manifest of an earlier (larger) `probe questions` run: its per-family answer counts are "
                   "added before tagging prior_fixed (lets a few cases borrow a cohort's tags).")
@click.option("--family-balance/--no-family-balance", default=True, show_default=True,
              help="Balance the answers of every family tagged prior_fixed false across the cases that ask it, "
                   "so the question text does not give away which way it leans.")
@click.option("--leakage-check", is_flag=True,
              help="Fit a question-text-only classifier (TF-IDF + logistic regression) on half the patients, "
                   "score the other half, per category with 95% CIs; printed and stored in the manifest.")
@click.option("--no-progress", is_flag=True, help="No progress bars.")
def questions_cmd(cases, out, per_case, categories, formats, seed, masks_suffix, include, exclude, min_volume,
                  prior_min_cases, prior_threshold, prior_reference, family_balance, leakage_check,
                  no_progress) -> None:
    """Spatial question items from anatomy relation graphs: mask-verified, balanced, evidence-tagged.

    \b
    CASES: relations JSON files from `probe relations`, folders of them, folders written by
    `probe phantom`, or (with --masks-suffix) CTs with their masks. Every answer comes from a
    clear relation in the masks (never an indeterminate one); counterbalanced pairs (A vs B and
    B vs A) and rotated options balance yes/no, left/right and option positions per category and
    format, and the answers of families that vary across cases are balanced across the cases that
    ask them; each item carries its relation, margin, evidence axes and axial slices,
    counterfactual golds for mirror_lr / flip_si / flip_ap (and any geometric plugin control), computed
    from the masks transformed as the control transforms the CT (see `probe controls apply`), the
    controls under which its gold changes only because left/right names swap (name_swap_only), the
    content hashes of the CT and masks it was made from, and prior_fixed (normal anatomy fixes the
    answer, judged across cases).
    volume_path is relative to the folder of OUT.
    Examples:
      probe questions rel/ --out items.jsonl --per-case 60 --seed 0
      probe phantom --out ph/ --n 40 && probe questions ph/ --out items.jsonl \\
          --structures 'kidney_*,liver,spleen,stomach,lung_*' --leakage-check
    """
    from volprobe.probes.questions import (CATEGORIES, FORMATS, QuestionSettings, generate_questions, leakage_check
                                           as run_leakage, load_cases, write_question_set)
    from volprobe.probes.questions.balance import load_prior_reference

    _guard("probe questions", _file_outputs(out), list(cases) + [prior_reference])
    settings = QuestionSettings(
        per_case=per_case, categories=categories or CATEGORIES, formats=formats or FORMATS, seed=seed,
        min_volume_ml=min_volume, include=include, exclude=exclude, prior_min_cases=prior_min_cases,
        prior_threshold=prior_threshold, family_balance=family_balance,
        prior_reference=load_prior_reference(prior_reference) if prior_reference else None)
    loaded = load_cases(cases, masks_suffix=masks_suffix, progress=not no_progress)
    qs = generate_questions(loaded, settings, progress=not no_progress)
    if leakage_check:
        qs.leakage = run_leakage(qs.items, seed=seed)
    inputs = list(cases) + ([prior_reference] if prior_reference else [])
    _, manifest = write_question_set(qs, out, command="probe questions " + " ".join(sys.argv[2:]), inputs=inputs)
    click.echo(str(qs))
    click.echo(f"wrote {len(qs.items)} items to {out} (manifest: {manifest})")


# ---------------------------------------------------------------------------------------------
# benchmarks: import 3drad / ctspatialvqa, score, fit-baseline
# ---------------------------------------------------------------------------------------------

class _quiet_volprobe_warnings:
    """Context: library warnings are collected in the result and printed once by the command."""

    def __enter__(self):
        import warnings

        from volprobe.errors import VolprobeWarning

        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("ignore", VolprobeWarning)

    def __exit__(self, *exc):
        return self._ctx.__exit__(*exc)


def _write_items_with_manifest(result, out: str, command: str, inputs: list, parameters: dict) -> None:
    n = result.write(out, command, inputs=inputs, parameters=parameters)
    click.echo(str(result), err=True)
    click.echo(f"wrote {n} items to {out}")


@main.group("import")
def import_group() -> None:
    """Read published benchmarks into items, and other harnesses' results into run records.

    \b
      probe import 3drad 3DRAD/ --split test --volumes ct_rate/valid --out 3drad_test.jsonl
      probe import ctspatialvqa qa.jsonl --categories categories.json --out ctsvqa.jsonl
      probe import predictions preds.jsonl --items ctsvqa.jsonl --model RadFM --out radfm.records.jsonl
      probe import judged judged.csv --items ctsvqa.jsonl --out judged.records.jsonl
    """


@import_group.command("3drad")
@click.argument("path", type=click.Path(exists=True))
@click.option("--split", type=click.Choice(["test", "train"]), default="test", show_default=True,
              help="test = 3D-RAD-Bench, train = 3D-RAD-T (PATH/<split>/ or PATH itself if it is the split folder).")
@click.option("--volumes", type=click.Path(exists=True, file_okay=False),
              help="Folder of NIfTI/.npy volumes named after VolumeName (searched recursively). Missing "
                   "volumes are reported; their items stay text-only.")
@click.option("--ctrate-metadata", type=click.Path(exists=True, dir_okay=False), default=None, metavar="CSV",
              help="CT-RATE's metadata CSV (dataset/metadata/*_metadata.csv): each volume's rescale to HU and spacing "
                   "are stored with its items and applied when `probe run` reads it (first NIfTI release).")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Items file to write (JSON Lines).")
def import_3drad_cmd(path, split, volumes, ctrate_metadata, out) -> None:
    """3D-RAD CSV folders -> items, tasks T1-T6 numbered as in the paper.

    The release's folders swap the numbers of tasks 1 and 2; volprobe maps folders by NAME
    (Anomaly Detection = T1, Image Observation = T2). A missing task folder is a warning;
    a malformed row is an error naming its file and line.
    """
    from volprobe.probes.datasets.ctrate import add_to_import
    from volprobe.probes.datasets.threedrad import load_3drad

    _guard("probe import 3drad", _file_outputs(out), [path, volumes])
    with _quiet_volprobe_warnings():
        result = load_3drad(path, split=split, volumes=volumes)
        add_to_import(result, ctrate_metadata)
    _write_items_with_manifest(result, out, f"probe import 3drad {path} --split {split}",
                               [path] + ([ctrate_metadata] if ctrate_metadata else []),
                               {"split": split, "volumes": volumes, "ctrate_metadata": ctrate_metadata})


@import_group.command("ctspatialvqa")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--categories", type=click.Path(exists=True, dir_okay=False),
              help="JSON mapping case_id -> {qa_pairs: [{question, answer, category: [...]}]}.")
@click.option("--volumes", type=click.Path(exists=True, file_okay=False),
              help="Folder of volumes named after case_id (default: image_path relative to PATH's folder).")
@click.option("--ctrate-metadata", type=click.Path(exists=True, dir_okay=False), default=None, metavar="CSV",
              help="CT-RATE's metadata CSV (validation_metadata.csv): rescale to HU and spacing, applied by `probe run`.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Items file to write (JSON Lines).")
def import_ctspatialvqa_cmd(path, categories, volumes, ctrate_metadata, out) -> None:
    """CT-SpatialVQA JSON Lines -> open items with their spatial categories.

    Scored by normalised match, token F1, BLEU-1/ROUGE-1 and spatial-term agreement
    (left/right/bilateral, superior/inferior, anterior/posterior, medial/lateral/central).
    """
    from volprobe.probes.datasets.ctrate import add_to_import
    from volprobe.probes.datasets.ctspatialvqa import load_ctspatialvqa

    _guard("probe import ctspatialvqa", _file_outputs(out), [path, categories, volumes])
    with _quiet_volprobe_warnings():
        result = load_ctspatialvqa(path, categories=categories, volumes=volumes)
        add_to_import(result, ctrate_metadata)
    inputs = [p for p in (path, categories, ctrate_metadata) if p]
    _write_items_with_manifest(result, out, f"probe import ctspatialvqa {path}", inputs,
                               {"categories": categories, "volumes": volumes, "ctrate_metadata": ctrate_metadata})


def _write_records_with_manifest(result, out: str, command: str, inputs: list, parameters: dict) -> None:
    from volprobe.probes.scoring.aggregate import summarise

    n = result.write(out, command, inputs=inputs, parameters=parameters)
    click.echo(str(result), err=True)
    for summary in summarise(result.records):
        click.echo(str(summary))
    click.echo(f"wrote {n} records to {out}")


@import_group.command("predictions")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--items", "items_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="The items the predictions answer (from `probe import ...`).")
@click.option("--model", required=True, help="Model name to record.")
@click.option("--dedupe", type=click.Choice(["first", "last"]), default=None,
              help="Keep the first (or last) of several predictions for one item. [default: an error naming them]")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Records file to write (JSON Lines).")
def import_predictions_cmd(path, items_path, model, dedupe, out) -> None:
    """Another harness's predictions (JSON Lines with 'prediction') -> scored run records.

    Rows are matched to items by item_id/id, question_id, or case (case_id/image_path) and question text.
    Two predictions for one item are an error unless --dedupe says which to keep.
    """
    from volprobe.probes.datasets.external import import_predictions
    from volprobe.items import read_items

    _guard("probe import predictions", _file_outputs(out), [path, items_path])
    with _quiet_volprobe_warnings():
        result = import_predictions(path, read_items(items_path), model, dedupe=dedupe)
    _write_records_with_manifest(result, out, f"probe import predictions {path} --model {model}",
                                 [path, items_path], {"model": model, "dedupe": dedupe})


@import_group.command("judged")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--items", "items_path", type=click.Path(exists=True, dir_okay=False),
              help="CT-SpatialVQA items (recommended: gives records their gold answers and categories).")
@click.option("--threshold", type=click.FloatRange(0, 1, min_open=True), default=0.5, show_default=True,
              help="Judge fraction at or above which an answer is correct, in (0, 1] (0.5 = a majority of judges).")
@click.option("--model", "models", multiple=True, help="Model column to read (repeatable; default: every column "
              "holding judge fractions).")
@click.option("--dedupe", type=click.Choice(["first", "last"]), default=None,
              help="Keep the first (or last) row of a question_id given more than once. [default: an error]")
@click.option("--skip-blank", is_flag=True,
              help="Read a blank cell as 'not judged' (no record for that model and question). [default: an error]")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Records file to write (JSON Lines).")
def import_judged_cmd(path, items_path, threshold, models, dedupe, skip_blank, out) -> None:
    """A judged-correctness CSV (question_id + one column per model) -> run records, one model per column.

    Every cell of a model column must be a judge fraction in [0, 1]; a blank or text cell, or a question_id
    given twice, is an error naming its line and column (see --skip-blank, --dedupe). Columns without any
    number (notes) are skipped with a warning.
    """
    from volprobe.probes.datasets.external import import_judged
    from volprobe.items import read_items

    _guard("probe import judged", _file_outputs(out), [path, items_path])
    items = read_items(items_path) if items_path else None
    with _quiet_volprobe_warnings():
        result = import_judged(path, items, threshold=threshold, models=list(models) or None, dedupe=dedupe,
                               skip_blank=skip_blank)
    inputs = [p for p in (path, items_path) if p]
    _write_records_with_manifest(result, out, f"probe import judged {path}", inputs,
                                 {"threshold": threshold, "models": list(models), "dedupe": dedupe,
                                  "skip_blank": skip_blank})


@main.group("baseline")
def baseline_group() -> None:
    """Blind baselines (question text only): fit on a training split, use as `--model prior:FILE`.

    \b
      probe import 3drad 3DRAD/ --split train --out train.jsonl
      probe baseline fit --items train.jsonl --kind history-rule --out history.json
      probe baseline eval --baseline history.json --items test.jsonl --out history.records.jsonl
      probe run --model prior:history.json --items test.jsonl --control full --out runs/prior
    """


@baseline_group.command("fit")
@click.option("--items", "items_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Training items (JSON Lines).")
@click.option("--kind", required=True, metavar="KIND",
              help="majority: most frequent answer per task/subtask/label; history-rule: 3D-RAD Task 6 from "
                   "the prior states in the question; text-classifier: TF-IDF + logistic regression "
                   "(plugins may add kinds).")
@click.option("--min-count", type=click.IntRange(min=1), default=5, show_default=True,
              help="Fewest training items a group needs before its majority is used.")
@seed_option()
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Baseline file to write (JSON).")
def baseline_fit_cmd(items_path, kind, min_count, seed, out) -> None:
    """Fit a blind baseline on training items and save it (a small JSON file)."""
    from volprobe.items import read_items
    from volprobe.probes.baselines import fit_baseline, save_baseline

    _guard("probe baseline fit", _file_outputs(out), [items_path])
    baseline = fit_baseline(read_items(items_path), kind, seed=seed, min_count=min_count)
    save_baseline(baseline, out, command=f"probe baseline fit --kind {kind}", inputs=[items_path])
    click.echo(f"fitted {kind} on {baseline.n_fitted} items -> {out}")


@baseline_group.command("eval")
@click.option("--baseline", "baseline_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Baseline file from `probe baseline fit`.")
@click.option("--items", "items_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Items to answer (JSON Lines), e.g. the test split.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Records file to write (JSON Lines).")
def baseline_eval_cmd(baseline_path, items_path, out) -> None:
    """Answer items with a fitted baseline (no model, no volume) and write scored run records."""
    from volprobe.controls import reference_control
    from volprobe.items import read_items
    from volprobe.probes.baselines import evaluate_baseline, load_baseline

    _guard("probe baseline eval", _file_outputs(out), [baseline_path, items_path])
    control = reference_control()
    result = evaluate_baseline(load_baseline(baseline_path), read_items(items_path), f"prior:{baseline_path}",
                               control.label, control.facts())
    _write_records_with_manifest(result, out, f"probe baseline eval --baseline {baseline_path}",
                                 [baseline_path, items_path], {})


@main.command("score")
@click.argument("records", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--bertscore-model", default=None, metavar="NAME_OR_DIR",
              help="Add BERTScore F1 for open answers with this LOCAL model (folder or cached Hugging Face id, "
                   "e.g. roberta-large); skipped with a note when it is not on this machine.")
@click.option("--out", type=click.Path(dir_okay=False), help="Also write the summary as JSON.")
def score_cmd(records, bertscore_model, out) -> None:
    """Benchmark headline numbers per model, control and task from run records.

    Pooled accuracy, the 3D-RAD paper's unweighted mean over subtask files, class-balanced
    accuracy, unparseable/refused counts, and mean open-answer scores (BLEU-1, ROUGE-1, token F1,
    spatial-term agreement, judge fraction). For CIs and paired tests use `probe report`.
    """
    from volprobe.probes.scoring.aggregate import summarise, write_summaries
    from volprobe.records import read_record_files

    _guard("probe score", _file_outputs(out), list(records))
    _distinct_inputs(records, "records file")
    recs = read_record_files(records)
    summaries = summarise(recs)
    note = None
    if bertscore_model:
        from volprobe.probes.scoring.bertscore import add_bertscore

        note = add_bertscore(summaries, recs, bertscore_model)
        click.echo(note, err=True)
    for summary in summaries:
        click.echo(str(summary))
    if out:
        write_summaries(summaries, out, inputs=list(records), parameters={"bertscore_model": bertscore_model},
                        note=note)
        click.echo(f"wrote {out}")


# ---------------------------------------------------------------------------------------------
# runs: run, merge, controls, models
# ---------------------------------------------------------------------------------------------

def _parse_model_options(pairs: tuple[str, ...]) -> dict:
    """``KEY=VALUE`` pairs; values parsed as JSON when possible (numbers, true/false), else kept as text."""
    import json

    options = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not key.strip():
            raise VolprobeError(f"--model-option {pair!r}: expected KEY=VALUE, e.g. --model-option n_slices=16")
        try:
            options[key.strip()] = json.loads(value)
        except ValueError:
            options[key.strip()] = value
    return options


@main.command("run")
@click.option("--model", "model_spec", required=True, metavar="NAME[:PATH]",
              help="Registered model (see `probe models`), with local weights after a colon, e.g. m3d:/weights/M3D-RAD.")
@click.option("--items", "items_path", required=True, type=click.Path(dir_okay=False),
              help="Items file (JSON Lines). Relative volume paths are tried as given, then beside this file.")
@click.option("--control", "controls", required=True, multiple=True, metavar="C[:VALUE]",
              help="Control (repeatable; see `probe controls`), e.g. full, text_only, single_slice:evidence; "
                   "'standard' stands for the standard set (every built-in control).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="Run folder: records.jsonl, excluded.jsonl, manifest.json (per shard with --shard). "
                   "Rerunning the same command resumes.")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or cuda:N (passed to the adapter).")
@click.option("--dtype", type=click.Choice(["bf16", "fp16", "fp32", "auto"]), default="auto", show_default=True,
              help="Weights dtype (passed to the adapter).")
@click.option("--batch-size", type=click.IntRange(min=1), default=1, show_default=True,
              help="Items per generate call.")
@click.option("--limit", type=click.IntRange(min=0), default=None, help="Only the first N items of the file.")
@click.option("--shard", default=None, metavar="I/N",
              help="Run only shard I of N (0-based: 0/4 .. 3/4); cases are split deterministically and stay "
                   "whole. Join the shards with `probe merge`.")
@click.option("--single-slice", type=click.Choice(["middle", "evidence", "outside"]), default=None,
              help="Slice for a plain `--control single_slice`: the middle one (default), the middle of the item's "
                   "evidence['axial_slices'], or one outside it.")
@click.option("--model-option", "model_options", multiple=True, metavar="KEY=VALUE",
              help="Adapter option (repeatable), e.g. --model-option max_new_tokens=64.")
@click.option("--label", default=None, help="Model name in the records (default: the --model spec as given).")
@click.option("--no-retry-errors", is_flag=True,
              help="On resume, keep records that ended in an error instead of running them again.")
@click.option("--ctrate-metadata", type=click.Path(exists=True, dir_okay=False), default=None, metavar="CSV",
              help="CT-RATE's metadata CSV: volumes are rescaled to HU and given its spacing when read (rows stored "
                   "by `probe import --ctrate-metadata` apply without it).")
@click.option("--ray", "ray_address", is_flag=False, flag_value="local", default=None, metavar="[ADDRESS]",
              help="Spread the run over Ray workers: without ADDRESS a local Ray instance using every GPU of this "
                   "machine (or CPU slots); with one (host:port, or auto), a running cluster. Same records, "
                   "resume and retry as a plain run. Needs `pip install 'volprobe[ray]'`.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="With --ray: number of workers (default: one per GPU, or per CPU slot).")
@click.option("--gpus-per-worker", type=click.FloatRange(min=0), default=None,
              help="With --ray: GPUs each worker holds (default 1 when --device is cuda, else 0).")
@click.option("--allow-changed-volumes", is_flag=True,
              help="Run items whose volume differs from the one they were made from (their records are tagged "
                   "volume_changed); default: stop with an error naming the file and the item.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@seed_option()
def run_cmd(model_spec, items_path, controls, out_dir, device, dtype, batch_size, limit, shard, single_slice,
            model_options, label, no_retry_errors, ctrate_metadata, ray_address, workers, gpus_per_worker,
            allow_changed_volumes, no_progress, seed) -> None:
    """Answer every item under every control; one JSON record per (item, control) in OUT.

    \b
    Records are appended and fsync'ed per batch; killing the run loses at most the batch in
    flight, and rerunning the same command resumes without doing any item twice. Records that
    ended in an error (a missing volume, a model failure) are run again on resume (and the
    count said) unless --no-retry-errors. Items are grouped by case so each volume is read
    once and each (volume, control) input is prepared once. Decoding is the adapter's
    (greedy by default) and is recorded with every record. Each volume read is checked against
    the content hash its items were made from (metadata volume_sha256): a changed volume stops
    the run (records so far kept) unless --allow-changed-volumes.
    Exit status: 0 when every record holds an answer, 3 when the run finished but some
    records hold an error (rerun the same command to retry them), 2 for bad input.
    Examples:
      probe run --model random --items items.jsonl --control full --control text_only --out runs/random
      probe run --model m3d:/weights/M3D-RAD --items items.jsonl --control full --control mirror_lr \\
          --out runs/m3d --device cuda --dtype bf16 --batch-size 8 --shard 0/4
      probe merge runs/m3d --out runs/m3d-all
      probe run --model m3d:/weights/M3D-RAD --items items.jsonl --control standard --out runs/m3d \
          --device cuda --dtype bf16 --ray                      # every GPU of this machine
    """
    from volprobe.probes.run.engine import run_from_files
    from volprobe.probes.run.store import RunFiles, Shard

    ray = None
    if ray_address is not None:
        from volprobe.probes.run.distributed import RayOptions

        gpus = gpus_per_worker if gpus_per_worker is not None else (1.0 if device.startswith("cuda") else 0.0)
        ray = RayOptions(address=ray_address, workers=workers, gpus_per_worker=gpus)
    elif workers is not None or gpus_per_worker is not None:
        raise VolprobeError("--workers and --gpus-per-worker need --ray")
    files = RunFiles(Path(out_dir), Shard.parse(shard))
    _guard("probe run", [files.records, files.excluded, files.manifest], [items_path], folder=out_dir)
    summary = run_from_files(model_spec, items_path, list(controls), out_dir, device=device, dtype=dtype,
                             single_slice=single_slice, model_options=_parse_model_options(model_options),
                             label=label, seed=seed, batch_size=batch_size, limit=limit, shard=shard,
                             progress=not no_progress, retry_errors=not no_retry_errors,
                             ctrate_metadata=ctrate_metadata, ray=ray, allow_changed_volumes=allow_changed_volumes)
    click.echo(str(summary))
    if summary.errors_remaining:
        first = summary.first_error.strip().splitlines()[0][:200] if summary.first_error else "?"
        click.secho(f"warning: {summary.errors_remaining} records ended in an error (e.g. {first}); "
                    "fix the cause and rerun the same command to retry them", fg="yellow", err=True)
        sys.exit(EXIT_RECORD_ERRORS)


@main.command("merge")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(file_okay=False))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="New folder for the joined records.jsonl, excluded.jsonl and manifest.json.")
def merge_cmd(run_dirs, out_dir) -> None:
    """Join the shards (and runs) in RUN_DIRS into one run folder.

    \b
    Every (item, control) pair that a shard's manifest expects must have exactly one record
    or exclusion, and all shards 0..N-1 must be there; otherwise nothing is written and the
    missing, duplicated or unexpected pairs are listed (exit status 2).
    Example:
      probe merge runs/m3d-shard0 runs/m3d-shard1 --out runs/m3d
    """
    from volprobe.probes.run.store import merge_runs

    click.echo(str(merge_runs(run_dirs, out_dir)))


@main.group("controls", invoke_without_command=True)
@click.pass_context
def controls_cmd(ctx) -> None:
    """List the registered controls (built-ins and plugins) and what evidence each removes or changes.

    The roles in brackets are what reports read: the reference condition, the conditions without
    the image, and the counterfactuals (whose gold answers change, along a patient axis); those that
    move the anatomy (geometry) have their golds computed from the masks moved the same way.
    `probe controls apply` writes what a model sees under a control.
    """
    if ctx.invoked_subcommand is not None:
        return
    from volprobe.controls import STANDARD_CONTROLS, list_controls

    for cls in list_controls():
        roles = ["reference" if cls.reference else "", "no image" if cls.removes_image else "",
                 f"counterfactual ({cls.patient_axis or 'any axis'})" if cls.changes_gold else "gold unchanged",
                 "geometry: golds from the moved masks" if cls.changes_geometry else ""]
        params = ", ".join(f"{k}={v}" for k, v in cls.defaults.items())
        facts = "; ".join(r for r in roles + [params] if r)
        click.echo(f"{cls.name:<16} {cls.statement} [{facts}]")
    click.echo(f"standard set (--control standard): {', '.join(STANDARD_CONTROLS)}")


@controls_cmd.command("apply")
@click.argument("volume", type=click.Path())
@click.option("--control", "spec", required=True, metavar="C[:VALUE]", help="Control, e.g. mirror_lr, shuffled_slices, "
              "single_slice:middle (see `probe controls`).")
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="Image to write (.nii.gz, .nii, .nrrd, .mha); a manifest is written beside it.")
@click.option("--labels", type=click.Path(), default=None,
              help="Masks of VOLUME (TotalSegmentator multilabel or folder): also write them moved the same way "
                   "(nearest neighbour, names in the header; only for controls that change geometry).")
@click.option("--labels-out", type=click.Path(dir_okay=False), default=None,
              help="Where the moved masks go. [default: OUT with _seg before its suffix]")
@click.option("--resample-masks", is_flag=True,
              help="Resample masks on another grid to the volume by nearest neighbour (default: refuse).")
@click.option("--item", "item_id", default=None, metavar="ID",
              help="Apply the control as for this item (needed by controls whose input depends on the item, "
                   "e.g. single_slice:evidence); with --items.")
@click.option("--items", "items_path", type=click.Path(dir_okay=False), default=None, help="Items file holding --item.")
@click.option("--case", default=None,
              help="Case id the control's seed derives from. [default: the item's case, else VOLUME's name]")
@seed_option()
def controls_apply_cmd(volume, spec, out, labels, labels_out, resample_masks, item_id, items_path, case, seed) -> None:
    """Write what a model sees under a control (and, with --labels, the masks moved the same way).

    \b
    The image is exactly what `probe run` feeds a model for this case and seed; the moved masks
    are what the items' counterfactual golds are computed from, so you can look at both and check
    the golds (e.g. load them in 3D Slicer or ITK-SNAP).
    Examples:
      probe controls apply ph/phantom_s0_003.nii.gz --control mirror_lr --out mirrored.nii.gz \\
          --labels ph/phantom_s0_003_seg.nii.gz
      probe controls apply ct.nii.gz --control single_slice:evidence --item ID --items items.jsonl --out slice.nii.gz
    """
    from volprobe.controls.export import apply_control_to_files, labels_output_path

    if (item_id is None) != (items_path is None):
        raise click.UsageError("--item and --items go together")
    item = None
    if item_id is not None:
        from volprobe.items import read_items

        found = [it for it in read_items(items_path) if it.id == item_id]
        if not found:
            raise VolprobeError(f"{items_path}: no item {item_id!r}")
        item = found[0]
    moved = (labels_out or labels_output_path(out)) if labels else None
    _guard("probe controls apply", _file_outputs(out) + _file_outputs(moved), [volume, labels, items_path])
    click.echo(str(apply_control_to_files(volume, spec, out, labels=labels, labels_out=moved, item=item, case=case,
                                          seed=seed, resample_masks=resample_masks)))


@main.command("models")
def models_cmd() -> None:
    """List the registered models (adapters and reference models)."""
    from volprobe.probes.models import MODELS

    for cls in MODELS.classes():
        name = cls.name
        doc = (cls.__doc__ or "").strip().splitlines()
        image = "reads the image" if cls.uses_image else "blind"
        click.echo(f"{name:<10} {doc[0] if doc else ''} [{image}; without image: {cls.no_image_mode}]")


@main.command("doctor")
@click.argument("model_spec", metavar="MODEL[:PATH]")
@click.option("--model-option", "model_options", multiple=True, metavar="KEY=VALUE",
              help="Adapter option as for `probe run` (repeatable), e.g. --model-option preset=medgemma.")
def doctor_cmd(model_spec, model_options) -> None:
    """Check a model folder without loading its weights; say what is wrong and how to fix it.

    \b
    Checks: the folder (local or Hugging Face cache), config, weight files, tokenizer/processor, the
    model's own code (imports and builds with the installed libraries, on the meta device), library
    versions the authors used, and the preprocessing preset that will be used and why.
    Exit status 1 when a problem is found.
    Examples:
      probe doctor radfm:/weights/RadFM
      probe doctor hf:google/medgemma-1.5-4b-it
    """
    from volprobe.probes.models.doctor import doctor

    report = doctor(model_spec, **_parse_model_options(model_options))
    click.echo(str(report))
    if not report.ok:
        sys.exit(1)


# ---------------------------------------------------------------------------------------------
# statistics: report
# ---------------------------------------------------------------------------------------------

@main.command("report")
@click.argument("runs", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Report folder to write.")
@click.option("--by", "by", multiple=True, metavar="GROUPING",
              type=click.Choice(["task", "category", "subtask", "evidence", "prior_fixed"]),
              help="Also report per group of items (repeatable). evidence: the patient axes an answer "
                   "depends on (lr, si, lr+si, none); prior_fixed: whether normal anatomy fixes the answer.")
@click.option("--alpha", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.05, show_default=True,
              help="Significance level, in (0, 1); CIs are 1-alpha.")
@click.option("--correction", type=click.Choice(["holm", "fdr_bh"]), default="holm", show_default=True,
              help="Multiple-comparison adjustment over the report's primary tests (fdr_bh: Benjamini-Hochberg); "
                   "the secondary item-level tests (McNemar, Cochran's Q) are adjusted apart.")
@click.option("--reference", default=None,
              help="Control every other control is compared with. [default: the control the records state is "
                   "the reference, full]")
@click.option("--baseline", "baselines", multiple=True, metavar="MODEL",
              help="Treat MODEL as a blind baseline (repeatable; models named prior or prior:* always are).")
@click.option("--pairwise-control", "pairwise_controls", multiple=True, metavar="CONTROL",
              help="Compare models with each other under CONTROL (repeatable; default: the reference).")
@click.option("--chance-test", type=click.Choice(["two-sided", "greater", "less"]), default="two-sided",
              show_default=True, help="Sidedness of the test against chance (two-sided supports 'below chance').")
@click.option("--n-perm", type=click.IntRange(min=1), default=10000, show_default=True,
              help="Permutations of the answer-sensitivity test (runs without controls).")
@click.option("--intersect", is_flag=True,
              help="When a control lacks items of the reference, compare the shared items instead of failing.")
@click.option("--assess-references", is_flag=True,
              help="Also test the blind baselines and the random model for volume use (a sanity check of the "
                   "pipeline: they cannot use the volume).")
@click.option("--no-figures", is_flag=True, help="Skip the PNG/PDF figures.")
@click.option("--figure-width", type=click.Choice(["double", "single"]), default="double", show_default=True,
              help="Figure width: a journal page (183 mm) or one column (89 mm).")
@click.option("--no-html", is_flag=True, help="Skip report.html (the page with the item browser).")
@click.option("--browser-items", type=click.IntRange(min=0), default=12, show_default=True, metavar="N",
              help="Items per category in report.html's item browser, drawn with the seed; 0 shows every item "
                   "(larger page).")
@click.option("--items", "items_files", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Items file(s) for the item browser (default: the one each run's manifest names).")
@click.option("--masks", "masks_dirs", multiple=True, type=click.Path(exists=True, file_okay=False),
              help="Folder of each case's masks (CASE.nii.gz, CASE_seg.nii.gz or CASE/) for the outlines in "
                   "report.html (default: NAME_seg.nii.gz beside each CT, or the masks the items were made from).")
@seed_option()
def report_cmd(runs, out, by, alpha, correction, reference, baselines, pairwise_controls, chance_test,
               n_perm, intersect, assess_references, no_figures, figure_width, no_html, browser_items, items_files,
               masks_dirs, seed) -> None:
    """Statistics and paper-ready tables from run records: does each model use the volume?

    RUNS are run directories (RUN_DIR/records*.jsonl, e.g. one per model) or records files;
    they are combined. Writes OUT/report.md, report.json, tables/*.csv|tex, figures/*.png|pdf,
    report.html and manifest.json. Records with a model error are excluded from accuracy and paired
    tests and listed.

    report.html is one self-contained page (open it from disk): verdicts, tables, figures and an item
    browser, filtered by model, control, category and outcome, showing per item and control the model's
    raw and parsed answer beside the evidence slices as the control presented them (the model's window,
    the question's structures outlined). Volumes are read once per case; the browser shows a sample of
    --browser-items items per category.

    Verdicts come from cluster-robust paired tests (questions on one patient are correlated): the
    accuracy change with a t interval (CR2 standard error, Bell-McCaffrey degrees of freedom), or the
    exact sign-flip test with no interval below 8 patients; exact McNemar is shown as a secondary,
    item-level test. Every verdict names the test that decided it; report.md ends with how to read it.
    Runs without controls (e.g. imported predictions) get one "not assessed" line and an
    answer-sensitivity table: do answers change between volumes asked the same question?

    \b
    Example:
      probe report runs/qwen runs/m3d runs/prior --by task --out report/
    """
    from volprobe.stats.settings import ReportSettings
    from volprobe.stats.report import make_report

    _guard("probe report", [Path(out) / n for n in ("manifest.json", "report.md", "report.json", "report.html")],
           list(runs) + list(items_files), folder=out)
    _distinct_inputs(runs, "run")
    settings = ReportSettings(alpha=alpha, correction=correction, reference=reference, by=by, baselines=baselines,
                              pairwise_controls=pairwise_controls, chance_alternative=chance_test, n_perm=n_perm,
                              seed=seed, intersect=intersect, assess_references=assess_references,
                              figure_width=figure_width)
    html = None
    if not no_html:
        from volprobe.viewer import BrowserSettings, html_report_writer

        html = html_report_writer(runs, BrowserSettings(per_category=browser_items, seed=seed, items=items_files,
                                                        masks=masks_dirs))
    report = make_report(runs, out, settings, figures=not no_figures,
                         command="probe report " + " ".join(sys.argv[2:]), extra=html)
    click.echo(str(report))


@main.command("figure")
@click.argument("item_id")
@click.option("--runs", "runs", required=True, multiple=True, type=click.Path(exists=True),
              help="Run folder or records file (repeatable): every model whose records hold the item is shown.")
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="The figure, FIG.pdf (vector); FIG.png is written beside it.")
@click.option("--control", "controls", multiple=True, metavar="CONTROL",
              help="Only these controls, in this order (repeatable; default: every control in the records).")
@click.option("--width", type=click.Choice(["double", "single"]), default="double", show_default=True,
              help="A journal page (183 mm) or one column (89 mm).")
@click.option("--items", "items_files", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Items file holding ITEM_ID (default: the one each run's manifest names).")
@click.option("--masks", "masks_dirs", multiple=True, type=click.Path(exists=True, file_okay=False),
              help="Folder of each case's masks for the outlines (default: NAME_seg.nii.gz beside the CT, or the "
                   "masks the items were made from).")
def figure_cmd(item_id, runs, out, controls, width, items_files, masks_dirs) -> None:
    """A paper-ready panel of one item: the evidence slices under each control, the question, each model's answers.

    \b
    One column per control: the planes it presented (axial, and coronal for superior-inferior
    questions) in the window of the models' preprocessing, the structures the question names
    outlined as the control moved them; under each, every model's parsed answer (right or wrong
    under that control's gold). Writes FIG.pdf (vector text and outlines) and FIG.png.
    Item ids are in the runs' records and in report.html's item browser.
    Example:
      probe figure spatial/phantom_s0_001/b2c3ff40eab3e7f9 --runs runs/oracle --runs runs/random --out fig.pdf
    """
    from volprobe.viewer.figure import item_figure

    _guard("probe figure", [Path(out), Path(out).with_suffix(".png")], list(runs) + list(items_files))
    paths = item_figure(item_id, runs, out, items=items_files, masks=masks_dirs, controls=list(controls) or None,
                        width=width)
    click.echo("wrote " + " and ".join(str(p) for p in paths))


@main.command("power")
@click.option("--items", "n", type=click.IntRange(min=1, max=10**9),
              help="Number of paired items planned (1 to 10^9); default with --pilot: the pilot's.")
@click.option("--discordance", type=click.FloatRange(0, 1),
              help="Expected share of items right under one condition and wrong under the other "
                   "(default with --pilot: the pilot's).")
@click.option("--patients", type=click.IntRange(min=2),
              help="Number of patients the items are spread over: plans for the cluster-robust test over "
                   "patients that reports use (needs --icc, or --pilot). Without it items count as independent.")
@click.option("--icc", type=click.FloatRange(0, 1),
              help="Intra-patient correlation of the paired differences, in [0, 1] (default with --pilot: "
                   "the pilot's estimate).")
@click.option("--pilot", "pilot_runs", multiple=True, type=click.Path(exists=True),
              help="Run directory (or records file) of a pilot: estimates discordance, intra-patient "
                   "correlation and questions per patient from its records. Repeatable.")
@click.option("--control", "pilot_control", help="With --pilot: the control compared with the reference.")
@click.option("--model", "pilot_model", help="With --pilot: the model, when the pilot runs hold several.")
@click.option("--alpha", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.05, show_default=True,
              help="Significance level, in (0, 1).")
@click.option("--power", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.8, show_default=True,
              help="Probability of detecting the drop, in (0, 1).")
@click.option("--one-sided", is_flag=True, help="One-sided test (a drop only).")
def power_cmd(n, discordance, patients, icc, pilot_runs, pilot_control, pilot_model, alpha, power, one_sided) -> None:
    """Minimum detectable accuracy drop (full vs a control) for a planned study.

    Questions about one patient are correlated, and reports test over patients; plan with
    --patients and --icc (or let a pilot run supply them) rather than counting items as
    independent, which overstates what a study can detect.

    \b
    Examples:
      probe power --items 1304 --discordance 0.2
      probe power --items 1304 --discordance 0.2 --patients 40 --icc 0.05
      probe power --pilot runs/m3d --control blank --patients 100 --items 2000
    """
    from volprobe.stats.power import minimum_detectable_drop, pilot_estimate

    alternative = "greater" if one_sided else "two-sided"
    if pilot_runs:
        if not pilot_control:
            raise click.UsageError("--pilot needs --control (the control to plan for, e.g. blank)")
        pilot = pilot_estimate(pilot_runs, pilot_control, pilot_model)
        click.echo(str(pilot))
        click.echo(str(pilot.plan(n, patients, discordance, icc, alpha, power, alternative)))
        return
    if pilot_control or pilot_model:
        raise click.UsageError("--control and --model go with --pilot")
    if n is None or discordance is None:
        raise click.UsageError("give --items and --discordance, or --pilot RUN --control NAME")
    if (patients is None) != (icc is None):
        raise click.UsageError("give --patients and --icc together (or --pilot)")
    if patients is not None and patients > n:
        raise click.UsageError(f"--patients ({patients}) exceeds --items ({n})")
    click.echo(str(minimum_detectable_drop(n, discordance, alpha, power, alternative, patients=patients, icc=icc)))


# ---------------------------------------------------------------------------------------------
# demo
# ---------------------------------------------------------------------------------------------

@main.command("demo")
@click.option("--out", "out_dir", default="probe-demo", show_default=True, type=click.Path(file_okay=False),
              help="Folder for everything the demo makes (phantoms, relations, items, runs, report).")
@click.option("--n-cases", type=click.IntRange(min=2), default=12, show_default=True,
              help="Evaluation cases; as many more are made to fit the blind prior.")
@seed_option()
@click.option("--quiet", is_flag=True, help="No progress bars.")
def demo_cmd(out_dir, n_cases, seed, quiet) -> None:
    """Run the whole pipeline on synthetic phantoms (the embedded default data) and report.

    Makes 2 x N-CASES phantom CTs with masks (RAS, LPS, LAS and oblique arrays), builds their relation
    graphs, draws a balanced spatial question set, fits a blind prior on half the cases, runs the
    reference models oracle (segments the volume it is given), prior (blind) and random under every
    control, writes the full report to OUT/report (report.md; report.html with an item browser showing
    what each control presented beside every answer) and prints the key table.

    It then checks the honest expected outcome: the oracle drops under every control that removes or
    degrades the image and follows every counterfactual (mirror_lr, flip_si, flip_ap); prior and random
    show no volume use. Each check is printed as met or NOT met; the exit status is 1 when one is not met.

    \b
    Example:
      probe demo --out probe-demo --n-cases 12 --seed 0
    """
    from volprobe.demo import format_result, run_demo

    _guard("probe demo", [Path(out_dir) / "manifest.json"], [], folder=out_dir)
    result = run_demo(out_dir, n_cases=n_cases, seed=seed, progress=not quiet, echo=click.echo)
    click.echo(format_result(result))
    if not result.all_met:
        sys.exit(1)



if __name__ == "__main__":  # pragma: no cover
    main()
