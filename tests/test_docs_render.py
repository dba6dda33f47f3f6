"""demo.docs: a repository Markdown file as the app's page shows it (served image URLs, no HTML comments)."""

import re
from pathlib import Path
from urllib.parse import quote, unquote

import pytest

import app
from demo.docs import FILE_ROUTE, page_markdown, read_page_markdown

PNG = b"\x89PNG\r\n\x1a\n"  # what a figure starts with; page_markdown only checks that the file exists


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    """A docs folder (with a space in its path) holding one figure, figs/a b.png."""
    folder = tmp_path / "my docs"
    (folder / "figs").mkdir(parents=True)
    (folder / "figs" / "a b.png").write_bytes(PNG)
    return folder


def test_relative_image_points_at_the_served_file(docs: Path) -> None:
    served = f"{FILE_ROUTE}{quote(str(docs / 'figs' / 'a b.png'))}"
    assert " " not in served
    text = 'Before ![A figure](<figs/a b.png>) and ![Same](figs/a%20b.png "title") after.'
    assert page_markdown(text, docs) == f'Before ![A figure]({served}) and ![Same]({served} "title") after.'
    # Resolved from the file's folder, as GitHub does.
    assert page_markdown("![x](../my%20docs/figs/a%20b.png)", docs) == f"![x]({served})"


def test_missing_figure_becomes_a_note(docs: Path) -> None:
    assert page_markdown("![Loss](figs/q9.png)", docs) == "*(missing figure: figs/q9.png)*"


def test_absolute_links_and_code_are_kept(docs: Path) -> None:
    kept = [
        "![web](https://example.org/a.png)",
        "![inline](data:image/png;base64,iVBORw0KGgo=)",
        "![rooted](/somewhere/a.png)",
        "Markers `<!-- table:NAME -->` and ``![x](figs/a b.png)`` quoted in code.",
        "```markdown\n<!-- table:x -->\n![x](figs/missing.png)\n```",
        "~~~\n<!-- kept -->\n~~~",
    ]
    for text in kept:
        assert page_markdown(text, docs) == text


def test_comments_are_dropped_and_tables_kept(docs: Path) -> None:
    text = "Intro.\n\n<!-- table:scores -->\n| a | b |\n|---|---|\n| 1 | 2 |\n<!-- /table -->\n\nEnd <!-- a\nnote -->."
    shown = page_markdown(text, docs)
    assert shown == "Intro.\n\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n\nEnd ."
    assert "<!--" not in shown and "-->" not in shown


def test_missing_file_gives_a_message(tmp_path: Path) -> None:
    assert read_page_markdown(tmp_path / "ABSENT.md") == "*ABSENT.md cannot be shown: No such file or directory.*"


def test_the_real_discussion() -> None:
    """docs/DISCUSSION.md as the app shows it: each of its figure links (it has some, or this would prove nothing)
    served, in order, as the committed figure it names under docs/ (launch's allowed_paths), none noted as missing,
    and no comment left outside code."""
    image = r"!\[[^\]]*\]\(([^)\s]+)"
    linked = re.findall(image, app.DISCUSSION.read_text())
    assert linked, f"no figure links in {app.DISCUSSION}"
    shown = read_page_markdown(app.DISCUSSION)
    assert shown.startswith("#") and "missing figure" not in shown
    targets = re.findall(image, shown)
    assert all(target.startswith(FILE_ROUTE) for target in targets), targets
    served = [Path(unquote(target.removeprefix(FILE_ROUTE))) for target in targets]
    assert served == [(app.DISCUSSION.parent / unquote(link)).resolve() for link in linked]
    assert all(path.is_file() and path.is_relative_to(app.DOCS) for path in served)
    outside_code = re.sub(r"`[^`\n]*`", "", shown)
    assert "<!--" not in outside_code
