"""What a user reads stays true: the README's test command is CI's, every command and
option the docs name exists, every file they name is in the repository, the CLI
reference is current, and the training starter runs as its file says."""

import re
import shlex
import subprocess
import sys
from pathlib import Path

import click
import pytest
import yaml
from click.testing import CliRunner

from rrsgan_geo.cli.main import main

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / "weights" / "README.md"]
FENCE = re.compile(r"```(?:bash)?\n(.*?)```", re.DOTALL)
REPO_PATH = re.compile(r"(?<![\w./-])((?:examples|docs|weights|benchmarks|tests)/[\w./-]*\w)")


def _shell_lines(text: str) -> list[str]:
    """The rrsgan-geo command lines in a document's bash blocks, continuations joined."""
    lines = []
    for block in FENCE.findall(text):
        joined = block.replace("\\\n", " ")
        for line in joined.splitlines():
            line = line.split(" # ")[0].strip()
            for part in line.split("&&"):
                if part.strip().startswith("rrsgan-geo "):
                    lines.append(part.strip())
    return lines


def _options(path: list[str]) -> set[str]:
    """The flags of `rrsgan-geo PATH` (its own params: asking Click for the help option
    outside a real invocation would cache one without -h on the command)."""
    command: click.Command = main
    for name in path:
        command = command.get_command(None, name)
    flags = {flag for param in command.params for flag in param.opts + param.secondary_opts}
    return flags | {"-h", "--help"}


def _command_path(words: list[str]) -> list[str]:
    path, command = [], main
    for word in words:
        if not isinstance(command, click.Group):
            break
        child = command.get_command(click.Context(command), word)
        if child is None:
            break
        path.append(word)
        command = child
    return path


def test_the_readme_test_command_is_what_ci_runs():
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert f"```bash\n{ci}\n```" in readme


@pytest.mark.parametrize("document", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_command_and_option_a_document_names_exists(document):
    lines = _shell_lines(document.read_text())
    for line in lines:
        words = shlex.split(line)[1:]
        path = _command_path(words)
        assert path, f"{document.name}: no such command in {line!r}"
        known = _options(path)
        for word in words[len(path) :]:
            flag = word.split("=")[0]
            if flag.startswith("-") and not re.fullmatch(r"-\d[\d.]*", flag):
                assert flag in known, f"{document.name}: {' '.join(path)} has no {flag}"


@pytest.mark.parametrize("document", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_file_a_document_names_is_in_the_repository(document):
    text = FENCE.sub("", document.read_text())  # examples name the user's own files
    missing = sorted(
        {
            name
            for name in REPO_PATH.findall(text)
            if not any(c in name for c in "*<>") and not (REPO / name).exists()
        }
    )
    assert not missing, f"{document.name} names files that do not exist: {missing}"


def test_the_cli_reference_is_current():
    result = subprocess.run(
        [sys.executable, str(REPO / "docs" / "make_cli_reference.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_training_recipes_load_and_name_their_data_as_their_comments_say():
    from rrsgan_geo.training.trainer import load_config

    recipes = sorted((REPO / "examples" / "train").glob("*.yaml"))
    assert {p.stem for p in recipes} == {
        "starter",
        "compact_stage1_cpu",
        "full_stage1_gpu",
        "stage2_gan_gpu",
    }
    for recipe in recipes:
        config = load_config(recipe)
        assert config.output_dir.parent == REPO / "runs"
        assert f"rrsgan-geo train examples/train/{recipe.name}" in recipe.read_text()
    assert load_config(REPO / "examples" / "train" / "stage2_gan_gpu.yaml").stage == 2


@pytest.mark.slow
def test_the_starter_runs_build_dataset_train_and_evaluate(tmp_path):
    """The commands at the top of examples/train/starter.yaml, on the bundled imagery,
    with the run and the pairs in a temporary folder and a short time limit."""
    starter = REPO / "examples" / "train" / "starter.yaml"
    commands = [
        shlex.split(line)
        for line in _shell_lines("```bash\n" + _comment_block(starter.read_text()) + "```")
    ]
    assert [c[1] for c in commands] == ["build-dataset", "train", "evaluate"]
    pairs, run = tmp_path / "starter_pairs", tmp_path / "run"
    build, train, evaluate = (c[1:] for c in commands)
    build[build.index("-o") + 1] = str(pairs)
    train += ["--data", str(pairs), "--output-dir", str(run), "--max-minutes", "0.05"]
    evaluate[1] = str(pairs)
    evaluate[evaluate.index("--weights") + 1] = str(run / "latest.safetensors")
    evaluate += ["--json", str(tmp_path / "scores.json")]
    runner = CliRunner()
    for args in (build, train, evaluate):
        result = runner.invoke(main, args, catch_exceptions=False)
        assert result.exit_code == 0, (args, result.output)
    scores = yaml.safe_load((tmp_path / "scores.json").read_text())
    assert scores["samples"] > 0 and scores["complete"]


def _comment_block(text: str) -> str:
    """The rrsgan-geo command lines in a YAML file's leading comment, with their
    continuation lines."""
    kept: list[str] = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        line = line[1:].strip()
        if line.startswith("rrsgan-geo") or (kept and kept[-1].endswith("\\")):
            kept.append(line)
    return "\n".join(kept) + "\n"


@pytest.fixture(scope="module")
def recipe_pairs(tmp_path_factory):
    """A build-dataset folder cut from the bundled imagery, samples of 256 HR px."""
    pairs = tmp_path_factory.mktemp("recipes") / "pairs"
    data = REPO / "examples" / "data"
    sources = [
        str(data / "sjer_reference_0.1m_epsg3857.tif"),
        str(data / "osbs_029_0.1m_utm17n.tif"),
    ]
    built = CliRunner().invoke(
        main,
        [
            "build-dataset",
            *sources,
            *(f"--ref={s}" for s in sources),
            "-o",
            str(pairs),
            "--hr-size",
            "256",
            "--block",
            "1",
            "--val-fraction",
            "0.5",
        ],
    )
    assert built.exit_code == 0, built.output
    return pairs


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["compact_stage1_cpu", "full_stage1_gpu", "stage2_gan_gpu"])
def test_each_recipe_trains_a_step_on_a_build_dataset_folder(recipe, recipe_pairs, tmp_path):
    """Each recipe as written (model, stage, losses, degradation, references), one step
    on pairs cut from the bundled imagery, on the CPU: its data and run folders
    replaced, as --data and --output-dir do; stage 2's VGG19 is a random stand-in and
    it starts from the shipped full weights instead of a stage-1 run."""
    pairs = recipe_pairs
    # In a process of its own: a full-size training step holds gigabytes, which this
    # process would keep (freed memory is kept for reuse) and pass on to every later
    # subprocess's peak.
    script = f"""
import dataclasses, sys
from pathlib import Path
import torch
from rrsgan_geo.training.trainer import Trainer, load_config
tmp = Path({str(tmp_path)!r})
config = load_config(Path({str(REPO)!r}) / "examples" / "train" / "{recipe}.yaml")
changes = dict(data=(Path({str(pairs)!r}),), output_dir=tmp / "run", steps=1, batch_size=1)
if config.stage == 2:
    import torchvision
    torch.save(torchvision.models.vgg19().state_dict(), tmp / "vgg19.pth")
    changes.update(vgg19_weights=tmp / "vgg19.pth",
                   init_weights=Path({str(REPO)!r}) / "weights" / "rrsgan_l1_full.safetensors")
logs = []
Trainer(dataclasses.replace(config, **changes), torch.device("cpu")).run(logs.append)
print("last step", logs[-1].step)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "last step 1" in result.stdout and (tmp_path / "run" / "latest.safetensors").is_file()
