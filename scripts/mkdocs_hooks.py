"""mkdocs hooks of the docs site (mkdocs.yml): the results pages and figures, and the pages others add.

- Every table (.md) and figure (.png) under experiments/results/ is published under results/ in the site,
  from where it lives, so a results page shows the committed figures without a copy in docs/.
- docs/attribution.md and docs/multihost.md join the nav when they exist.
"""

from __future__ import annotations

from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "experiments" / "results"
OPTIONAL = {"attribution.md": ("Methods", "Attribution (TRAK, metrics)"),
            "multihost.md": ("Use", "Multi-host runs")}


def on_config(config):
    docs = Path(config["docs_dir"])
    for page, (section, title) in OPTIONAL.items():
        if not (docs / page).is_file():
            continue
        for entry in config["nav"]:
            if isinstance(entry, dict) and section in entry:
                pages = entry[section]
                if not any(page in (list(p.values())[0] if isinstance(p, dict) else p) for p in pages):
                    pages.append({title: page})
    return config


def on_files(files, config):
    for path in sorted(RESULTS.rglob("*")):
        if path.suffix in (".md", ".png") and path.is_file():
            rel = path.relative_to(RESULTS).as_posix()
            files.append(File(f"results/{rel}", str(RESULTS.parent), config["site_dir"], config["use_directory_urls"]))
    return files
