"""A figure the page ascribes to the shipped checkpoint is that checkpoint's own: its train.evaluate report in
results/eval/ (the one that scored the weights the checkpoint was exported from, at its working scale), read through
train.standing as the model card reads it. Figures of earlier checkpoints are named by their stage instead.

The texts checked are the ones a visitor reads: the Design questions tab (docs/DISCUSSION.md), the About tab
(docs/about.md) and the Space's front page (README.md).
"""

import json
import re
from pathlib import Path

import pytest

from segformer.checkpoint import DEFAULT_CHECKPOINT
from train.standing import rule_figures

ROOT = Path(__file__).resolve().parents[1]
REPORTS = ROOT / "results" / "eval"
PAGE_TEXTS = (ROOT / "docs" / "DISCUSSION.md", ROOT / "docs" / "about.md", ROOT / "README.md")
#: A mention of the shipped checkpoint by a name that, unqualified, means the one shipped now.
SHIPPED = re.compile(r"\bshipped (?:model|checkpoint|weights|encoder|one)\b(?:'s)?")
#: What ends the clause that follows a mention: a sentence's full stop, a semicolon, a parenthesis, a table cell,
#: the paragraph.
CLAUSE_END = re.compile(r"\.(?:\s|$)|[;(|\n]")
FIGURE = re.compile(r"(?<![\d.])0\.\d{3,4}(?![\d])")


def prose(text: str) -> str:
    """The text without its table rows and fenced code, each paragraph on one line."""
    lines, fenced = [], False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and not line.lstrip().startswith("|"):
            lines.append(line)
    return re.sub(r"(?<!\n)\n(?!\n)", " ", "\n".join(lines))


def shipped_claims(text: str) -> list[tuple[str, list[str]]]:
    """(clause, figures in it) for each mention of the shipped checkpoint: the clause runs from the mention to the
    end of its sentence or paragraph, a semicolon, a parenthesis or a table cell."""
    claims = []
    for mention in SHIPPED.finditer(prose(text)):
        rest = mention.string[mention.end() :]
        end = CLAUSE_END.search(rest)
        clause = mention.group() + rest[: end.start() if end else len(rest)]
        claims.append((clause, FIGURE.findall(clause)))
    return claims


def shipped_report() -> tuple[Path, dict]:
    """The report in results/eval/ that scored the checkpoint the shipped one was exported from (its
    ``exported_from``), at the checkpoint's working scale."""
    meta = json.loads(DEFAULT_CHECKPOINT.with_suffix(".json").read_text())
    source = meta["exported_from"]
    found = []
    for path in sorted(REPORTS.glob("*.json")):
        report = json.loads(path.read_text())
        same_scale = report.get("working_short_side") == meta.get("working_short_side")
        if report.get("checkpoint") == source and same_scale:
            found.append((path, report))
    assert len(found) == 1, f"{len(found)} reports in {REPORTS} score {source} at the shipped working scale: {found}"
    return found[0]


def matches(figure: str, values: list[float]) -> bool:
    """Whether ``figure`` (as written, e.g. '0.736') is one of ``values`` rounded to its decimals."""
    decimals = len(figure.split(".")[1])
    return any(f"{value:.{decimals}f}" == figure for value in values)


@pytest.fixture(scope="module")
def shipped_figures() -> list[float]:
    _, report = shipped_report()
    return [value for value in rule_figures(report).values() if value is not None]


def test_the_check_flags_a_stage_7_figure_called_the_shipped_models(shipped_figures: list[float]) -> None:
    """The sentence this check was written for: 0.713 is stage 7's, not the shipped checkpoint's."""
    old = "Two epochs reach 0.314 mIoU, 44% of\nthe shipped model's 0.713 on the same val splits, so these runs"
    [(clause, figures)] = shipped_claims(old)
    assert figures == ["0.713"] and not matches("0.713", shipped_figures), clause
    assert shipped_claims("the checkpoint shipped before had 0.715.") == []  # an earlier one, named as such


@pytest.mark.parametrize("page", PAGE_TEXTS, ids=lambda path: path.name)
def test_figures_called_the_shipped_checkpoints_are_its_own(page: Path, shipped_figures: list[float]) -> None:
    wrong = [
        (clause, figure)
        for clause, figures in shipped_claims(page.read_text(encoding="utf-8"))
        for figure in figures
        if not matches(figure, shipped_figures)
    ]
    path, _ = shipped_report()
    assert not wrong, f"figures called the shipped checkpoint's that are not in {path.name}: {wrong}"


def test_the_design_questions_state_the_shipped_checkpoints_figures() -> None:
    """Not a vacuous check: the Design questions tab does quote the shipped checkpoint, and with its figures."""
    claims = shipped_claims((ROOT / "docs" / "DISCUSSION.md").read_text(encoding="utf-8"))
    assert any(len(figures) >= 3 for _, figures in claims), claims
