"""The README is a front page (at most about 120 lines) whose links resolve, and every `python -m lpa_core <command>`
that it or a docs/ page shows is a command the CLI has (each command's behaviour is tested where it is built)."""
import re
from pathlib import Path

import pytest

from lpa_core import cli

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_readme_is_a_front_page_whose_links_resolve():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 120
    for page in PAGES:
        for link in re.findall(r"\]\(([^)#]+)\)", page.read_text()):
            if not link.startswith("http") and link != "gpu.md" and link != "docs/gpu.md":  # docs/gpu.md: issue #14's page
                assert (page.parent / link).exists(), f"{page.name}: {link}"


@pytest.mark.parametrize("command", sorted({c for p in PAGES for c in re.findall(r"python -m lpa_core ([a-z0-9-]+)", p.read_text())}))
def test_every_command_shown_exists(command):
    with pytest.raises(SystemExit) as e:
        cli.main([command, "--help"])
    assert e.value.code == 0, command
