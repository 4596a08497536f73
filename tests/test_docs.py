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


def versions(path):
    """The texts of ROOT/path as it is and as committed (git HEAD; just the one outside a checkout or where they agree):
    the README quotes the committed results and is updated with them, and the README's quick run re-trains the quick
    ones in place, which on another CPU type gives other float32 numbers (docs/fair.md, Statistics): no README error."""
    r = subprocess.run(["git", "show", f"HEAD:{path}"], cwd=ROOT, capture_output=True, text=True)
    here = (ROOT / path).read_text()
    return [here] + ([r.stdout] if r.returncode == 0 and r.stdout != here else [])


def readme_mismatches(cells, verdicts):
    """The README cells (one scale's row) that the verdicts.csv text does not give to the digits they print."""
    v = pd.read_csv(io.StringIO(verdicts))
    v = v[(v.claim == "LPA beats Simultaneous") & (v.workload == "table1") & (v.dataset == "all") & (v.metric == "mse")]
    bad = []
    for protocol, cell in zip(("paper", "tuned", "equal_steps", "equal_flops"), cells.split("|"), strict=True):
        got = v[v.protocol == protocol][["ratio", "ratio_low", "ratio_high"]].to_numpy()
        shown = re.findall(r"[0-9]+(?:\.[0-9]+)?", cell)
        if cell.strip() == "not run":
            ok = len(got) == 0
        else:
            ok = len(shown) == 3 and len(got) == 1 and all(
                float(t) == float(f"{x:.{len(t.replace('.', '').lstrip('0'))}g}") for t, x in zip(shown, got[0]))
        if not ok:
            bad.append((protocol, cell.strip(), got.round(4).tolist()))
    return bad


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
    """The README's LPA / Simultaneous row per scale (geometric mean [CI] per protocol) is results/tables[/<scale>]/
    fair/verdicts.csv, as it is or as committed, to the digits it prints: re-running the fair track and committing it
    without the README fails here."""
    rows = re.findall(r"^\| (paper|quick) \([^|]*\) \|(.*)\|$", (ROOT / "README.md").read_text(), re.M)
    assert sorted(s for s, _ in rows) == ["paper", "quick"]
    for scale, cells in rows:
        found = [readme_mismatches(cells, text)
                 for text in versions(f"results/tables/{'' if scale == 'paper' else scale + '/'}fair/verdicts.csv")]
        assert not all(found), (scale, found[0])
