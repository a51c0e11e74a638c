"""The offline renderer: the subset of Quarto that the report uses, rendered by pandoc 3 (pypandoc-binary).

Where Quarto is not installed (here, in CI), :func:`render_pandoc` turns each staged ``.qmd`` into
pandoc markdown and lets pandoc write self-contained HTML with the same CSS and the images inline.
The subset of Quarto it supports, and nothing more:

- YAML front matter; of ``format.html``: ``css``, ``toc``, ``toc-depth``, ``number-sections``;
- shortcodes ``{{< var name >}}`` (from the staged ``_variables.yml`` values), ``{{< meta key >}}``
  and ``{{< embed notebooks/x.ipynb#label >}}`` (the stored output of the executed notebook's
  labelled cell: a PNG/JPEG/SVG figure, or an HTML/markdown table, with its ``fig-cap``/``tbl-cap``);
  other shortcodes (``pagebreak``, ``video``, ...) are dropped;
- figures ``![cap](img){#fig-x}`` and table captions ``: cap {#tbl-x}`` written in the text;
  figures and tables are numbered in order of appearance, and cross references ``@fig-x``,
  ``[@tbl-x]``, ``-@fig-x`` become "Figure N" / "N" links;
- callouts ``::: {.callout-note title="T"}`` become a div with classes ``callout callout-note`` and
  a bold title line;
- fenced divs and bracketed spans with classes (pandoc markdown itself).

Anything else Quarto offers (execution, layouts ``layout-ncol``, tabsets, citations from a .bib,
theorem environments, ...) is not supported: the report's sources do not use it.
"""
from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from .embeds import EMBED, IMAGE_MIMES, caption as _cell_caption, cell_data, data_file
from ..core.errors import ReportError

FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*\n", re.S)
SHORTCODE = re.compile(r"\{\{<\s*([\w-]+)\s*(.*?)\s*>\}\}")
LABEL_SITE = re.compile(r"\{\{<\s*embed\s+[^\s#>]+#((?:fig|tbl)-[\w-]+)[^>]*>\}\}|\{#((?:fig|tbl)-[\w-]+)[^}]*\}")
XREF = re.compile(r"\[(-?)@((?:fig|tbl)-[\w-]*\w)\]|(?<![\w@.\-])(-?)@((?:fig|tbl)-[\w-]*\w)")
CALLOUT = re.compile(r"^(:{3,})[ \t]*\{([^}\n]*\.callout-(\w+)[^}\n]*)\}[ \t]*$", re.M)
KIND = {"fig": "Figure", "tbl": "Table"}


def _front_matter(text: str) -> tuple[dict, str, str]:
    """(parsed front matter, its raw text with fences, the body)."""
    m = FRONT_MATTER.match(text)
    if not m:
        return {}, "", text
    return (yaml.safe_load(m.group(1)) or {}), m.group(0), text[m.end():]


def _meta(meta: dict, key: str):
    value = meta
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def number_labels(body: str) -> dict[str, int]:
    """{label: number}: figures and tables (embedded or written in the text) numbered in order of appearance."""
    numbers, counts = {}, {"fig": 0, "tbl": 0}
    for m in LABEL_SITE.finditer(body):
        label = m.group(1) or m.group(2)
        if label not in numbers:
            kind = label.split("-", 1)[0]
            counts[kind] += 1
            numbers[label] = counts[kind]
    return numbers


def _caption_md(text: str) -> str:
    """A caption for inside ``![...]``: one line, brackets escaped."""
    return re.sub(r"([\[\]])", r"\\\1", " ".join(str(text).split()))


def _embed_block(label: str, number: int, cell: dict, output: tuple[str, str], assets: Path) -> str:
    """Markdown for one embedded output: a numbered figure with its caption, or a numbered table."""
    mime, data = output
    kind = KIND[label.split("-", 1)[0]]
    caption = _cell_caption(cell, "fig" if kind == "Figure" else "tbl")
    title = f"{kind} {number}" + (f": {caption}" if caption else "")
    if mime in IMAGE_MIMES:
        ext = {"image/png": "png", "image/jpeg": "jpg", "image/svg+xml": "svg"}[mime]
        path = assets / f"{label}.{ext}"
        path.write_bytes(data.encode() if ext == "svg" else base64.b64decode(data))
        data = f" [The plotted numbers (CSV)]({data_file(label)})" if kind == "Figure" and cell_data(cell) else ""
        image = f"![{_caption_md(title)}{data}]({assets.name}/{path.name})"
        if kind == "Figure":
            return f"\n\n{image}{{#{label}}}\n\n"
        return f"\n\n::: {{#{label} .table-float}}\n\n::: {{.table-caption}}\n{title}\n:::\n\n{image}\n\n:::\n\n"
    if mime == "text/markdown":
        return f"\n\n::: {{#{label} .table-float}}\n\n{data}\n\n: {title}\n\n:::\n\n"
    fence = "`" * max(3, max((len(s) for s in re.findall(r"`+", data)), default=0) + 1)
    return (f"\n\n::: {{#{label} .table-float}}\n\n::: {{.table-caption}}\n{title}\n:::\n\n"
            f"{fence}{{=html}}\n{data.strip()}\n{fence}\n\n:::\n\n")


def _callout(m: re.Match) -> str:
    """``::: {.callout-note title="T"}`` -> a plain div with classes callout, callout-note and a bold title line."""
    fence, attrs, kind = m.group(1), m.group(2), m.group(3)
    title = re.search(r'title="([^"]*)"', attrs)
    attrs = re.sub(r'\s*title="[^"]*"', "", attrs)
    heading = title.group(1) if title else kind.capitalize()
    return f"{fence} {{.callout {attrs.strip()}}}\n**{heading}**\n"  # the title: its own paragraph


def preprocess(text: str, values: dict, resolved: dict, assets: Path, name: str = "document") -> tuple[dict, str]:
    """Turn a .qmd into pandoc markdown: (front matter, markdown).

    ``values``: the variables; ``resolved``: :func:`check_embeds`'s {(nb, label): (cell, output)};
    ``assets``: folder for the embedded images. Raises ReportError for an unknown variable or reference.
    """
    meta, raw_front, body = _front_matter(text)
    body = re.sub(r"<!--.*?-->", "", body, flags=re.S)  # comments may mention shortcodes
    numbers = number_labels(body)

    def var(m: re.Match) -> str:
        kind, arg = m.group(1), m.group(2).strip()
        if kind == "var":
            if arg not in values:
                raise ReportError(f"{name} uses variable '{arg}', which pruning/report.py does not compute")
            return str(values[arg])
        if kind == "meta":
            value = _meta(meta, arg)
            return "" if value is None else str(value)
        if kind == "embed":
            return m.group(0)  # handled below
        return ""  # other Quarto shortcodes (pagebreak, video, ...) have no offline equivalent: dropped

    # a value that starts a line could start a list or heading ("2) ...", "+ ..."): continue the line before it,
    # as Quarto, which substitutes into parsed text, would
    # (not after a hard line break: a backslash or two spaces)
    body = re.sub(r"(?<=[^\s\\])[ \t]?\n[ \t]*(?=\{\{<\s*(?:var|meta)\b)", " ", body)
    body = SHORTCODE.sub(var, body)

    # figures and tables written in the text: ![cap](img){#fig-x} and a table caption ": cap {#tbl-x}"
    body = re.sub(r"!\[(.*?)\]\(([^)\s]+)\)\{#(fig-[\w-]+)([^}]*)\}",
                  lambda m: f"![Figure {numbers[m.group(3)]}: {m.group(1)}]({m.group(2)}){{#{m.group(3)}{m.group(4)}}}",
                  body)
    body = re.sub(r"^(?:Table)?:[ \t]+(.*?)[ \t]*\{#(tbl-[\w-]+)[^}]*\}[ \t]*$",
                  lambda m: f": []{{#{m.group(2)}}}Table {numbers[m.group(2)]}: {m.group(1)}", body, flags=re.M)

    def embed(m: re.Match) -> str:
        nb, label = m.group(1), m.group(2)
        if (nb, label) not in resolved:
            raise ReportError(f"{name} embeds {nb}#{label}, which was not resolved")
        cell, output = resolved[nb, label]
        return _embed_block(label, numbers[label], cell, output, assets)

    body = EMBED.sub(embed, body)

    def xref(m: re.Match) -> str:
        bare = m.group(1) if m.group(2) else m.group(3)
        label = m.group(2) or m.group(4)
        if label not in numbers:
            raise ReportError(f"{name} refers to @{label}, but no figure or table has that label")
        text = str(numbers[label]) if bare else f"{KIND[label.split('-', 1)[0]]} {numbers[label]}"
        return f"[{text}](#{label})"

    body = XREF.sub(xref, body)
    body = CALLOUT.sub(_callout, body)
    return meta, raw_front + body


def pandoc_path() -> str:
    try:
        import pypandoc
    except ImportError:
        raise ReportError("the offline renderer needs pandoc: `pip install pypandoc-binary` "
                          "(it is in requirements.txt)") from None
    try:
        return pypandoc.get_pandoc_path()
    except OSError:
        raise ReportError("pypandoc finds no pandoc; `pip install --force-reinstall pypandoc-binary`") from None


def pandoc_version() -> str:
    try:
        out = subprocess.run([pandoc_path(), "--version"], capture_output=True, text=True, timeout=30).stdout
        return out.split("\n", 1)[0].strip() or "pandoc"
    except (OSError, subprocess.SubprocessError):
        return "pandoc"


def render_pandoc(staged: Path, values: dict, resolved: dict, documents, quiet: bool = False) -> None:
    """The offline renderer: preprocess each of ``documents`` in the staged folder, then pandoc -> self-contained HTML."""
    pandoc = pandoc_path()
    work = staged / "_offline"
    assets = work / "embeds"
    assets.mkdir(parents=True, exist_ok=True)
    for doc in documents:
        meta, markdown = preprocess((staged / doc).read_text(encoding="utf-8"), values, resolved, assets, doc)
        source = work / (Path(doc).stem + ".md")
        source.write_text(markdown, encoding="utf-8")
        options = _meta(meta, "format.html") or {}
        css = options.get("css") or []
        args = [pandoc, str(source.relative_to(staged)), "--from=markdown", "--to=html5", "--standalone",
                "--embed-resources", "--mathml", "--wrap=none", f"--resource-path=.{os.pathsep}{work.name}", "--variable=document-css",
                f"--output={Path(doc).stem}.html"]
        args += [f"--css={c}" for c in ([css] if isinstance(css, str) else css)]
        if options.get("toc"):
            args += ["--toc", f"--toc-depth={int(options.get('toc-depth', 3))}"]
        if options.get("number-sections"):
            args.append("--number-sections")
        proc = subprocess.run(args, cwd=staged, capture_output=True, text=True)
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["(no message)"])[-1]
            raise ReportError(f"pandoc could not render {doc} ({last}); see {source}")
        if not quiet:
            for line in proc.stderr.strip().splitlines():
                print(f"pandoc ({doc}): {line}", file=sys.stderr)


