"""Agreement (κ, percent, Krippendorff's α with set distances), empirical Ñ and assembly."""

from __future__ import annotations

import json
import math
from fractions import Fraction

import numpy as np
import pytest

from gifemo.apps.label import main, open_state
from gifemo.apps.label.agreement import (
    agreement_report,
    cohen_kappa,
    empirical_n_tilde,
    jaccard_distance,
    krippendorff_alpha,
    masi_distance,
)
from gifemo.apps.label.assemble import assemble
from gifemo.data.metadata import read_dataset
from tests.label_fixtures import make_project

F = frozenset


def test_masi_distance_by_hand():
    assert masi_distance(F("a"), F("a")) == 0
    assert masi_distance(F("a"), F("ab")) == pytest.approx(1 - 0.5 * 2 / 3)  # subset
    assert masi_distance(F("ab"), F("bc")) == pytest.approx(1 - (1 / 3) * (1 / 3))  # overlap
    assert masi_distance(F("a"), F("b")) == 1  # disjoint
    assert masi_distance(F(), F()) == 0
    assert jaccard_distance(F("ab"), F("bc")) == pytest.approx(2 / 3)


def test_alpha_masi_hand_computed():
    # u1 {a},{a}; u2 {a},{a,b}; u3 {b},{c}.  n = 6.
    # D_o = (0 + 2·(2/3) + 2·1) / 6 = 5/9.
    # D_e: ordered pairs: {a}×{a,b} 6·(2/3) + {a}×{b} 6 + {a}×{c} 6 + {a,b}×{b} 2·(2/3)
    #      + {a,b}×{c} 2 + {b}×{c} 2 = 64/3, over 6·5 → 32/45.  α = 1 − (5/9)/(32/45) = 7/32.
    units = [[F("a"), F("a")], [F("a"), F("ab")], [F("b"), F("c")]]
    assert float(Fraction(7, 32)) == pytest.approx(krippendorff_alpha(units, "masi"), abs=1e-12)
    assert math.isnan(krippendorff_alpha([[F("a"), F("a")]]))  # no expected disagreement
    assert math.isnan(krippendorff_alpha([[F("a")]]))  # nothing pairable


def _nominal_alpha_coincidence(units):
    """Reference: nominal α from the coincidence matrix (Krippendorff 2011, §C)."""
    cats = sorted({v for u in units for v in u})
    idx = {c: i for i, c in enumerate(cats)}
    o = np.zeros((len(cats), len(cats)))
    for u in units:
        m = len(u)
        if m < 2:
            continue
        for i, a in enumerate(u):
            for j, b in enumerate(u):
                if i != j:
                    o[idx[a], idx[b]] += 1 / (m - 1)
    n_c = o.sum(1)
    n = n_c.sum()
    off = o.sum() - np.trace(o)
    exp = n * n - (n_c**2).sum()
    return 1 - (n - 1) * off / exp


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_alpha_on_singletons_matches_nominal_alpha(seed):
    rng = np.random.default_rng(seed)
    units = []
    for _ in range(40):
        m = int(rng.integers(1, 4))
        truth = int(rng.integers(0, 3))
        units.append([truth if rng.random() < 0.7 else int(rng.integers(0, 3)) for _ in range(m)])
    sets = [[F([str(v)]) for v in u] for u in units]
    want = _nominal_alpha_coincidence(units)
    assert krippendorff_alpha(sets, "jaccard") == pytest.approx(want, abs=1e-12)
    assert krippendorff_alpha(sets, "masi") == pytest.approx(want, abs=1e-12)


def test_kappa_and_n_tilde_by_hand():
    a = [True, True, False, False, True, False]
    b = [True, False, False, False, True, True]
    p_o = 4 / 6
    p_e = (3 / 6) * (3 / 6) + (3 / 6) * (3 / 6)
    assert cohen_kappa(a, b) == pytest.approx((p_o - p_e) / (1 - p_e))
    assert math.isnan(cohen_kappa([True, True], [True, True]))
    assert empirical_n_tilde(checked=40, positives=10, n_p=3000) == 12000
    assert math.isnan(empirical_n_tilde(5, 0, 3000))


def _label(state, user, emotion, gif, answer, **kw):
    items = state.next_items(user, emotion, 10)
    assert gif in [i["gif_id"] for i in items], (user, emotion, gif, items)
    state.decide(user, emotion, gif, answer, **kw)


def test_report_and_assembly_hold_exactly_the_consensus(tmp_path):
    p = make_project(tmp_path, n_gifs=4, n_p=10)
    s = open_state(p.path)
    g0, g1, g2, g3 = p.ids
    am, an = "amusement", "anger"
    # amusement: g0 yes/yes (+ both mark happiness, one marks fear; both cartoon), g1 yes/no,
    # g2 no/no (both mark anger), g3 yes/yes
    _label(s, "alice", am, g0, True, others=["happiness", "fear"], cartoon=True, multi_scene=False)
    _label(s, "bob", am, g0, True, others=["happiness"], cartoon=True, multi_scene=True)
    _label(s, "alice", am, g1, True, cartoon=False, multi_scene=False)
    _label(s, "bob", am, g1, False, cartoon=False, multi_scene=False)
    _label(s, "alice", am, g2, False, others=["anger"], cartoon=False, multi_scene=False)
    _label(s, "bob", am, g2, False, others=["anger"], cartoon=False, multi_scene=False)
    _label(s, "alice", am, g3, True, cartoon=False, multi_scene=True)
    _label(s, "bob", am, g3, True, cartoon=False, multi_scene=True)
    # anger (reversed order: g3 first): g3 no/no overrides nothing; g2 not asked yet
    _label(s, "alice", an, g3, False, cartoon=False, multi_scene=True)
    _label(s, "bob", an, g3, False, cartoon=False, multi_scene=True)
    rep = agreement_report(s, {am: 123.0})
    r = rep["emotions"][am]
    assert r["pairs"] == 4 and r["percent_agreement"] == pytest.approx(75.0)
    assert r["kappa"] == pytest.approx(
        cohen_kappa([True, True, False, True], [True, False, False, True])
    )
    assert r["checked"] == 4 and r["positives"] == 2
    assert r["n_tilde_empirical"] == pytest.approx(10 * 4 / 2)
    assert r["n_tilde_predicted"] == 123.0
    assert rep["emotions"][an]["kappa"] is None  # one answer only: undefined
    # label sets: g0 {am, hap, fear} vs {am, hap}; g1 {am} vs {}; g2 {anger} vs {anger};
    # g3 {am} vs {am}; anger g3 {} vs {}
    units = [[F({am, "happiness", "fear"}), F({am, "happiness"})], [F({am}), F()],
             [F({an}), F({an})], [F({am}), F({am})], [F(), F()]]  # fmt: skip
    assert rep["alpha"] == pytest.approx(krippendorff_alpha(units), abs=1e-6)

    out = tmp_path / "gifgif_plus"
    summary = assemble(s, out, stats=False)
    rows = {
        json.loads(x)["id"]: json.loads(x)
        for x in (out / "metadata.jsonl").read_text().splitlines()
    }
    assert set(rows) == {g0, g2, g3} and summary["gifs"] == 3
    assert rows[g0]["emotions"] == [am, "happiness"]  # fear marked by one only
    assert rows[g0]["cartoon"] is True and rows[g0]["multi_scene"] is None  # they disagreed
    assert rows[g2]["emotions"] == [an]  # both marked anger, no anger item decided
    assert rows[g3]["emotions"] == [am] and rows[g3]["multi_scene"] is True
    assert rows[g0]["giphy_ids"] == [g0, f"{g0}dup"] and rows[g0]["labellers"] == 2
    assert rows[g0]["queries"] == ["happy"] and rows[g0]["title"] == "GIF number 0"
    ds = read_dataset(out, kind="gifgif_plus")
    assert (
        len(ds) == 3
        and (out / "gifs" / f"{g0}.gif").read_bytes()
        == (p.data / "gifs" / f"{g0}.gif").read_bytes()
    )
    readme = (out / "README.md").read_text()
    assert "Powered by GIPHY" in readme and "- GIFs: 3" in readme


def test_cli_agreement_and_assemble_with_stats(tmp_path, capsys):
    p = make_project(tmp_path, n_gifs=3, n_p=5)
    s = open_state(p.path)
    for g in p.ids:
        for u in ("alice", "bob"):
            _label(s, u, "amusement", g, g != p.ids[1], multi_scene=False, cartoon=g == p.ids[0])
    s.store.close()
    assert main(["agreement", "--project", str(p.path)]) == 0
    text = capsys.readouterr().out
    assert "amusement" in text and "Krippendorff" in text
    out = tmp_path / "out"
    assert main(["assemble", "--project", str(p.path), "--out", str(out)]) == 0
    stats = json.loads((out / "stats" / "stats.json").read_text())
    assert stats["gifs_per_emotion"]["amusement"] == 2
    assert stats["shares"]["cartoon"]  # Fig. 10's flag shares were computed
    assert (out / "stats" / "fig10_overlap.png").is_file() and (
        out / "stats" / "fig9_timing.png"
    ).is_file()


def test_predicted_n_tilde_uses_the_projects_quota(tmp_path):
    from gifemo.apps.label.project import predicted_n_tilde

    m = tmp_path / "metrics.json"
    m.write_text(
        json.dumps({"test/precision_at_recall/amusement": 0.25, "test/n_tilde/anger": 777.0})
    )
    assert predicted_n_tilde(tmp_path, 50) == {"amusement": 200.0, "anger": 777.0}
    assert predicted_n_tilde(None, 50) == {}


def test_scripted_labellers_without_errors_reproduce_the_truth(tmp_path):
    from gifemo.apps.label.simulate import simulate

    p = make_project(tmp_path, n_gifs=6, n_p=100)
    rng = np.random.default_rng(0)
    truth = {}
    for g in p.ids:
        emotions = sorted(
            {
                str(e)
                for e in rng.choice(
                    ["amusement", "anger", "fear", "pride"], size=int(rng.integers(0, 3))
                )
            }
        )
        truth[g] = {
            "id": g,
            "emotions": emotions,
            "cartoon": bool(rng.random() < 0.5),
            "multi_scene": False,
        }
    (tmp_path / "truth.jsonl").write_text("".join(json.dumps(r) + "\n" for r in truth.values()))
    counts = simulate(p.path, tmp_path / "truth.jsonl", labellers=2, error=0.0)
    assert counts == {
        "answers": 2 * 2 * 6,
        "yes": 2 * sum(len({"amusement", "anger"} & set(r["emotions"])) for r in truth.values()),
        "unknown_truth": 0,
    }
    out = tmp_path / "out"
    assemble(open_state(p.path), out, stats=False)
    rows = {
        json.loads(x)["id"]: json.loads(x)
        for x in (out / "metadata.jsonl").read_text().splitlines()
    }
    assert {g: (r["emotions"], r["cartoon"]) for g, r in rows.items()} == {
        g: (t["emotions"], t["cartoon"]) for g, t in truth.items() if t["emotions"]
    }
