"""Every relative link in README.md and docs/*.md leads somewhere: to a file or folder of the checkout
and, with `#anchor`, to a heading of that page (anchors as GitHub makes them from the heading)."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^(```|~~~)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$")


def _prose_lines(text: str) -> list[str]:
    """The page's lines outside fenced code blocks (a link in a code sample is not a link)."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line.lstrip()):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(line)
    return lines


def _without_code_spans(line: str) -> str:
    return re.sub(r"`[^`]*`", "", line)


def anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens, repeats numbered."""
    found: set[str] = set()
    for line in _prose_lines(page.read_text(encoding="utf-8")):
        match = HEADING.match(line)
        if not match:
            continue
        title = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", match.group(1))  # a link in a heading: its text
        slug = re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")
        candidate, n = slug, 0
        while candidate in found:
            n += 1
            candidate = f"{slug}-{n}"
        found.add(candidate)
    return found


def broken_links(page: Path, root: Path = ROOT) -> list[str]:
    broken = []
    for line in _prose_lines(page.read_text(encoding="utf-8")):
        for target in LINK.findall(_without_code_spans(line)):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto: ...
                continue
            path_part, _, anchor = target.partition("#")
            destination = (page.parent / path_part).resolve() if path_part else page
            where = f"{page.relative_to(root)}: ({target})"
            if not destination.exists():
                broken.append(f"{where}: no file {path_part}")
            elif anchor and destination.suffix == ".md" and anchor not in anchors(destination):
                broken.append(f"{where}: no heading #{anchor} in {destination.relative_to(root)}")
    return broken


def test_every_relative_link_in_the_readme_and_docs_resolves():
    broken = [problem for page in PAGES for problem in broken_links(page)]
    assert broken == [], "broken links:\n" + "\n".join(broken)


def test_the_anchor_rule_is_githubs(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# How it is built\n## Tests\n## Tests\n### `state:` and removals (cron)\n"
                    "```\n# not a heading\n```\n", encoding="utf-8")
    assert anchors(page) == {"how-it-is-built", "tests", "tests-1", "state-and-removals-cron"}


def test_a_broken_link_or_anchor_is_reported(tmp_path):
    (tmp_path / "other.md").write_text("# Present\n", encoding="utf-8")
    page = tmp_path / "page.md"
    page.write_text("[ok](other.md#present) [gone](missing.md) [bad anchor](other.md#absent) "
                    "[web](https://example.com/x#y) `[code](nowhere.md)`\n", encoding="utf-8")
    assert broken_links(page, root=tmp_path) == ["page.md: (missing.md): no file missing.md",
                                                 "page.md: (other.md#absent): no heading #absent in other.md"]
