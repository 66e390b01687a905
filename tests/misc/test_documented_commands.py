"""Every command README.md and docs/*.md show runs as written (issue 12), the fast half: each is parsed by what
would run it (tests/misc/doc_commands.py says how). A command that is neither checked nor in SKIP, with its
reason, fails `test_every_documented_command_is_checked_or_skipped_with_a_reason`: a new command in the docs needs
a check or a line here. The slow half (tests/misc/test_documented_recipes.py) runs the demo-facing recipes tiny."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest

from tests.misc.doc_commands import (Makefile, argv_of, check_documented_layer, collect, compose_jobs, hydra_call,
                                     kind, parse_with_cli, recorded_recipe)

COMMANDS = collect()

# Sections whose commands another test owns.
SKIP_SECTIONS = {
    # its walk-through (DICOM folder -> build -> init -> every stage on the written study) is run by the
    # README-walk-through helper's test on a real CT; the section is being rewritten there
    ("README.md", "Your own data"): "README 'Your own data' walk-through: run by its own test (tests/data/build/)",
}
# Commands no check here can run, each with why. Keyed by the command as written (whitespace collapsed).
SKIP = {
    "python -m pytest tests/evaluate -q": "runs the test suite itself",
    "python -m tests.data.test_bad_inputs": "prints docs/validate.md's table from the bad-input test cases; that "
                                            "test (tests/data/test_bad_inputs.py) checks every row",
    "python bench/train_throughput.py": "a benchmark (minutes); bench/RESULTS.md records its command and figures",
    "python train.py -m a=1,2 b=x,y": "illustrates Hydra's sweep syntax with placeholder keys, not a command",
    "mkdir -p weights": "plain shell: makes the weights folder",
    "ln -s /models/resnet50-0676ba61.pth weights/imagenet_resnet50.pth": "plain shell: links the user's download",
    "ln -s /models/RadImageNet-ResNet50.pt weights/radimagenet_resnet50.pt": "plain shell: links the user's download",
}
# The study targets whose recipes are run with a recording python and composed (test below).
STUDY_TARGETS = ("demo", "liu2025", "wang2025")


def _skip_reason(command) -> str | None:
    return SKIP_SECTIONS.get((command.page, command.section)) or SKIP.get(command.text)


CHECKED = [c for c in COMMANDS if _skip_reason(c) is None]


@pytest.fixture(scope="module")
def study_dirs(tmp_path_factory) -> dict[str, Path]:
    """`--config-dir my_study`: the template study `python -m radfuse.init my_study --classes 0 1` writes."""
    from radfuse.init import main as init_main

    folder = tmp_path_factory.mktemp("study") / "my_study"
    with contextlib.redirect_stdout(io.StringIO()):
        assert init_main([str(folder), "--classes", "0", "1"]) == 0
    return {"my_study": folder}


def test_the_docs_have_commands_of_every_kind():
    kinds = {kind(argv_of(c))[0] for c in CHECKED}
    assert kinds == {"hydra", "study-preflight", "argparse", "make", "python-c"}, kinds
    pages = {c.page for c in CHECKED}
    assert {"README.md", "docs/train.md", "docs/extract.md", "docs/fuse.md", "docs/papers.md"} <= pages
    texts = {c.text for c in COMMANDS}
    # the commands the issue found broken are among those checked
    assert "python fuse.py final=scale" in texts
    assert any("extract.deep.layer=stage3" in t and "wang2025" in t for t in texts)
    assert any("+block@blocks.deep_imagenet=" in t for t in texts)


def test_every_documented_command_is_checked_or_skipped_with_a_reason():
    unknown = [f"{c.id}: {c.text}" for c in CHECKED if kind(argv_of(c)) is None]
    assert not unknown, ("documented commands that no check runs: add a check (tests/misc/doc_commands.py) or a "
                         "SKIP entry with the reason:\n" + "\n".join(unknown))


def test_every_skip_entry_still_names_a_documented_command():
    texts = {c.text for c in COMMANDS}
    sections = {(c.page, c.section) for c in COMMANDS}
    assert not set(SKIP) - texts, f"stale SKIP entries: {sorted(set(SKIP) - texts)}"
    assert not set(SKIP_SECTIONS) - sections, f"stale SKIP_SECTIONS entries: {sorted(set(SKIP_SECTIONS) - sections)}"


@pytest.mark.parametrize("command", CHECKED, ids=[c.id for c in CHECKED])
def test_documented_command_parses_as_written(command, study_dirs):
    what, target, args = kind(argv_of(command))
    if what == "hydra":
        configs = compose_jobs(hydra_call(target, args, study_dirs))
        assert configs
        check_documented_layer(target, args, configs)
        call = hydra_call(target, args, study_dirs)
        if call.multirun and any("," in o.partition("=")[2] and "[" not in o for o in call.overrides):
            assert len(configs) > 1, "a sweep that expands to one job"
    elif what == "study-preflight":  # `python -m radfuse.data.validate --config-dir STUDY experiment=study ...`
        from radfuse.stages.preflight import compose_study

        call = hydra_call("validate", args, {**study_dirs, "STUDY_DIR": study_dirs["my_study"]})
        assert compose_study(call.overrides, call.config_dirs)
    elif what == "argparse":
        if not args or (target == "radfuse.score:cli" and len(args) == 1):
            # the prose names the CLI (`python -m radfuse.predict`, `radfuse score`): it exists and takes arguments
            with pytest.raises(ValueError, match="exit 2"):
                parse_with_cli(target, args[:1])
        else:
            parse_with_cli(target, args)
    elif what == "make":
        makefile = Makefile.read()
        assert makefile.check_command(args)
    else:
        with contextlib.redirect_stdout(io.StringIO()) as out:
            exec(compile(target, command.id, "exec"), {})
        assert out.getvalue().strip()


def test_a_misspelt_key_a_missing_group_and_a_bad_option_fail_the_check(study_dirs):
    """The check is able to fail: each fault the issue lists makes compose_jobs or the CLI parser raise."""
    for args in (["extract.deep.layr=stage3"], ["+blocks@blocks.deep_imagenet=deep_scores"], ["final=sclae"],
                 ["experiment=wang2052"]):
        with pytest.raises(Exception):
            compose_jobs(hydra_call("fuse", args, study_dirs))
    with pytest.raises(Exception, match="same file|one model.weights"):  # one weights file for two backbones
        compose_jobs(hydra_call("train", ["-m", "backbone=imagenet,radimagenet", "model.weights=/m.pth"]))
    wang_layer3 = ["experiment=wang2025", "extract.deep.layer=layer3"]  # the KeyError, now refused by name
    with pytest.raises(Exception, match="not a layer of this backbone"):
        check_documented_layer("extract", wang_layer3, compose_jobs(hydra_call("extract", wang_layer3)))
    with pytest.raises(ValueError, match="exit 2"):
        parse_with_cli("radfuse.data.demo", ["out", "--task", "astlofx"])
    from radfuse.stages.preflight import compose_study

    with pytest.raises(Exception):  # the study pre-flight's overrides are checked like a stage's
        compose_study(["experiment=study", "blocks.rad.lasoo=null"], [study_dirs["my_study"]])
    with pytest.raises(ValueError, match="no variable"):
        Makefile.read().check_command(["wang2025", "WANG_MARGIN=0"])


def test_the_documented_layers_are_checked_against_their_studys_cnn(study_dirs):
    checked = []
    for command in CHECKED:
        what, stage, args = kind(argv_of(command))
        if what == "hydra" and stage == "extract":
            checked.append(check_documented_layer(stage, args, compose_jobs(hydra_call(stage, args, study_dirs))))
    assert {"stage3", "layer3", "layer3.1.conv2"} <= set(checked)


def test_a_sweep_expands_to_its_jobs_with_the_presets_sweeper_params():
    margins = [cfg.data.margin for cfg in compose_jobs(hydra_call("train", ["-m", "experiment=wang2025",
                                                                            "run=m${data.margin}"]))]
    assert margins == [0, 2, 4, 6, 8, 10]
    jobs = compose_jobs(hydra_call("train", ["-m", "backbone=imagenet,scratch", "data.margin=0,6"]))
    assert sorted((c.backbone.name, c.data.margin) for c in jobs) == [("imagenet", 0), ("imagenet", 6),
                                                                      ("scratch", 0), ("scratch", 6)]


@pytest.mark.parametrize(("target", "weights"), [("demo", False), ("liu2025", False), ("liu2025", True),
                                                 ("wang2025", False)])
def test_the_study_targets_recipes_compose(tmp_path, target, weights):
    """Each `$(BIN)/python` line of the recipe (loops and branches run by /bin/sh, a recording python), composed:
    liu2025 with and without both weights files (its two branches)."""
    weights_dir = tmp_path / "weights"
    weights_dir.mkdir()
    if weights:
        (weights_dir / "radimagenet_resnet50.pt").write_bytes(b"")
        (weights_dir / "imagenet_resnet50.pth").write_bytes(b"")
    recorded = recorded_recipe(target, {"RADFUSE_WEIGHTS_DIR": str(weights_dir)}, tmp_path)
    stages = []
    for argv in recorded:
        what, stage, args = kind(["python", *argv])
        assert what == "hydra", argv
        configs = compose_jobs(hydra_call(stage, args))
        stages.append(stage)
        if stage == "fuse":
            assert configs[0].report.enabled
            fuse = configs[0]
    assert stages[0] == "prepare" and stages[-1] == "fuse" and {"train", "extract"} <= set(stages)
    if target == "liu2025":
        assert ("deep_imagenet" in fuse.feature_sets) == weights
    if target == "wang2025":
        margins = Makefile.read().variables["WANG_MARGINS"].split()
        assert sorted(fuse.feature_sets) == sorted(["rad", *[f"margin_{m}" for m in margins]])
