"""README.md is a front door to the pages in docs/: short, with links that resolve, and the
test command CI runs."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
PAGES = sorted((REPO / "docs").glob("*.md"))
TEST_COMMAND = REPO / ".ci" / "test-command"
FENCE = re.compile(r"^```.*?^```", flags=re.MULTILINE | re.DOTALL)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def prose(text: str) -> str:
    """Markdown without code blocks and code spans, where brackets are not links."""
    return re.sub(r"`[^`\n]*`", "", FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    headings = re.findall(r"^#{1,6} (.+)$", FENCE.sub("", path.read_text()), flags=re.MULTILINE)
    found: set[str] = set()
    for heading in headings:
        base = candidate = slug(heading)
        count = 0
        while candidate in found:  # repeated headings get -1, -2, ...
            count += 1
            candidate = f"{base}-{count}"
        found.add(candidate)
    return found


def broken_links(page: Path) -> list[str]:
    broken = []
    for target in LINK.findall(prose(page.read_text())):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        file, _, anchor = target.partition("#")
        linked = (page.parent / file).resolve() if file else page
        missing_anchor = anchor and linked.suffix == ".md" and anchor not in anchors(linked)
        if not linked.exists() or missing_anchor:
            broken.append(target)
    return broken


def test_the_slugs_are_githubs():
    assert slug("Smallest face (`min_face`)") == "smallest-face-min_face"
    assert slug("CPU latency, one image") == "cpu-latency-one-image"
    assert slug("GPU (one H200)") == "gpu-one-h200"


def linked_pages(page: Path) -> set[Path]:
    targets = (t.partition("#")[0] for t in LINK.findall(prose(page.read_text())))
    return {(page.parent / t).resolve() for t in targets if t.endswith(".md") and ":" not in t}


def test_the_readme_is_a_front_door():
    assert len(README.read_text().splitlines()) <= 300
    assert len(PAGES) >= 4
    reached, todo = set(), [README.resolve()]
    while todo:
        if (page := todo.pop()) not in reached and page.exists():
            reached.add(page)
            todo += linked_pages(page)
    unreached = sorted(p.name for p in PAGES if p.resolve() not in reached)
    assert not unreached, "pages no link leads to from the README"


def test_every_relative_link_resolves():
    broken = {page.relative_to(REPO).as_posix(): broken_links(page) for page in [README, *PAGES]}
    assert not {page: links for page, links in broken.items() if links}


def test_the_readme_shows_the_command_ci_runs():
    command = TEST_COMMAND.read_text().strip()
    assert len(command.splitlines()) == 1
    shown = re.search(
        r"<!-- test-command: \.ci/test-command -->\n```bash\n(.*?)\n```", README.read_text()
    )
    assert shown, "README.md lost the test command's block"
    assert shown.group(1) == command
    ci = [line for line in (REPO / ".ci" / "run").read_text().splitlines() if line[:1] != "#"]
    assert any(".ci/test-command" in line for line in ci)
    assert not [line for line in ci if "README" in line]  # CI never parses prose
