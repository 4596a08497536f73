"""lpa_core.ancre_results: variant names and wirings from run configs, the paper's LLaMA ordering judged per wiring on
the ANCRé table, and its section of ancre.md."""
import pandas as pd

from lpa_core import ancre_results as ar
from lpa_core.report import ordering_markdown


def test_variant_and_wiring_from_the_resolved_config():
    assert ar.variant({"topology": "cascade", "wiring": "add"}) == "cascade" and ar.wiring({"topology": "cascade"}) == ""
    assert ar.variant({"topology": "ancre", "normalisation": "ingoing"}) == "ancre"  # a run made before the key: replace
    assert ar.variant({"topology": "ancre", "normalisation": "outgoing", "wiring": "add"}) == "ancre_outgoing_add"
    assert ar.variant({"topology": "gains", "wiring": "add"}) == "gains_add"
    assert [ar.variant_wiring(v) for v in ("cascade", "ancre", "all_fixed_add")] == ["", "replace", "add"]
    assert ar.base_variant("ancre_none_add") == "ancre_none" and ar.base_variant("ancre") == "ancre"


def table(cells, metric="mse", arch="resmlp"):
    """ancre.csv rows from {(topology, dataset): mean or None (every run diverged)}."""
    return pd.DataFrame([dict(dataset=d, arch=arch, paradigm="simultaneous", topology=t, metric=metric,
                              mean=float("nan") if m is None else m, std=0.0, n_seeds=0 if m is None else 3,
                              n_diverged=3 if m is None else 0) for (t, d), m in cells.items()])


def test_paper_ordering_per_wiring():
    cells = {("cascade", "a"): 3.0, ("cascade", "b"): 3.0,
             ("ancre", "a"): 1.0, ("ancre", "b"): 1.0, ("ancre_outgoing", "a"): 2.0, ("ancre_outgoing", "b"): 2.0,
             ("ancre_none", "a"): None, ("ancre_none", "b"): 5.0,
             ("ancre_add", "a"): 2.5, ("ancre_add", "b"): 1.0, ("ancre_outgoing_add", "a"): 2.0,
             ("ancre_outgoing_add", "b"): 4.0}
    rows = {(r["wiring"], r["check"]): r for r in ar.paper_ordering(table(cells))}
    assert (rows["replace", "ancre_best"]["verdict"], rows["replace", "ancre_best"]["holds_in"]) == ("holds", 2)
    assert rows["replace", "cascade_worst"]["verdict"] == "holds"
    assert (rows["replace", "none_diverges"]["verdict"], rows["replace", "none_diverges"]["holds_in"],
            rows["replace", "none_diverges"]["cells"]) == ("holds", 3, 6)  # 3 of 6 runs: at least half
    assert (rows["add", "ancre_best"]["verdict"], rows["add", "ancre_best"]["holds_in"]) == ("fails", 1)
    assert (rows["add", "cascade_worst"]["verdict"], rows["add", "cascade_worst"]["holds_in"]) == ("fails", 1)
    assert rows["add", "none_diverges"]["verdict"] == "not run"
    # the same numbers as accuracies (higher is better): the cascade now best, ANCRé worst
    rows = {(r["wiring"], r["check"]): r["verdict"] for r in ar.paper_ordering(table(cells, "test_acc_pct", "vit6_d64"))}
    assert rows["replace", "ancre_best"] == "fails" and rows["replace", "cascade_worst"] == "fails"
    md = "\n".join(ordering_markdown(table(cells)))
    assert "| resmlp | simultaneous | replace | mse | holds (2 of 2) | holds (2 of 2) | holds (3 of 6) |" in md
    assert "| resmlp | simultaneous | add | mse | fails (1 of 2) | fails (1 of 2) | not run |" in md


def test_ordering_with_cascade_and_ancre_only():
    """Where ancre_outgoing and ancre_none were not run (the vision and LM slices), ANCRé vs cascade decides."""
    cells = {("cascade", "a"): 2.0, ("ancre", "a"): 1.0, ("ancre_add", "a"): 3.0}
    rows = {(r["wiring"], r["check"]): r["verdict"] for r in ar.paper_ordering(table(cells, "val_ppl", "lm_tiny"))}
    assert rows == {("replace", "ancre_best"): "holds", ("replace", "cascade_worst"): "holds",
                    ("replace", "none_diverges"): "not run", ("add", "ancre_best"): "fails",
                    ("add", "cascade_worst"): "fails", ("add", "none_diverges"): "not run"}
