"""Every Python block of the README and the docs runs, page by page in reading order (the README, then the
site's nav order, then any other page), each page's blocks chained in one namespace as a reader pastes them.

A failing block is named by its page and line. Blocks run on small data in a scratch folder.
"""

import re
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
SLOW_BLOCK_S = 20          # the docs' rule: a block runs in about 20 s at most on the reference machine


def _nav_pages(nav) -> list[str]:
    out = []
    for entry in nav:
        value = list(entry.values())[0] if isinstance(entry, dict) else entry
        out += _nav_pages(value) if isinstance(value, list) else [value]
    return out


def pages() -> list[Path]:
    """README.md, the nav's pages in order, then the docs' other pages (sorted)."""
    config = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=yaml.BaseLoader)
    ordered = [ROOT / "docs" / p for p in _nav_pages(config["nav"])]
    rest = sorted(p for p in (ROOT / "docs").glob("*.md") if p not in ordered)
    return [ROOT / "README.md", *ordered, *rest]


def blocks(page: Path) -> list[tuple[int, str]]:
    text = page.read_text()
    return [(text[:m.start()].count("\n") + 1, m.group(1)) for m in BLOCK.finditer(text)]


def test_the_block_finder_finds_fenced_python_only(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("x\n```python\na = 1\n```\n\n```bash\nls\n```\n    indented = 2\n```python\nb = a + 1\n```\n")
    assert blocks(page) == [(2, "a = 1\n"), (10, "b = a + 1\n")]


@pytest.mark.parametrize("page", [p for p in pages() if blocks(p)], ids=lambda p: p.name)
def test_page_runs_in_reading_order(page, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__docs__"}
    slow = []
    for line, code in blocks(page):
        start = time.perf_counter()
        exec(compile(code, f"{page.relative_to(ROOT)}:{line}", "exec"), namespace)
        seconds = time.perf_counter() - start
        if seconds > SLOW_BLOCK_S:
            slow.append(f"{page.name}:{line} {seconds:.0f} s")
    if slow:  # reported, not failed: a loaded machine is slower than the reference one
        print("slow docs blocks:", ", ".join(slow))
