"""A Markdown file of the repository as the page shows it: images linked relative to the file (as GitHub renders
them) become URLs the app serves, and HTML comments (markers around generated tables) are dropped.

Code (fenced blocks and inline spans) is left as written, so a comment or an image link quoted in code stays text.
:func:`contents` lists a page's headings as links to the anchors the page gives them.
"""

import re
from pathlib import Path
from urllib.parse import quote, unquote

#: Where gradio serves a file of a folder in launch's ``allowed_paths``; the absolute path follows.
FILE_ROUTE = "/gradio_api/file="

_TOKENS = re.compile(
    r"(?P<code>^(?P<fence>`{3,}|~{3,})[^\n]*\n.*?^(?P=fence)[ \t]*$"  # a fenced code block
    r"|(?P<ticks>`+)(?!`).+?(?<!`)(?P=ticks)(?!`))"  # an inline code span
    r"|(?P<comment><!--.*?-->)"
    r"|!\[(?P<alt>[^\]]*)\]\((?P<target><[^>\n]*>|[^)\s]+)(?P<title>\s+\"[^\"\n]*\")?\)",  # an image
    re.MULTILINE | re.DOTALL,
)
#: What gradio's Markdown puts before the slug of a heading in its anchor id.
ANCHOR_PREFIX = "h-"
_ABSOLUTE = re.compile(r"^([a-z][a-z0-9+.-]*:|/)", re.IGNORECASE)  # a scheme (http:, data:) or a rooted path


def page_markdown(text: str, folder: Path) -> str:
    """``text`` (Markdown of a file in ``folder``) with comments removed and each relative image link pointing at
    FILE_ROUTE + the image's absolute path; an image that does not exist becomes a note naming it. Links with a
    scheme or a rooted path, and anything inside code, are kept as they are."""

    def replace(match: re.Match) -> str:
        if match["code"]:
            return match[0]
        if match["comment"]:
            return ""
        target = match["target"].removeprefix("<").removesuffix(">")
        if _ABSOLUTE.match(target):
            return match[0]
        path = (folder / unquote(target)).resolve()
        if not path.is_file():
            return f"*(missing figure: {target})*"
        return f"![{match['alt']}]({FILE_ROUTE}{quote(str(path))}{match['title'] or ''})"

    return _TOKENS.sub(replace, text)


def read_page_markdown(path: Path) -> str:
    """The Markdown file at ``path`` through page_markdown, or a message saying that it cannot be read."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        return f"*{path.name} cannot be shown: {err.strerror if isinstance(err, OSError) else err}.*"
    return page_markdown(text, path.parent)


def slug(heading: str) -> str:
    """The anchor id gradio's Markdown (with ``header_links``) gives a heading: ANCHOR_PREFIX and GitHub's rule,
    lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[`*_]", "", heading).strip().lower()
    return ANCHOR_PREFIX + re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def contents(text: str, level: int = 2) -> str:
    """A Markdown list linking to each heading of ``level`` in ``text`` (headings inside code are not headings)."""
    without_code = _TOKENS.sub(lambda match: "" if match["code"] else match[0], text)
    headings = re.findall(rf"^{'#' * level}[ \t]+(.+?)[ \t#]*$", without_code, re.MULTILINE)
    return "\n".join(f"- [{re.sub(r'[`*]', '', heading)}](#{slug(heading)})" for heading in headings)
