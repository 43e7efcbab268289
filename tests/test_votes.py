"""Vote dump → TrueSkill μ, σ: agreement with trueskill's own rate_1vs1, priors, errors, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import trueskill

from gifemo.data.metadata import read_dataset
from gifemo.data.votes import VoteError, import_votes, main, make_env, parse_votes, rate_votes
from gifemo.emotions import EMOTION_INDEX, MU0, SIGMA0

CSV = """emotion,left,right,choice
happiness,a,b,left
happiness,b,c,right
Happiness,a,c,neither
# a comment line

fear,c,a,a
fear,b,c,R
happiness,c,b,b
"""


def test_matches_trueskill_rate_1vs1_by_hand():
    votes = parse_votes(CSV.splitlines())
    assert [v.outcome for v in votes] == ["left", "right", "draw", "right", "right", "right"]
    assert [v.line for v in votes] == [2, 3, 4, 7, 8, 9]
    got = rate_votes(votes)
    env = trueskill.TrueSkill(
        mu=25.0, sigma=25.0 / 3, draw_probability=0.1
    )  # package defaults otherwise
    R = env.create_rating

    def rate1(r1, r2, drawn=False):
        return trueskill.rate_1vs1(r1, r2, drawn=drawn, env=env)

    # happiness: a beats b; c beats b; a draws c; b beats c
    a, b, c = R(), R(), R()
    a, b = rate1(a, b)
    c, b = rate1(c, b)
    a, c = rate1(a, c, drawn=True)
    b, c = rate1(b, c)
    h = EMOTION_INDEX["happiness"]
    for gid, r in {"a": a, "b": b, "c": c}.items():
        np.testing.assert_allclose(got[gid][h], [r.mu, r.sigma], rtol=1e-12)
    # fear: choice "a" (the right GIF's id) → a beats c; then c beats b
    fa, fb, fc = R(), R(), R()
    fa, fc = rate1(fa, fc)
    fc, fb = rate1(fc, fb)
    f = EMOTION_INDEX["fear"]
    for gid, r in {"a": fa, "b": fb, "c": fc}.items():
        np.testing.assert_allclose(got[gid][f], [r.mu, r.sigma], rtol=1e-12)
    # the same first match through the general n-team update (another code path)
    (ga,), (_gb,) = env.rate([(R(),), (R(),)], ranks=[0, 1])
    np.testing.assert_allclose(
        rate_votes(parse_votes(["pride,p,q,left"]))["p"][EMOTION_INDEX["pride"]], [ga.mu, ga.sigma]
    )
    # every other emotion keeps the prior
    others = [i for i in range(17) if i not in (h, f)]
    np.testing.assert_allclose(got["a"][others], np.tile([MU0, SIGMA0], (15, 1)))
    assert got["a"][h, 0] > MU0 and got["b"][h, 1] < SIGMA0


def test_unvoted_ids_get_the_prior():
    got = rate_votes(parse_votes(["anger,x,y,left"]), ids=["z", "x"])
    assert set(got) == {"z", "x", "y"}
    np.testing.assert_array_equal(got["z"], np.tile([MU0, SIGMA0], (17, 1)))
    assert got["x"][EMOTION_INDEX["anger"], 0] > MU0 > got["y"][EMOTION_INDEX["anger"], 0]


def test_env_defaults():
    env = make_env()
    assert (
        env.mu == 25.0 and env.sigma == pytest.approx(25 / 3) and env.beta == pytest.approx(25 / 6)
    )


@pytest.mark.parametrize(
    ("text", "line", "match"),
    [
        ("joy,a,b,left", 1, "unknown emotion 'joy'"),
        ("fear,a,b", 1, "4 columns"),
        ("fear,a,b,left\nfear,a,a,left", 2, "itself"),
        ("fear,a,,left", 1, "empty GIF id"),
        ("fear,a,b,left\n\nfear,a,b,maybe", 3, "choice 'maybe'"),
    ],
)
def test_errors_name_line(text, line, match):
    with pytest.raises(VoteError, match=match) as ei:
        parse_votes(text.splitlines(), source="v.csv")
    assert str(ei.value).startswith(f"v.csv:{line}:")


def test_import_cli_writes_gifgif_metadata(tmp_path, capsys):
    gifs = tmp_path / "d" / "gifs"
    gifs.mkdir(parents=True)
    for g in ["a", "b", "never"]:
        (gifs / f"{g}.gif").write_bytes(b"GIF89a")
    (tmp_path / "votes.csv").write_text(CSV + "fear,a,gone,left\n")
    (tmp_path / "tags.json").write_text(json.dumps({"a": ["Happy", "lol"]}))
    out = tmp_path / "d" / "metadata.jsonl"
    rc = main(
        [
            str(tmp_path / "votes.csv"),
            "--gifs",
            str(gifs),
            "--out",
            str(out),
            "--tags",
            str(tmp_path / "tags.json"),
        ]
    )
    assert rc == 0 and "3 GIFs (2 voted on), 7 votes" in capsys.readouterr().out
    ds = read_dataset(out.parent)
    assert ds.kind == "gifgif" and ds.ids() == ["a", "b", "never"]
    assert ds.records[0].tags == ("happy", "lol") and ds.records[1].tags == ()
    assert json.loads(out.read_text().splitlines()[0])["file"] == "gifs/a.gif"
    s = ds.scores()
    np.testing.assert_allclose(s[2], np.tile([MU0, SIGMA0], (17, 1)))  # never voted → prior
    ref = rate_votes(parse_votes((CSV + "fear,a,gone,left\n").splitlines()))
    np.testing.assert_allclose(s[0], ref["a"])
    summary = import_votes(tmp_path / "votes.csv", gifs, out)
    assert summary == {"votes": 7, "gifs": 3, "gifs_voted": 2, "voted_without_file": 2}


def test_cli_error_exit(tmp_path, capsys):
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "a.gif").write_bytes(b"GIF89a")
    (tmp_path / "v.csv").write_text("fear,a,b,up\n")
    with pytest.raises(SystemExit) as ei:
        main(
            [
                str(tmp_path / "v.csv"),
                "--gifs",
                str(tmp_path / "g"),
                "--out",
                str(tmp_path / "m.jsonl"),
            ]
        )
    assert ei.value.code == 2 and "v.csv:1: choice 'up'" in capsys.readouterr().err


def test_tags_jsonl(tmp_path):
    from gifemo.data.votes import read_tags

    p = tmp_path / "t.jsonl"
    p.write_text('{"id": "a", "tags": ["x"]}\n{"id": "b", "tags": "y"}\n')
    with pytest.raises(VoteError, match=r"t\.jsonl:2"):
        read_tags(p)
