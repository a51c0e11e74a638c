"""The guide is a how-to, not a lab log: no typed results, commands that exist, paths that exist, links that resolve.

Results are computed from published data by code (the papers, the posters, the README's generated blocks);
``docs/guide.md`` points to them and types none. Speed figures live in ``docs/benchmarks.md``, history in
``docs/history.md``. Fast: reads text and parses ``pruning/__main__.py``; trains nothing.
"""
from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
GUIDE = DOCS / "guide.md"
LINKED = (GUIDE, DOCS / "benchmarks.md")

# Percentages the guide may name: settings, not results. Each is a config value or a rule constant.
ALLOWED_PERCENT = {
    "20%",  # prune_fraction: 0.2 in configs/*.yaml (the protocol's pruning step)
    "95%",  # the verdict rule's t-interval, pruning/analysis/verdicts.py (RULE)
}

TYPED = [
    (re.compile(r"±"), "a ± (a measured spread)"),
    (re.compile(r"(?<![\w.])\d[\d,]*(?:\.\d+)?\s?%"), "a percentage"),
    (re.compile(r"(?<![\w.])\d[\d,]*\.\d+\s+points?\b"), "a decimal number of points"),
    (re.compile(r"(?<![\w.])\d[\d,]*(?:\.\d+)?x\b"), "a speed ratio"),
    (re.compile(r"(?<![\w.])\d[\d,]*(?:\.\d+)?\s?(?:s|ms|min|minutes|hours?|core-hours|MB|GB)\b"),
     "a wall time or a size"),
    (re.compile(r"\b20\d\d-\d\d-\d\d\b"), "a date (history belongs in docs/history.md)"),
]


def prose_lines(text: str):
    """(line number, line) of every line outside fenced code blocks."""
    fenced = False
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            yield number, line


def typed_results(text: str) -> list[tuple[int, str, str]]:
    """(line number, what, line) of each typed result in ``text``'s prose: a ±, a percentage that is not a
    documented setting, a decimal number of points, a speed ratio, a wall time or size, a date."""
    found = []
    for number, line in prose_lines(text):
        for pattern, what in TYPED:
            for match in pattern.finditer(line):
                if what == "a percentage" and match.group(0).replace(" ", "") in ALLOWED_PERCENT:
                    continue
                found.append((number, f"{what}: {match.group(0)!r}", line.strip()))
    return found


def report(found) -> str:
    return "\n".join(f"  line {n}: {what}\n    {line}" for n, what, line in found)


def test_checker_catches_typed_results():
    bad = ("At iteration 18 a rerun's masks are 0.725 ± 0.170 apart, 78% as far as a new seed.\n"
           "The gap is 1.8 points; the sparse step is 2.46x the dense one and took 224.4 s on 2026-12-03.\n")
    whats = {what.split(":")[0] for _, what, _ in typed_results(bad)}
    assert whats == {"a ± (a measured spread)", "a percentage", "a decimal number of points", "a speed ratio",
                     "a wall time or a size", "a date (history belongs in docs/history.md)"}, whats


def test_checker_passes_settings_and_code():
    good = ("Prune 20% per step; the verdict uses a 95% t-interval over seeds 0-4, with a 2 points margin.\n"
            "Conv blocks are 3x3 and pooling is 2x2.\n"
            "```\nprint('98.2% at 1.5 points, 2.46x, 12 s')\n```\n")
    assert typed_results(good) == [], report(typed_results(good))


def test_guide_types_no_results():
    found = typed_results(GUIDE.read_text(encoding="utf-8"))
    assert not found, ("docs/guide.md types measured results; point to the published paper/poster or the README "
                       "instead, or move history to docs/history.md:\n" + report(found))


# ----------------------------------------------------------------------------- commands

def subcommands() -> set[str]:
    """The subcommands ``pruning/__main__.py`` defines: the first argument of every ``*.add_parser(...)`` call."""
    tree = ast.parse((REPO / "pruning" / "__main__.py").read_text(encoding="utf-8"))
    return {node.args[0].value for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "add_parser"
            and node.args and isinstance(node.args[0], ast.Constant)}


def make_targets() -> set[str]:
    text = (REPO / "Makefile").read_text(encoding="utf-8")
    return set(re.findall(r"^([A-Za-z][\w-]*):", text, flags=re.M))


def test_subcommands_are_parsed():
    assert {"run", "publish", "table", "notebooks", "report", "readme", "all", "fetch"} <= subcommands()


def test_guide_commands_exist():
    text = GUIDE.read_text(encoding="utf-8")
    known, targets = subcommands(), make_targets()
    venv_bin = Path(sys.executable).parent  # the tests run from .venv/bin/python (make test)
    problems = []
    for number, line in enumerate(text.splitlines(), 1):
        for command in re.findall(r"python -m pruning\s+([a-z][\w-]*)", line):
            if command not in known:
                problems.append(f"line {number}: `python -m pruning {command}`: no such subcommand "
                                f"(known: {', '.join(sorted(known))})")
        for tool in re.findall(r"\.venv/bin/([\w.-]+)", line):
            if not (venv_bin / tool).exists() and not (REPO / ".venv" / "bin" / tool).exists():
                problems.append(f"line {number}: `.venv/bin/{tool}`: not installed in {venv_bin}")
        for target in re.findall(r"(?<![\w-])make\s+([a-z][\w-]*)(?![\w=])", line):
            if target not in targets:
                problems.append(f"line {number}: `make {target}`: no such Makefile target")
    assert not problems, "docs/guide.md names commands that do not exist:\n" + "\n".join(problems)


# ----------------------------------------------------------------------------- paths and links

TOP_LEVEL = {p.name for p in REPO.iterdir()} | {"results", "build", "data", ".venv"}
# Generated or git-ignored places: named in the guide, absent from a fresh clone.
GENERATED = ("results/", "build/", ".venv/", "data/raw/")


def repository_paths(text: str) -> list[tuple[int, str]]:
    """(line number, path) of each backticked repository path in ``text``'s prose: one word whose first part is a
    top-level entry of the repository. Placeholders (``<name>``, ``NAME``), globs and generated places are skipped."""
    out = []
    for number, line in prose_lines(text):
        for span in re.findall(r"`([^`\s]+)`", line):
            path = span.split("#")[0].rstrip(",.;:")
            first = path.split("/")[0]
            if "/" not in path or first not in TOP_LEVEL:
                continue
            if any(c in path for c in "<>*?{}") or re.search(r"\b[A-Z]{3,}\b", path) or path.startswith(GENERATED):
                continue
            out.append((number, path))
    return out


def code_paths(text: str) -> list[tuple[int, str]]:
    """(line number, path) of each repository path that a command in a fenced code block names, by the same rules."""
    out, fenced = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if fenced:
            code = line.split(" #")[0]  # not the comment
            out += [(number, p) for _, p in repository_paths("".join(f"`{w}` " for w in code.split()))]
    return out


def test_repository_paths_detects():
    found = [p for _, p in repository_paths("See `pruning/analysis/verdicts.py`, `docs/<name>/data/`, "
                                             "`results/smoke`, `configs/*.yaml`, `kill -9` and `store.weights`.")]
    assert found == ["pruning/analysis/verdicts.py"], found
    code = "```bash\n.venv/bin/python -m pruning run configs/smoke.yaml --results results/x  # docs/no.md\n```\n"
    assert [p for _, p in code_paths(code)] == ["configs/smoke.yaml"]


def test_guide_paths_exist():
    text = GUIDE.read_text(encoding="utf-8")
    missing = [f"line {n}: `{p}`" for n, p in repository_paths(text) + code_paths(text) if not (REPO / p).exists()]
    assert not missing, "docs/guide.md names paths that do not exist:\n" + "\n".join(missing)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    return {slug(m) for _, line in prose_lines(path.read_text(encoding="utf-8"))
            for m in re.findall(r"^#{1,6}\s+(.*)$", line)}


def test_slug():
    assert slug("Why our iteration-18 row differs from the poster's") == \
        "why-our-iteration-18-row-differs-from-the-posters"
    assert slug("From the benchmarks (moved)") == "from-the-benchmarks-moved"


def test_relative_links_resolve():
    problems = []
    for doc in LINKED:
        for number, line in prose_lines(doc.read_text(encoding="utf-8")):
            for target in re.findall(r"\]\(([^)\s]+)\)", line):
                if re.match(r"[a-z]+:", target):
                    continue  # http:, https:, mailto:
                file, _, anchor = target.partition("#")
                resolved = (doc.parent / file).resolve() if file else doc
                if not resolved.exists():
                    problems.append(f"{doc.name} line {number}: {target}: no such file")
                elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
                    problems.append(f"{doc.name} line {number}: {target}: no such heading")
    assert not problems, "broken links:\n" + "\n".join(problems)


def test_every_relative_link_of_the_markdown_docs_reaches_a_file():
    """A link in README.md or docs/*.md (anchor aside) names a file or folder that exists, relative to its page."""
    pages = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    broken = []
    for page in pages:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            path = (page.parent / target.split("#", 1)[0]).resolve()
            if not path.exists():
                broken.append(f"{page.relative_to(REPO)} -> {target}")
    assert not broken, broken
