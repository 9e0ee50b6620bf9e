"""Renderers of comparison tables: Markdown, LaTeX, tidy frame and self-contained HTML."""

import base64
import math
import re
import shutil
import subprocess
from html.parser import HTMLParser

import pytest

from cutmix_eval.errors import UserError
from cutmix_eval.report.render import PNG_SIGNATURE, format_cell, html, latex, long_frame, markdown, metric_label
from cutmix_eval.report.table import HIGHER, LOWER, Cell, Row, Table

METHODS = ["baseline", "mixup", "cutout", "cutmix"]
ODD = "a_b & c%"  # a method label full of LaTeX specials


def make_tables() -> list[Table]:
    """Two tables: an ImageNet-like one with a clear best, a tie, a reference row and a
    note; a robustness one with seeds, a NaN, a missing cell and an oddly named method."""
    top1 = Row("top-1 error", {
        "baseline": Cell(23.68, 23.31, 24.05), "mixup": Cell(22.58, 22.2, 22.9),
        "cutout": Cell(22.93, 22.6, 23.3), "cutmix": Cell(21.40, 21.02, 21.77)}, better=LOWER)
    top5 = Row("top-5 error", {  # cutout and cutmix tie at one decimal
        "baseline": Cell(7.05), "mixup": Cell(6.40), "cutout": Cell(6.12), "cutmix": Cell(6.08)}, better=LOWER)
    paper = Row("top-1 error", {"baseline": Cell(23.68), "mixup": Cell(22.58), "cutout": Cell(22.93),
                                "cutmix": Cell(21.40)}, better=LOWER, reference=True, source="Yun et al. 2019, Table 3")
    imagenet = Table("imagenet", "ImageNet classification", METHODS, [top1, top5, paper],
                     note="Single crop, 224 px.")
    fgsm = Row("FGSM top-1 accuracy", {
        "baseline": Cell(8.2, 7.5, 8.9, std=0.3, seeds=3), "mixup": Cell(24.4, 23.2, 25.6, std=0.5, seeds=3),
        "cutout": Cell(11.5, 11.0, 12.0, std=0.2, seeds=3),  # seeds: the t-interval over them
        "cutmix": Cell(31.0, 30.0, 32.0, std=0.4, seeds=3), ODD: Cell(12.0, 11.0, 13.0)}, better=HIGHER)
    loc = Row("localization error", {
        "baseline": Cell(46.3), "mixup": Cell(math.nan), "cutout": Cell(46.7),
        "cutmix": Cell(45.5, 44.9, 46.1)}, better=LOWER)  # no cell for ODD
    ece = Row("ECE", {m: Cell(v) for m, v in zip(METHODS, [0.0512, 0.0301, 0.0455, -0.0102])}, digits=3, unit="")
    robust = Table("robust_loc", "Robustness & localization", [*METHODS, ODD], [fgsm, loc, ece],
                   note="Means over 3 seeds where ± is shown; 100% = all images.")
    return [imagenet, robust]


@pytest.fixture
def tables() -> list[Table]:
    return make_tables()


@pytest.fixture
def png(tmp_path):
    """A small PNG drawn with matplotlib (Agg)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(2, 1.5), dpi=50)
    fig.add_subplot().plot([0, 1, 2], [1, 0, 2])
    path = tmp_path / "curve.png"
    fig.savefig(path)
    return path


# --------------------------------------------------------------------------- cells and labels


def test_format_cell_interval_seeds_nan_and_switch(tables):
    top1, _, _ = tables[0].rows
    fgsm, loc, ece = tables[1].rows
    assert format_cell(top1.cells["cutmix"], top1) == "21.4 [21.0, 21.8]"
    assert format_cell(top1.cells["cutmix"], top1, intervals=False) == "21.4"
    assert format_cell(fgsm.cells["mixup"], fgsm) == "24.4 [23.2, 25.6]"
    assert format_cell(fgsm.cells["cutout"], fgsm) == "11.5 [11.0, 12.0]"
    assert format_cell(fgsm.cells["cutout"], fgsm, intervals=False) == "11.5"
    assert format_cell(loc.cells["mixup"], loc) == "–"
    assert format_cell(ece.cells["cutmix"], ece) == "-0.010"
    assert "%" not in format_cell(top1.cells["baseline"], top1)


def test_metric_label_unit_arrow_reference():
    assert metric_label(Row("top-1 error", {}, better=LOWER)) == "top-1 error (%) ↓"
    assert metric_label(Row("accuracy", {}, better=HIGHER)) == "accuracy (%) ↑"
    assert metric_label(Row("ECE", {}, unit="")) == "ECE"
    assert metric_label(Row("top-1 error", {}, better=LOWER, reference=True)) == "paper: top-1 error (%) ↓"
    assert metric_label(Row("a_b", {}, better=HIGHER), latex=True) == r"a\_b (\%) $\uparrow$"
    assert metric_label(Row("err", {}, better=LOWER, unit=""), latex=True) == r"err $\downarrow$"


# --------------------------------------------------------------------------- Markdown


def pipe_tables(text: str) -> list[list[list[str]]]:
    """The pipe tables in ``text``: per table its rows (header first, separator dropped),
    each a list of stripped cells; ``\\|`` does not split."""
    found, current = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
            if not all(re.fullmatch(r":?-+:?", c) for c in cells):
                current.append(cells)
        elif current:
            found.append(current)
            current = []
    return found


def test_markdown_structure_bold_italics_and_legend(tables):
    text = markdown(tables)
    assert text.count("### ImageNet classification") == 1 and "### Robustness & localization" in text
    parsed = pipe_tables(text)
    assert len(parsed) == 2
    for table, rows in zip(tables, parsed):
        assert rows[0] == ["metric", *table.columns]
        assert len(rows) == 1 + len(table.rows)
        assert all(len(r) == 1 + len(table.columns) for r in rows)
    (_, top1, top5, paper), (_, fgsm, loc, ece) = parsed
    assert top1[0] == "top-1 error (%) ↓"
    assert top1[4] == "**21.4 [21.0, 21.8]**" and not any("**" in c for c in top1[1:4])
    assert top5[3:] == ["**6.1**", "**6.1**"] and "**" not in top5[1] + top5[2]  # tie shares bold
    assert paper[0] == "*paper: top-1 error (%) ↓*" and paper[4] == "*21.4*"
    assert not any("**" in c for c in paper)
    assert fgsm[0] == "FGSM top-1 accuracy (%) ↑" and fgsm[4] == "**31.0 [30.0, 32.0]**"
    assert loc[2] == "–" and loc[4] == "**45.5 [44.9, 46.1]**" and loc[5] == ""
    assert ece[0] == "ECE" and not any("**" in c for c in ece)  # no direction, no best
    assert "Single crop, 224 px." in text
    legend = text.rstrip().splitlines()[-1]
    assert text.count("bootstrap") == 1 and "bootstrap" in legend and "Student-t interval over the seeds" in legend
    assert "↑/↓" in legend and "**bold**" in legend and "*italic*" in legend


def test_markdown_without_intervals(tables):
    text = markdown(tables, intervals=False)
    assert "[" not in text and "±" not in text.replace("where ± is shown", "")
    assert "bootstrap" not in text and "seeds (" not in text
    _, top1, *_ = pipe_tables(text)[0]
    assert top1[4] == "**21.4**"


def test_markdown_keeps_trailing_zeros():
    row = Row("acc", {"a": Cell(23.40), "b": Cell(1.0)}, better=HIGHER, digits=2)
    rows = pipe_tables(markdown([Table("t", "T", ["a", "b"], [row])]))[0]
    assert rows[1][1:] == ["**23.40**", "1.00"]


# --------------------------------------------------------------------------- LaTeX


def test_latex_rules_bold_and_reference_separation(tables):
    text = latex(tables, title="Results_v1")
    assert text.startswith(r"\documentclass{article}")
    for package in ("booktabs", "adjustbox", r"[T1]{fontenc}", r"[utf8]{inputenc}"):
        assert package in text
    assert text.count(r"\begin{table}") == 2 and text.count(r"\toprule") == 2 and text.count(r"\bottomrule") == 2
    assert r"\caption{ImageNet classification}" in text and r"\label{tab:imagenet}" in text
    assert r"\caption{Robustness \& localization}" in text and r"\label{tab:robust_loc}" in text
    assert r"\section*{Results\_v1}" in text
    assert r"\textbf{21.4 [21.0, 21.8]}" in text
    assert text.count(r"\textbf{6.1}") == 2 and r"\textbf{31.0 [30.0, 32.0]}" in text
    lines = text.splitlines()
    paper = next(i for i, line in enumerate(lines) if "paper: top-1" in line)
    assert lines[paper - 1] == r"\midrule" and r"\textbf" not in lines[paper]
    assert lines[paper].startswith(r"\textit{paper: top-1 error (\%) $\downarrow$}")
    assert r"\textit{21.4}" in lines[paper]
    assert r"localization error (\%) $\downarrow$ & 46.3 & -- &" in text  # NaN as an en dash
    assert "$-$0.010" in text  # minus sign
    assert r"\par\smallskip\footnotesize Single crop, 224 px." in text
    assert r"Means over 3 seeds where $\pm$ is shown; 100\% = all images." in text


def test_latex_escapes_and_is_balanced(tables):
    text = latex(tables)
    assert r"a\_b \& c\%" in text and ODD not in text
    assert "±" not in text and "–" not in text and "↑" not in text and "↓" not in text
    body = text.replace(r"\{", "").replace(r"\}", "").replace(r"\$", "").replace(r"\%", "")
    depth = 0
    for char in body:
        depth += {"{": 1, "}": -1}.get(char, 0)
        assert depth >= 0
    assert depth == 0
    assert body.count("$") % 2 == 0
    assert "%" not in body  # an unescaped % would comment out the rest of the line
    stack = []
    for kind, env in re.findall(r"\\(begin|end)\{(\w+)\}", text):
        if kind == "begin":
            stack.append(env)
        else:
            assert stack.pop() == env
    assert stack == []


def test_latex_without_intervals(tables):
    text = latex(tables, intervals=False)
    assert r"\pm" not in text.replace(r"where $\pm$ is shown", "") and "[21.0" not in text
    assert r"\textbf{21.4}" in text


TEX_ENGINES = ("pdflatex", "lualatex", "xelatex", "tectonic")


def test_latex_compiles(tables, tmp_path):
    engine = next((e for e in TEX_ENGINES if shutil.which(e)), None)
    if engine is None:
        pytest.skip(f"no TeX engine on PATH ({', '.join(TEX_ENGINES)})")
    source = tmp_path / "tables.tex"
    source.write_text(latex(tables, title="CutMix & co: 100% paper_ready"), encoding="utf-8")
    command = [engine, source.name] if engine == "tectonic" else [
        engine, "-interaction=nonstopmode", "-halt-on-error", source.name]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:]
    assert (tmp_path / "tables.pdf").stat().st_size > 0


# --------------------------------------------------------------------------- tidy frame


def test_long_frame(tables):
    frame = long_frame(tables)
    assert list(frame.columns) == ["table", "metric", "unit", "better", "method", "value", "ci_low", "ci_high",
                                   "std", "seeds", "interval", "verdict", "reference", "source"]
    expected = sum(1 for t in tables for r in t.rows for m in t.columns if m in r.cells)
    assert len(frame) == expected == 4 * 3 + 5 + 4 + 4
    assert not frame.duplicated(["table", "metric", "reference", "method"]).any()
    cutmix = frame[(frame.table == "imagenet") & (frame.metric == "top-1 error") & (frame.method == "cutmix")]
    measured, paper = cutmix[~cutmix.reference].iloc[0], cutmix[cutmix.reference].iloc[0]
    assert (measured.value, measured.ci_low, measured.ci_high) == (21.40, 21.02, 21.77)
    assert math.isnan(measured["std"]) and measured.seeds == 1 and measured.better == LOWER
    assert measured.interval == "95% bootstrap over images" and measured.verdict == ""
    assert math.isnan(paper.ci_low) and paper.source == "Yun et al. 2019, Table 3"
    fgsm = frame[frame.metric == "FGSM top-1 accuracy"].set_index("method")
    assert fgsm.loc["mixup", "std"] == 0.5 and fgsm.loc["mixup", "seeds"] == 3 and fgsm.loc[ODD, "ci_high"] == 13.0
    assert fgsm.loc["mixup", "interval"] == "95% t-interval over seeds" and paper.interval == ""
    loc = frame[frame.metric == "localization error"]
    assert ODD not in set(loc.method) and math.isnan(loc.set_index("method").loc["mixup", "value"])
    assert set(frame[frame.metric == "ECE"].unit) == {""} and frame[frame.metric == "ECE"].better.isna().all()


# --------------------------------------------------------------------------- HTML


class PageParser(HTMLParser):
    """Collects every start tag with its attributes, the text inside each tag, and the
    cells of each table as ``(classes, text)``."""

    def __init__(self):
        super().__init__()
        self.tags, self.texts, self.tables, self.stack = [], {}, [], []
        self.cell = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        if tag == "table":
            self.tables.append([])
        if tag == "tr":
            self.tables[-1].append([])
        if tag in ("td", "th"):
            self.cell = [set((attrs.get("class") or "").split()), ""]
            self.tables[-1][-1].append(self.cell)
        if tag not in ("img", "meta"):
            self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack.pop() == tag
        if tag in ("td", "th"):
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell[1] += data
        if self.stack:
            self.texts.setdefault(self.stack[-1], []).append(data)


def parse(page: str) -> PageParser:
    parser = PageParser()
    parser.feed(page)
    parser.close()
    assert parser.stack == []  # every element closed
    return parser


def test_html_is_self_contained(tables, png):
    page = html(tables, [("Occlusion <curve> & co", png), ("Same again", png)],
                title="Report <v1> & co", intro="Four methods; <script>alert(1)</script> is text.")
    assert page.startswith("<!DOCTYPE html>")
    parser = parse(page)
    links = [(tag, name, value) for tag, attrs in parser.tags for name, value in attrs.items()
             if name in ("src", "href")]
    assert links
    for tag, name, value in links:
        assert value.startswith("data:") or value.startswith("#"), (tag, name, value)
    assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:|//)", page)
    assert "@import" not in page and "url(" not in page and "<link" not in page and "<script" not in page
    images = [attrs for tag, attrs in parser.tags if tag == "img"]
    assert len(images) == 2
    for attrs in images:
        prefix = "data:image/png;base64,"
        assert attrs["src"].startswith(prefix)
        assert base64.b64decode(attrs["src"][len(prefix):]).startswith(PNG_SIGNATURE)
    assert parser.texts["figcaption"] == ["Occlusion <curve> & co", "Same again"]
    assert "Report &lt;v1&gt; &amp; co" in page and "&lt;script&gt;" in page
    targets = {attrs["id"] for _, attrs in parser.tags if "id" in attrs}
    assert all(value[1:] in targets for _, _, value in links if value.startswith("#"))


def test_html_tables_marks_and_notes(tables, png):
    page = html(tables, [("Occlusion curve", png)])
    parser = parse(page)
    assert [t for t in parser.texts["h2"] if t != "Contents"] == [
        "ImageNet classification", "Robustness & localization", "Figures"]
    assert len(parser.tables) == 2
    (header, top1, top5, paper), (header2, fgsm, _, _) = parser.tables
    assert [text for _, text in header] == ["metric", *METHODS]
    assert [text for _, text in header2][-1] == ODD
    assert top1[0][1] == "top-1 error (%) ↓"
    assert [("best" in classes) for classes, _ in top1] == [False, False, False, False, True]
    assert top1[4][1] == "21.4 [21.0, 21.8]" and '<span class="ci">[21.0, 21.8]</span>' in page
    assert [("best" in classes) for classes, _ in top5] == [False, False, False, True, True]
    assert all("ref" in classes and "best" not in classes for classes, _ in paper)
    assert paper[0][1] == "paper: top-1 error (%) ↓"
    assert fgsm[4][1] == "31.0 [30.0, 32.0]" and "best" in fgsm[4][0]
    assert "Single crop, 224 px." in parser.texts["p"]
    assert "<b>bold</b>" in page and "bootstrap" in page
    no_intervals = html(tables, [], intervals=False)
    assert 'class="ci"' not in no_intervals and "bootstrap" not in no_intervals and "<figure" not in no_intervals


def test_html_rejects_a_figure_that_is_not_png(tables, tmp_path):
    fake = tmp_path / "plot.jpg"
    fake.write_bytes(b"\xff\xd8\xff\xe0 not a png")
    with pytest.raises(UserError, match="not a PNG"):
        html(tables, [("jpeg", fake)])


BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def test_html_renders_in_headless_browser(tables, png, tmp_path):
    browser = next((b for b in BROWSERS if shutil.which(b)), None)
    if browser is None:
        pytest.skip("chromium not installed")
    page = tmp_path / "report.html"
    page.write_text(html(tables, [("Occlusion curve", png)]), encoding="utf-8")
    result = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", page.as_uri()],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    dom = result.stdout
    assert "ImageNet classification" in dom and "Robustness &amp; localization" in dom
    assert len(re.findall(r"<img [^>]*src=\"data:image/png;base64,", dom)) == 1
    assert dom.count("<table") == 2


def test_a_row_where_every_method_ties_marks_nothing():
    row = Row("AUROC", {m: Cell(0.0) for m in ("baseline", "mixup", "cutmix")}, better=HIGHER)
    assert row.best() == set()
    assert "**" not in markdown([Table("t", "T", ["baseline", "mixup", "cutmix"], [row])])
