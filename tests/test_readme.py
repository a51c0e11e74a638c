"""Every command in the README works as written, in a copy of the repository.

The long commands run on a tiny config of the same shape: the released code's profile
(`configs/authors_lenet_mnist.yaml`) cut to one seed, 2 pruning steps, 1 epoch on 1,920 images, published as
`docs/readme_tiny`; the set the README re-analyses (`docs/paper_lenet_mnist_cpu`) is that tiny set. Everything else
is run exactly as the README writes it.
"""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import yaml

from conftest import REPO

README = REPO / "README.md"
TINY = "readme_tiny"
SUBSTITUTE = {  # the README's long targets -> the tiny one (order matters: longest first)
    "configs/authors_lenet_mnist.yaml": f"configs/{TINY}.yaml",
    "results/authors_lenet_mnist": f"results/{TINY}",
    "docs/paper_lenet_mnist_cpu": f"docs/{TINY}",
    "-p iteration 12": "-p iteration 2",
    # `make setup` is the first step of the test command that runs this test; in the copy, which shares the
    # virtual environment, it would register the copy's Python as the environment's Jupyter kernel
    "make setup": "test -x .venv/bin/python",
}


def blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced code block of a markdown text."""
    return re.findall(r"^```(\w*)\n(.*?)^```", text, flags=re.S | re.M)


def commands(body: str) -> list[str]:
    """The command lines of a bash block, comments stripped."""
    out = []
    for line in body.splitlines():
        line = re.sub(r"\s+#.*$", "", line).strip()
        if line and not line.startswith("#"):
            out.append(line)
    return out


def substituted(line: str) -> str:
    for old, new in SUBSTITUTE.items():
        line = line.replace(old, new)
    return line


def test_the_readme_blocks_are_parsed_as_expected():
    """The parser the slow test relies on: a block's commands without comments, the two commands first."""
    found = blocks(README.read_text())
    assert found[0] == ("bash", found[0][1]) and commands(found[0][1]) == ["make", "make test"]
    assert commands("a   # one\n# only a comment\n\nb --x 1  # two\n") == ["a", "b --x 1"]
    assert substituted(".venv/bin/python -m pruning run configs/authors_lenet_mnist.yaml --seeds 0") == \
        f".venv/bin/python -m pruning run configs/{TINY}.yaml --seeds 0"
    assert (REPO / ".ci" / "run").read_text().strip().endswith("make test")


def _copy(dest):
    """The repository's files (tracked and untracked, not ignored) without the published sets' data, with the
    virtual environment, MNIST and the smoke results linked or copied in."""
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=REPO,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        parts = name.split("/")
        if parts[0] == "docs" and len(parts) > 2:  # docs/<set>/...: not needed, and `readme` would read them all
            continue
        src = REPO / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    (dest / ".venv").symlink_to(REPO / ".venv")
    (dest / "data" / "raw").parent.mkdir(parents=True, exist_ok=True)
    (dest / "data" / "raw").symlink_to(REPO / "data" / "raw")
    shutil.copytree(REPO / "results" / "smoke", dest / "results" / "smoke")
    cfg = yaml.safe_load((REPO / "configs" / "authors_lenet_mnist.yaml").read_text())
    cfg.update(name=TINY, seeds=[0], iterations=2, workers=1,
               description="the README test's tiny version of the released code's profile")
    cfg["training"]["epochs"] = 1
    cfg["data"]["train_subset"] = 1920
    (dest / "configs" / f"{TINY}.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))


@pytest.mark.slow  # trains and publishes a tiny set, and needs results/smoke, which the test command trains
def test_every_readme_command_runs_in_a_copy_of_the_repository(tmp_path):
    repo = tmp_path / "repo"
    _copy(repo)
    found = blocks(README.read_text())
    bash = [commands(body) for lang, body in found if lang == "bash"][1:]  # the first: `make` and `make test`
    run_block = next(b for b in bash if any(" run " in c for c in b))
    ordered = [run_block] + [b for b in bash if b is not run_block]  # train and publish before re-analysing
    for block in ordered:
        for line in block:
            cmd = substituted(line)
            done = subprocess.run(["bash", "-c", cmd], cwd=repo, capture_output=True, text=True, timeout=900)
            assert done.returncode == 0, f"README command failed: {line}\n(ran: {cmd})\n{done.stderr[-2000:]}"
    python = [body for lang, body in found if lang == "python"]
    assert python, "the README shows how to read the data in Python"
    for body in python:
        done = subprocess.run([str(repo / ".venv" / "bin" / "python"), "-c", substituted(body)], cwd=repo,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"README Python block failed:\n{body}\n{done.stderr[-2000:]}"
    assert (repo / "docs" / TINY / "paper.html").exists() and (repo / "out.ipynb").exists()  # papermill: cwd
    assert "<!-- findings:start -->" in (repo / "README.md").read_text()
