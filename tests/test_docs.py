"""The README is a front page (at most about 120 lines) whose links resolve, and every `python -m lpa_core <command>`
that it or a docs/ page shows is a command the CLI has (each command's behaviour is tested where it is built); the
numbers it quotes from a committed table are that table's."""
import io
import re
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from lpa_core import cli

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def committed(path):
    """The text of ROOT/path as committed (git HEAD), else (no git checkout) as it is: the README quotes the committed
    results, and the README's quick run re-trains the quick ones in place, which on another CPU gives other float32
    numbers (docs/fair.md, Statistics): that is no README error."""
    r = subprocess.run(["git", "show", f"HEAD:{path}"], cwd=ROOT, capture_output=True, text=True)
    return r.stdout if r.returncode == 0 else (ROOT / path).read_text()


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


def test_readme_fair_ratios_are_the_committed_verdicts():
    """The README's LPA / Simultaneous row per scale (geometric mean [CI] per protocol) is the committed
    results/tables[/<scale>]/fair/verdicts.csv to the digits it prints: committing a re-run fair track and not the
    README fails here."""
    rows = re.findall(r"^\| (paper|quick) \([^|]*\) \|(.*)\|$", (ROOT / "README.md").read_text(), re.M)
    assert sorted(s for s, _ in rows) == ["paper", "quick"]
    for scale, cells in rows:
        v = pd.read_csv(io.StringIO(committed(f"results/tables/{'' if scale == 'paper' else scale + '/'}fair/verdicts.csv")))
        v = v[(v.claim == "LPA beats Simultaneous") & (v.workload == "table1") & (v.dataset == "all") & (v.metric == "mse")]
        for protocol, cell in zip(("paper", "tuned", "equal_steps", "equal_flops"), cells.split("|"), strict=True):
            got = v[v.protocol == protocol][["ratio", "ratio_low", "ratio_high"]].to_numpy()
            if cell.strip() == "not run":
                assert len(got) == 0, (scale, protocol)
                continue
            shown = re.findall(r"[0-9]+(?:\.[0-9]+)?", cell)
            assert len(shown) == 3 and len(got) == 1, (scale, protocol, cell)
            for text, value in zip(shown, got[0]):
                digits = len(text.replace(".", "").lstrip("0"))
                assert float(text) == float(f"{value:.{digits}g}"), (scale, protocol, text, value)
