"""Bad input, per command: one `error: ...` line, a non-zero exit status, no traceback, inputs untouched.

One row per (command, bad input). A new command gets its rows here: an output path equal to an input,
a missing input, a corrupt input, out-of-range options. Each row runs the command in process on a
workspace made by the commands themselves (see clifixtures.py) and checks that

* the exit status is the expected one (2: usage or input error),
* stderr holds exactly one line starting with ``error:`` (the first one) and it contains the phrase,
* nothing that looks like a traceback is printed,
* every file of the workspace is byte-identical afterwards and none was added.
"""

from __future__ import annotations

import pytest

from clifixtures import assert_one_error_line, invoke, make_workspace, tree_hashes

#: (command, arguments with {placeholders} from the workspace and {out} a fresh output path, exit status,
#: phrase the error line contains)
CASES = [
    # phantom
    ("phantom", "--out {out} --n 0", 2, "invalid value for '--n'"),
    ("phantom", "--out {out} --shape 4000 4000 4000", 2, "memory"),
    ("phantom", "--out {out} --spacing 0 1 1", 2, "spacing"),
    ("phantom", "--out {out} --spacing -1 1 1", 2, "spacing"),
    ("phantom", "--out {out} --noise -1", 2, "invalid value for '--noise'"),
    ("phantom", "--out {a_file}", 2, "is a file"),
    ("phantom", "--out {ph} --n 2 --shape 36 32 36 --spacing 9 9 9 --noise 7", 2, "other settings"),
    # segment
    ("segment", "{ct} --out {out} --weights-dir {root}/nope", 2, "weights"),
    ("segment", "{ct} --out {ph}", 2, "input"),
    ("segment", "{ct} --out {out} --timeout -1", 2, "--timeout"),
    # relations
    ("relations", "{ct} --masks {seg} --out {ct}", 2, "input"),
    ("relations", "{ct} --masks {seg} --out {seg}", 2, "input"),
    ("relations", "{root}/nope.nii.gz --masks {seg} --out {out}", 2, "not found"),
    ("relations", "{ct} --masks {root}/nope_seg.nii.gz --out {out}", 2, "not found"),
    ("relations", "{ct_crc} --masks {seg} --out {out}", 2, "crc"),
    ("relations", "{ct_cut} --masks {seg} --out {out}", 2, "truncated"),
    ("relations", "{ct_text} --masks {seg} --out {out}", 2, "cannot read"),
    ("relations", "{ct_loop} --masks {seg} --out {out}", 2, "symlink loop"),
    ("relations", "{ct} --masks {seg_crc} --out {out}", 2, "crc"),
    ("relations", "{ct} --masks {seg_shifted} --out {out}", 2, "not on the ct's voxel grid"),
    ("relations", "{ct} --masks {seg} --out {out} --centroid-margin -1", 2, "--centroid-margin"),
    ("relations", "{ct} --masks {seg} --out {out} --contact-tolerance -0.5", 2, "--contact-tolerance"),
    # controls apply
    ("controls apply", "{ct} --control mirror_lr --out {ct}", 2, "input"),
    ("controls apply", "{ct} --control mirror_lr --out {out} --labels {seg} --labels-out {seg}", 2, "input"),
    ("controls apply", "{root}/nope.nii.gz --control mirror_lr --out {out}.nii.gz", 2, "not found"),
    ("controls apply", "{ct_crc} --control mirror_lr --out {out}.nii.gz", 2, "crc"),
    ("controls apply", "{ct} --control mirror_lr --out {out}.nii.gz --labels {seg_shifted}", 2,
     "not on the ct's voxel grid"),
    ("controls apply", "{ct} --control nonsense --out {out}.nii.gz", 2, "nonsense"),
    ("controls apply", "{ct} --control single_slice:evidence --out {out}.nii.gz", 2, "give an item"),
    ("controls apply", "{ct} --control single_slice:evidence --out {out}.nii.gz --item x", 2, "--items"),
    ("controls apply", "{ct} --control single_slice:evidence --out {out}.nii.gz --item x --items {items}", 2,
     "no item 'x'"),
    ("controls apply", "{ct} --control text_only --out {out}.nii.gz", 2, "no image"),
    ("controls apply", "{ct} --control swapped_volume --out {out}.nii.gz", 2, "two different patients"),
    ("controls apply", "{ct} --control blank --out {out}.nii.gz --labels {seg}", 2, "does not move the anatomy"),
    # questions
    ("questions", "{rel} --out {rel}", 2, "input"),
    ("questions", "{ph} --out {ph}/phantom_s0_000_layout.json", 2, "input folder"),
    ("questions", "{root}/nope.json --out {out}", 2, "not found"),
    ("questions", "{nomask} --masks-suffix _seg.nii.gz --out {out}", 2, "b_seg.nii.gz"),
    ("questions", "{rel_broken} --out {out}", 2, "not valid json"),
    ("questions", "{rel_latin1} --out {out}", 2, "rel_latin1.json:1: not utf-8"),
    ("questions", "{rel} --out {out} --per-case 0", 2, "--per-case"),
    ("questions", "{rel} --out {out} --categories nonsense", 2, "nonsense"),
    ("questions", "{rel} --out {out} --prior-reference {root}/nope.json", 2, "not found"),
    ("questions", "{rel} --out {out} --min-volume -1", 2, "--min-volume"),
    # import 3drad
    ("import 3drad", "{3drad} --out {3drad_csv}", 2, "input"),
    ("import 3drad", "{root}/nope --out {out}", 2, "does not exist"),
    ("import 3drad", "{3drad_latin1} --out {out}", 2, "lung_nodule.csv:3:"),
    ("import 3drad", "{3drad_empty} --out {out}", 2, "no items"),
    ("import 3drad", "{root}/bad --out {out}", 2, "no 3d-rad task folders"),
    ("import 3drad", "{3drad} --volumes {root}/nope --out {out}", 2, "does not exist"),
    # import ctspatialvqa
    ("import ctspatialvqa", "{qa} --out {qa}", 2, "input"),
    ("import ctspatialvqa", "{qa} --categories {cats} --out {cats}", 2, "input"),
    ("import ctspatialvqa", "{empty} --out {out}", 2, "no qa pairs"),
    ("import ctspatialvqa", "{qa_latin1} --out {out}", 2, "qa_latin1.jsonl:3: not utf-8"),
    ("import ctspatialvqa", "{qa_broken} --out {out}", 2, "qa_broken.jsonl:2:"),
    # import predictions
    ("import predictions", "{preds} --items {cts_items} --model M --out {cts_items}", 2, "input"),
    ("import predictions", "{preds} --items {cts_items} --model M --out {preds}", 2, "input"),
    ("import predictions", "{preds_dup} --items {cts_items} --model M --out {out}", 2, "--dedupe"),
    ("import predictions", "{empty} --items {cts_items} --model M --out {out}", 2, "no predictions"),
    ("import predictions", "{preds_latin1} --items {cts_items} --model M --out {out}", 2, "preds_latin1.jsonl:3"),
    ("import predictions", "{preds} --items {items_options_str} --model M --out {out}", 2, "options"),
    # import judged
    ("import judged", "{judged} --items {cts_items} --out {judged}", 2, "input"),
    ("import judged", "{judged_dup} --items {cts_items} --out {out}", 2, "judged_dup.csv:4:"),
    ("import judged", "{judged_blank} --items {cts_items} --out {out}", 2, "judged_blank.csv:3: column 'm3d-lamed'"),
    ("import judged", "{judged_text} --items {cts_items} --out {out}", 2, "judged_text.csv:3: column 'radfm'"),
    ("import judged", "{judged} --items {cts_items} --out {out} --threshold 2", 2, "--threshold"),
    ("import judged", "{judged} --items {cts_items} --out {out} --threshold 0", 2, "--threshold"),
    ("import judged", "{judged} --items {cts_items} --out {out} --threshold -0.5", 2, "--threshold"),
    ("import judged", "{judged_header_only} --out {out}", 2, "no rows"),
    ("import judged", "{judged} --model Nobody --out {out}", 2, "nobody"),
    # baseline fit / eval
    ("baseline fit", "--items {items} --kind majority --out {items}", 2, "input"),
    ("baseline fit", "--items {items} --kind majority --out {out} --min-count 0", 2, "--min-count"),
    ("baseline fit", "--items {items} --kind nonsense --out {out}", 2, "nonsense"),
    ("baseline fit", "--items {items_latin1} --kind majority --out {out}", 2, "latin1.jsonl:3: not utf-8"),
    ("baseline fit", "--items {empty} --kind majority --out {out}", 2, "no items"),
    ("baseline eval", "--baseline {baseline} --items {items} --out {items}", 2, "input"),
    ("baseline eval", "--baseline {baseline} --items {items} --out {baseline}", 2, "input"),
    ("baseline eval", "--baseline {baseline_broken} --items {items} --out {out}", 2, "baseline"),
    ("baseline eval", "--baseline {baseline} --items {items_chance7} --out {out}", 2, "chance"),
    # score
    ("score", "{records} --out {records}", 2, "input"),
    ("score", "{records} --out {run}/summary.json", 2, "run folder"),
    ("score", "{records} --out {run}/manifest.json", 2, "run folder"),
    ("score", "{records} {records}", 2, "twice"),
    ("score", "{records} {records_copy}", 2, "more than once"),
    ("score", "{empty}", 2, "no records"),
    ("score", "{records_latin1}", 2, "records_latin1.jsonl:4: not utf-8"),
    ("score", "{records_badgz}", 2, "crc"),
    ("score", "{records_chance7}", 2, "chance"),
    # report
    ("report", "{run} --out {run}", 2, "input"),
    ("report", "{records} --out {run}", 2, "run folder"),
    ("report", "{run} --out {out} --alpha 2", 2, "--alpha"),
    ("report", "{run} --out {out} --alpha 0", 2, "--alpha"),
    ("report", "{run} --out {out} --n-perm -5", 2, "--n-perm"),
    ("report", "{run} --out {out} --n-perm 0", 2, "--n-perm"),
    ("report", "{empty} --out {out}", 2, "no records"),
    ("report", "{run} {run} --out {out}", 2, "twice"),
    ("report", "{records_latin1} --out {out}", 2, "records_latin1.jsonl:4: not utf-8"),
    ("report", "{records_chance7} --out {out}", 2, "chance"),
    ("report", "{root}/nope --out {out}", 2, "does not exist"),
    ("report", "{run} --out {out} --browser-items -1", 2, "--browser-items"),
    ("report", "{run} --out {out} --items {root}/nope.jsonl", 2, "does not exist"),
    ("report", "{run} --out {out} --masks {a_file}", 2, "is a file"),
    ("report", "{run} --out {out} --figure-width wide", 2, "--figure-width"),
    # figure
    ("figure", "no/such/item --runs {run} --out {out}.pdf", 2, "is in no record"),
    ("figure", "x --runs {run} --out {records}", 2, "run folder"),
    ("figure", "x --runs {run} --out {out}.png", 2, "give a .pdf path"),
    ("figure", "x --runs {root}/nope --out {out}.pdf", 2, "does not exist"),
    ("figure", "x --runs {run} --out {out}.pdf --width wide", 2, "--width"),
    # merge
    ("merge", "{run} --out {run}", 2, "input"),
    ("merge", "{run_clobbered} --out {out}", 2, "not a run manifest"),
    ("merge", "{run_chance_half} --out {out}", 2, "chance"),
    ("merge", "{root}/nope --out {out}", 2, "not found"),
    # doctor (a folder with problems is a report, exit 1; these are bad input)
    ("doctor", "nope", 2, "unknown model 'nope'"),
    ("doctor", "m3d --model-option nonsense=1", 2, "nonsense"),
    ("doctor", "m3d --model-option broken", 2, "key=value"),
    # run
    ("run", "--model random --items {items_options_str} --control full --out {out}", 2, "options"),
    ("run", "--model random --items {items_chance7} --control full --out {out}", 2, "chance"),
    ("run", "--model random --items {items_chance_half} --control full --out {out}", 2, "chance"),
    ("run", "--model random --items {items_int_id} --control full --out {out}", 2, "id"),
    ("run", "--model random --items {items_empty_id} --control full --out {out}", 2, "id"),
    ("run", "--model random --items {items_bad_answer} --control full --out {out}", 2, "not one of"),
    ("run", "--model random --items {items_latin1} --control full --out {out}", 2, "latin1.jsonl:3: not utf-8"),
    ("run", "--model random --items {items_badgz} --control full --out {out}", 2, "gzip"),
    ("run", "--model random --items {empty} --control full --out {out}", 2, "no items"),
    ("run", "--model random --items {items_two_volumes} --control full --out {out}", 2, "phantom_s0_001"),
    ("run", "--model random --items {items} --control full --out {items}", 2, "is a file"),
    ("run", "--model random --items {records} --control full --out {run}", 2, "input"),
    ("run", "--model random --items {items} --control full --out {out} --batch-size 0", 2, "--batch-size"),
    ("run", "--model random --items {items} --control full --out {out} --limit -1", 2, "--limit"),
    ("run", "--model random --items {items} --control full --out {out} --shard 5/2", 2, "shard"),
    ("run", "--model random --items {items} --control nonsense --out {out}", 2, "nonsense"),
    ("run", "--model nonsense --items {items} --control full --out {out}", 2, "nonsense"),
    # power
    ("power", "--items 100 --discordance 0.2 --alpha -1", 2, "--alpha"),
    ("power", "--items 100 --discordance 0.2 --alpha 1", 2, "--alpha"),
    ("power", "--items 1e11 --discordance 0.2", 2, "--items"),
    ("power", "--items 100000000000 --discordance 0.2", 2, "--items"),
    ("power", "--items 0 --discordance 0.2", 2, "--items"),
    ("power", "--items 100 --discordance 2", 2, "--discordance"),
    ("power", "--items 100 --discordance 0.2 --patients 10", 2, "--icc"),
    ("power", "--items 100 --discordance 0.2 --icc 0.1", 2, "--patients"),
    ("power", "--items 100 --discordance 0.2 --patients 200 --icc 0.1", 2, "exceeds"),
    ("power", "--items 100 --discordance 0.2 --patients 10 --icc 1.5", 2, "--icc"),
    ("power", "--items 100 --discordance 0.2 --patients 1 --icc 0.1", 2, "--patients"),
    ("power", "--discordance 0.2", 2, "--items"),
    ("power", "--items 100 --discordance 0.2 --control text_only", 2, "--pilot"),
    ("power", "--pilot {run}", 2, "--control"),
    ("power", "--pilot {run} --control nonsense", 2, "nonsense"),
    ("power", "--pilot {run} --control text_only --model nonsense", 2, "nonsense"),
    ("power", "--pilot {records_badgz} --control text_only", 2, "gzip"),
    ("power", "--pilot {empty} --control text_only", 2, "no records"),
    # demo
    ("demo", "--out {out} --n-cases 1", 2, "--n-cases"),
    ("demo", "--out {a_file}", 2, "is a file"),
]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return make_workspace(tmp_path_factory.mktemp("ws"))


def _ids():
    seen: dict[str, int] = {}
    out = []
    for command, _args, _code, _phrase in CASES:
        seen[command] = seen.get(command, 0) + 1
        out.append(f"{command.replace(' ', '-')}-{seen[command]}")
    return out


@pytest.mark.parametrize("command, args, code, phrase", CASES, ids=_ids())
def test_bad_input_gets_one_error_line_and_leaves_inputs_alone(workspace, tmp_path, command, args, code, phrase):
    before = tree_hashes(workspace["root"])
    values = {k: str(v) for k, v in workspace.items()} | {"out": str(tmp_path / "out")}
    argv = command.split() + [a.format(**values) for a in args.split()]
    result = invoke(*argv)
    assert_one_error_line(result, code, phrase)
    assert tree_hashes(workspace["root"]) == before


def test_every_command_has_rows():
    from volprobe.cli import main

    commands = set()
    for name, cmd in main.commands.items():
        sub = getattr(cmd, "commands", None)
        commands |= {f"{name} {s}" for s in sub} if sub else {name}
    no_input = {"controls", "models"}  # they read nothing and take no options
    assert commands - no_input <= {c for c, *_ in CASES}, sorted(commands - no_input - {c for c, *_ in CASES})
