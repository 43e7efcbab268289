"""Vote dump → TrueSkill μ, σ: agreement with trueskill's own rate_1vs1 and with GIFGIF's update
equations (its draw margin), the published dump's format, skipped rows, priors, errors, CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import trueskill
from scipy.stats import norm

from gifemo.apps.votes import main
from gifemo.data.metadata import read_dataset
from gifemo.data.votes import (
    SkippedRows,
    VoteError,
    gifgif_draw_margin,
    gifgif_draw_probability,
    import_votes,
    make_env,
    parse_votes,
    rate_vote_dump,
    rate_votes,
)
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
    got = rate_votes(votes, env=make_env("package"))
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
        rate_votes(parse_votes(["pride,p,q,left"]), env=make_env("package"))["p"][
            EMOTION_INDEX["pride"]
        ],
        [ga.mu, ga.sigma],
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
    for settings in ("gifgif", "package"):
        env = make_env(settings)
        assert env.mu == 25.0 and env.sigma == pytest.approx(25 / 3)
        assert env.beta == pytest.approx(25 / 6) and env.tau == pytest.approx(25 / 300)
    assert make_env("package").draw_probability == 0.10
    # GIFGIF's margin: Φ⁻¹(0.565) · √(2β² + 2σ0²), σ0 = 25/3, β² = σ0²/4 (scripts/trueskill.py)
    s0 = 25 / 3
    eps = norm.ppf(0.565) * math.sqrt(2 * s0**2 / 4 + 2 * s0**2)
    assert gifgif_draw_margin() == pytest.approx(eps, rel=1e-12) and eps == pytest.approx(
        2.156, abs=1e-3
    )
    env = make_env()  # the package's margin at the converted probability is GIFGIF's margin
    assert trueskill.calc_draw_margin(env.draw_probability, 2, env) == pytest.approx(eps, rel=1e-6)
    assert gifgif_draw_probability() == pytest.approx(0.2856, abs=1e-4)
    with pytest.raises(ValueError, match="gifgif"):
        make_env("microsoft")


def _gifgif_update(winner, loser, draw, eps):
    """GIFGIF's TrueSkill update (scripts/trueskill.py), written out with scipy.stats.norm:
    σ² += τ²; c = √(2β² + σ_w² + σ_l²); t = (μ_w − μ_l)/c; e = ε/c;
    win:  v = φ(t − e)/Φ(t − e), w = v(v + t − e);
    draw: v = (φ(−e − t) − φ(e − t)) / (Φ(e − t) − Φ(−e − t)),
          w = v² + ((e − t)φ(e − t) + (e + t)φ(e + t)) / (Φ(e − t) − Φ(−e − t));
    μ_w += σ_w² v / c, μ_l −= σ_l² v / c, σ² ← σ² (1 − σ² w / c²)."""
    s0 = 25 / 3
    beta2, tau2 = s0**2 / 4, s0**2 / 10000
    (mw, sw), (ml, sl) = winner, loser
    vw, vl = sw**2 + tau2, sl**2 + tau2
    c = math.sqrt(2 * beta2 + vw + vl)
    t, e = (mw - ml) / c, eps / c
    if draw:
        den = norm.cdf(e - t) - norm.cdf(-e - t)
        v = (norm.pdf(-e - t) - norm.pdf(e - t)) / den
        w = v**2 + ((e - t) * norm.pdf(e - t) + (e + t) * norm.pdf(e + t)) / den
    else:
        v = norm.pdf(t - e) / norm.cdf(t - e)
        w = v * (v + t - e)
    return (
        (mw + vw * v / c, math.sqrt(vw * (1 - vw * w / c**2))),
        (ml - vl * v / c, math.sqrt(vl * (1 - vl * w / c**2))),
    )


def test_default_settings_follow_gifgif_update_equations():
    rng = np.random.default_rng(0)
    ids = ["a", "b", "c", "d"]
    rows, ref = [], {g: (25.0, 25 / 3) for g in ids}
    eps = gifgif_draw_margin()
    for _ in range(60):
        left, right = rng.choice(ids, size=2, replace=False)
        choice = rng.choice(["left", "right", "neither"])
        rows.append(f"surprise,{left},{right},{choice}")
        if choice == "right":
            ref[right], ref[left] = _gifgif_update(ref[right], ref[left], False, eps)
        else:
            ref[left], ref[right] = _gifgif_update(ref[left], ref[right], choice == "neither", eps)
    got = rate_votes(parse_votes(rows))
    i = EMOTION_INDEX["surprise"]
    for g in ids:
        np.testing.assert_allclose(got[g][i], ref[g], rtol=1e-6)
    # the package's settings give other numbers (a smaller draw margin)
    pkg = rate_votes(parse_votes(rows), env=make_env("package"))
    assert not np.allclose(pkg["a"][i], got["a"][i], rtol=1e-4)


# The published dump's shape: header "metric", Giphy ids, left/right/neither, empty ids.
DUMP = """metric,left,right,choice
happiness,MazO89pt5NljG,10UUe8ZsLnaqwo,left
fear,3o7TKSjRrfIPjeiVyM,,right
sadness,MazO89pt5NljG,10UUe8ZsLnaqwo,neither
,MazO89pt5NljG,10UUe8ZsLnaqwo,left
anger,10UUe8ZsLnaqwo,MazO89pt5NljG,right
joy,MazO89pt5NljG,10UUe8ZsLnaqwo,left
fear,,10UUe8ZsLnaqwo,left
amusement,MazO89pt5NljG,10UUe8ZsLnaqwo
"""


def test_published_dump_format_rows_skipped_with_summary(tmp_path):
    p = tmp_path / "gifgif_votes.csv"
    p.write_text(DUMP)
    dump = rate_vote_dump(p, progress=False)
    assert dump.n_votes == 3 and dump.draws == 1
    assert dump.votes_per_emotion["happiness"] == 1 and dump.votes_per_emotion["sadness"] == 1
    assert dump.voted == {"MazO89pt5NljG", "10UUe8ZsLnaqwo"}
    assert dump.skipped.counts == {
        "empty GIF id": 2,
        "unknown emotion": 2,
        "wrong column count": 1,
    }
    assert dump.skipped.first_lines["empty GIF id"] == [3, 8]
    summary = dump.skipped.summary()
    assert summary.startswith("5 rows skipped: ") and "2 empty GIF id (lines 3, 8)" in summary
    # the same scores as the good rows alone
    good = [DUMP.splitlines()[i] for i in (1, 3, 5)]
    ref = rate_votes(parse_votes(good))
    for g in ref:
        np.testing.assert_allclose(dump.scores[g], ref[g], rtol=1e-12)
    # left/right/neither: the left GIF won happiness; the right one won anger
    m = dump.scores["MazO89pt5NljG"]
    assert m[EMOTION_INDEX["happiness"], 0] > MU0 and m[EMOTION_INDEX["anger"], 0] > MU0
    # strict mode stops at the first bad row, naming it
    with pytest.raises(VoteError, match=r"gifgif_votes\.csv:3: empty GIF id in column right"):
        rate_vote_dump(p, strict=True, progress=False)
    skipped = SkippedRows()
    assert len(parse_votes(DUMP.splitlines(), skipped=skipped)) == 3 and skipped.total == 5
    # a file without any vote is an error naming it
    (tmp_path / "bad.csv").write_text("metric,left,right,choice\nfear,,x,left\n")
    with pytest.raises(VoteError, match=r"bad\.csv: no vote in the file \(1 rows skipped"):
        rate_vote_dump(tmp_path / "bad.csv", progress=False)


def test_progress_bar_counts_the_votes(tmp_path, capsys):
    p = tmp_path / "v.csv"
    p.write_text(DUMP)
    rate_vote_dump(p, progress=True)
    err = capsys.readouterr().err
    assert "TrueSkill" in err and "3/8" in err  # 3 votes rated of 8 data rows


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
    printed = capsys.readouterr().out
    assert rc == 0 and "3 GIFs (2 voted on), 7 votes (1 neither)" in printed
    assert "no row skipped" in printed and "settings gifgif" in printed
    ds = read_dataset(out.parent)
    assert ds.kind == "gifgif" and ds.ids() == ["a", "b", "never"]
    assert ds.records[0].tags == ("happy", "lol") and ds.records[1].tags == ()
    assert json.loads(out.read_text().splitlines()[0])["file"] == "gifs/a.gif"
    s = ds.scores()
    np.testing.assert_allclose(s[2], np.tile([MU0, SIGMA0], (17, 1)))  # never voted → prior
    ref = rate_votes(parse_votes((CSV + "fear,a,gone,left\n").splitlines()))
    np.testing.assert_allclose(s[0], ref["a"])
    summary = import_votes(tmp_path / "votes.csv", gifs, out)
    assert summary == {
        "votes": 7,
        "draws": 1,
        "gifs": 3,
        "gifs_voted": 2,
        "voted_without_file": 2,
        "rows_skipped": 0,
        "skipped": "no row skipped",
        "settings": "gifgif",
    }


def test_cli_error_exit(tmp_path, capsys):
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "a.gif").write_bytes(b"GIF89a")
    (tmp_path / "v.csv").write_text("fear,a,b,up\n")
    argv = [str(tmp_path / "v.csv"), "--gifs", str(tmp_path / "g"), "--out", str(tmp_path / "m")]
    with pytest.raises(SystemExit) as ei:
        main([*argv, "--strict"])
    assert ei.value.code == 2 and "v.csv:1: choice 'up'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as ei:
        main([*argv, "--no-progress"])
    err = capsys.readouterr().err
    assert ei.value.code == 2 and "no vote in the file (1 rows skipped: 1 unknown choice" in err
    assert not (tmp_path / "m").exists()


def test_tags_jsonl(tmp_path):
    from gifemo.data.votes import read_tags

    p = tmp_path / "t.jsonl"
    p.write_text('{"id": "a", "tags": ["x"]}\n{"id": "b", "tags": "y"}\n')
    with pytest.raises(VoteError, match=r"t\.jsonl:2"):
        read_tags(p)


def test_tags_jsonl_bad_json_names_the_line_and_one_line_is_a_row(tmp_path):
    """A JSON-lines tags file is read line by line whatever its length: a line that is not JSON
    is an error naming the file and line (not json's bare 'line 1 column 27'), and a file of one
    line is that one row (not an {id: tags} object with the keys 'id' and 'tags')."""
    from gifemo.data.votes import read_tags

    p = tmp_path / "t.jsonl"
    p.write_text('{"id": "a", "tags": ["x"]}\n{"id": "b", "tags": ["y"],}\n')
    with pytest.raises(VoteError, match=r"t\.jsonl:2: not valid JSON"):
        read_tags(p)
    p.write_text('{"id": "a", "tags": ["x", "y"]}\n')
    assert read_tags(p) == {"a": ["x", "y"]}
    p.write_text(json.dumps({"a": ["x"], "id": ["y"]}))  # an {id: tags} object stays one
    assert read_tags(p) == {"a": ["x"], "id": ["y"]}


def test_header_after_a_bom_or_comment_lines_is_the_header(tmp_path):
    """A dump saved with a UTF-8 byte-order mark (a spreadsheet's "CSV UTF-8") or with comment
    lines above the header: the header is still the header, not an 'unknown emotion' row that
    --strict stops at and the summary counts as skipped."""
    body = "happiness,a,b,left\nfear,b,a,neither\n"
    for name, text in (
        ("bom.csv", "\ufeffmetric,left,right,choice\n" + body),
        ("comment.csv", "# GIFGIF votes, 2015 snapshot\n\nmetric,left,right,choice\n" + body),
    ):
        p = tmp_path / name
        p.write_text(text, encoding="utf-8")
        dump = rate_vote_dump(p, strict=True, progress=False)
        assert dump.n_votes == 2 and dump.skipped.total == 0
        assert dump.scores["a"][EMOTION_INDEX["happiness"], 0] > MU0
