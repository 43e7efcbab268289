"""Active re-ranking and the screening simulator (gifemo.active)."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest

from gifemo.active import ActiveReranker, Reranker, StaticReranker, class_mean_targets
from gifemo.active.simdata import WorldSpec, make_screening_data
from gifemo.active.simulate import Oracle, screen, simulate, static_queues
from gifemo.emotions import EMOTIONS
from gifemo.eval.metrics import n_tilde, precision_at_recall
from gifemo.models.estimators import MTLRegressor
from gifemo.models.penalties import ClusteredMTL


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small matrices: one torch thread (as run_experiment uses) avoids thread-sync overhead."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


TINY = WorldSpec(n_train=300, n_population=1200, n_all=120, n_p=8, d_visual=16)


@pytest.fixture(scope="module")
def world():
    return make_screening_data(TINY, seed=0)


@pytest.fixture(scope="module")
def fitted(world):
    est = MTLRegressor(ClusteredMTL, rho1=3.0, rho2=0.3, k=2, tol=1e-4)
    return est.fit(world.X_train, world.Y_train, world.mask_train)


def test_generated_world_is_tag_search_and_shifted(world):
    s = world.summary()
    assert s["n_p"] == 8 and len(world.candidates) == 17
    assert all(0 < c <= TINY.n_all for c in s["candidates_per_emotion"])
    # every candidate of emotion i carries one of i's top tags (tag search), rates are moderate
    assert 0.1 < s["positive_rate_mean"] < 0.45
    assert world.truth.shape == (len(world.pool_ids), 17)
    again = make_screening_data(TINY, seed=0)
    assert np.array_equal(again.X_pool, world.X_pool) and again.pool_ids == world.pool_ids


def test_simulated_n_tilde_equals_naive_loop_for_a_fixed_order(world, fitted):
    run = simulate(world, "static", estimator=fitted)
    scores = fitted.predict(world.X_pool)
    for i, e in enumerate(EMOTIONS):
        rows = world.candidates[i]
        order = sorted(range(rows.size), key=lambda j: (-scores[rows[j], i], j))  # stable ties
        found, count = 0, None
        for n, j in enumerate(order, start=1):
            found += bool(world.truth[rows[j], i])
            if found == world.n_p:
                count = n
                break
        if count is None:
            assert math.isnan(run.n_tilde[e])
        else:
            assert run.n_tilde[e] == count
        assert run.checked[e] == [world.pool_ids[rows[j]] for j in order[: len(run.checked[e])]]


def test_static_reproduces_the_training_codes_n_tilde(world, fitted):
    """Ñ of eval.metrics (what train.py reports) at recall N_p/N_all, with the pool of emotion i
    as its test set, equals the simulator's count at the matching quota ⌈r·P⌉, scaled by
    N_p/⌈r·P⌉ (exact: the scores have no ties)."""
    scores = fitted.predict(world.X_pool)
    r = 3000 / 50000
    for i, e in enumerate(EMOTIONS):
        rows = world.candidates[i]
        pos = world.truth[rows, i]
        if pos.sum() == 0:
            continue
        need = math.ceil(r * pos.sum() - 1e-9)
        world_i = copy.copy(world)
        world_i.n_p = need
        run = simulate(world_i, "static", estimator=fitted)
        reported = n_tilde(precision_at_recall(scores[rows, i], pos, r), n_p=3000)
        assert reported == pytest.approx(3000 * run.n_tilde[e] / need, rel=1e-12)


@pytest.mark.parametrize("strategy", ["unsorted", "static", "active"])
def test_unchecked_labels_do_not_influence_the_order(world, fitted, strategy):
    world = copy.copy(world)  # short queues: a few re-rankings suffice
    world.candidates, world.n_p = tuple(c[:40] for c in world.candidates), 4
    first = simulate(world, strategy, estimator=copy.deepcopy(fitted), k=5, seed=1)
    perturbed = copy.copy(world)
    truth = ~world.truth  # flip every label ...
    row = {g: j for j, g in enumerate(world.pool_ids)}
    for i, e in enumerate(EMOTIONS):  # ... except the checked ones
        for g in first.checked[e]:
            truth[row[g], i] = world.truth[row[g], i]
    perturbed.truth = truth
    second = simulate(perturbed, strategy, estimator=copy.deepcopy(fitted), k=5, seed=1)
    assert second.checked == first.checked
    if strategy == "active":
        assert first.n_refits > 0


def test_active_reranker_follows_the_protocol_and_maps_targets(world, fitted):
    rr = ActiveReranker(
        copy.deepcopy(fitted), world.X_train, world.Y_train, world.mask_train,
        world.pool_ids, world.X_pool,
    )  # fmt: skip
    assert isinstance(rr, Reranker) and isinstance(StaticReranker(), Reranker)
    ids = [world.pool_ids[j] for j in world.candidates[0][:6]]
    labels = {"amusement": {ids[0]: True, ids[1]: False}, "anger": {ids[0]: False}}
    X, Y, M = rr.training_problem(labels)
    y_pos, y_neg = class_mean_targets(world.Y_train, world.mask_train)
    n = world.X_train.shape[0]
    assert X.shape[0] == n + 2 and M[n:].sum() == 3
    assert Y[n, 0] == y_pos[0] and Y[n, 1] == y_neg[1] and Y[n + 1, 0] == y_neg[0]
    assert np.array_equal(X[n], world.X_pool[world.pool_ids.index(ids[0])])
    out = rr.rerank(labels, {"amusement": ids[2:], "fear": ids})
    assert sorted(out["amusement"]) == sorted(ids[2:]) and sorted(out["fear"]) == sorted(ids)
    s = rr.scores("fear", out["fear"])
    assert np.all(np.diff(s) <= 0)  # highest predicted first
    assert rr.version == 1
    with pytest.raises(KeyError, match="no features"):
        rr.rerank({}, {"fear": ["not-a-candidate"]})


def test_class_mean_targets_by_hand():
    Y = np.array([[30.0, 10.0], [20.0, 26.0], [28.0, 0.0]])
    M = np.array([[True, True], [True, True], [False, True]])
    y_pos, y_neg = class_mean_targets(Y, M)
    assert y_pos.tolist() == [30.0, 26.0] and y_neg.tolist() == [20.0, 5.0]


def test_class_mean_targets_ignore_unobserved_nan_entries(world, fitted):
    """Y may hold NaN outside the mask (fit_mtl's convention: mask defaults to isfinite(Y));
    the targets are means over the masked entries only, and a refit on them runs."""
    Y = np.array([[30.0, 10.0], [np.nan, 26.0], [28.0, np.nan]])
    M = np.isfinite(Y)
    y_pos, y_neg = class_mean_targets(Y, M)
    assert y_pos.tolist() == [29.0, 26.0] and y_neg.tolist() == [25.0 - 1.0, 10.0]
    Y_nan = world.Y_train.copy()
    M_nan = world.mask_train.copy()
    Y_nan[:5, 3], M_nan[:5, 3] = np.nan, False
    rr = ActiveReranker(copy.deepcopy(fitted), world.X_train, Y_nan, M_nan,
                        world.pool_ids, world.X_pool)  # fmt: skip
    assert np.isfinite(rr.targets[0]).all() and np.isfinite(rr.targets[1]).all()
    g = world.pool_ids[world.candidates[3][0]]
    rr.rerank({"contentment": {g: True}}, {"contentment": [world.pool_ids[0]]})
    assert rr.version == 1


def test_warm_refit_reaches_the_cold_solution(world, fitted):
    labels = {
        e: {world.pool_ids[j]: bool(world.truth[j, i]) for j in world.candidates[i][:5]}
        for i, e in enumerate(EMOTIONS)
    }
    problem = (world.X_train, world.Y_train, world.mask_train, world.pool_ids, world.X_pool)
    warm = ActiveReranker(copy.deepcopy(fitted), *problem, warm_start=True)
    cold = ActiveReranker(copy.deepcopy(fitted), *problem, warm_start=False)
    for rr in (warm, cold):
        rr.estimator.set_params(tol=1e-6)
        rr.refit(labels)
    W_warm, W_cold = warm.estimator.W_, cold.estimator.W_
    assert np.abs(W_warm - W_cold).max() <= 1e-4 * np.abs(W_cold).max()
    assert warm.estimator.objective_ == pytest.approx(cold.estimator.objective_, rel=1e-8)
    assert warm.estimator.n_iter_ <= cold.estimator.n_iter_


def test_label_weight_is_row_repetition(world, fitted):
    rr = ActiveReranker(copy.deepcopy(fitted), world.X_train, world.Y_train, world.mask_train,
                        world.pool_ids, world.X_pool, label_weight=3)  # fmt: skip
    X, _, M = rr.training_problem({"fear": {world.pool_ids[0]: True}})
    assert X.shape[0] == world.X_train.shape[0] + 3 and M[-3:, 7].all()
    with pytest.raises(ValueError, match="label_weight"):
        ActiveReranker(fitted, world.X_train, world.Y_train, world.mask_train,
                       world.pool_ids, world.X_pool, label_weight=0)  # fmt: skip


def test_screen_stops_at_quota_and_rejects_a_reranker_that_loses_ids():
    truth = np.array([[1, 0], [0, 1], [1, 1], [1, 0]], dtype=bool)
    ids = ["a", "b", "c", "d"]
    emotions = ("x", "y")
    checked, rest, _ = screen({"x": ids, "y": ids}, Oracle(truth, ids, emotions), 2)
    assert checked == {"x": ["a", "b", "c"], "y": ["a", "b", "c"]}
    assert rest == {"x": ["d"], "y": ["d"]}

    class Lossy:
        def rerank(self, labels, remaining):
            return {e: list(v)[1:] for e, v in remaining.items()}

    with pytest.raises(ValueError, match="remaining ids"):
        screen({"x": ids}, Oracle(truth[:, :1], ids, ("x",)), 2, reranker=Lossy(), k=1)


def test_static_queues_order_by_score(world, fitted):
    q = static_queues(world, fitted.predict(world.X_pool))
    assert set(q) == set(EMOTIONS)
    assert all(len(q[e]) == world.candidates[i].size for i, e in enumerate(EMOTIONS))


def _write_folder(root, rows):
    (root / "gifs").mkdir(parents=True)
    for r in rows:
        (root / r["file"]).write_bytes(b"GIF89a")  # presence only: tag features never decode
    (root / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_load_reranker_from_a_saved_tag_model(tmp_path):
    """A run directory as train.py writes it (model/ + run.json), tag features: the reranker
    starts from the saved model's scores and refits with the run's estimator and CV choice."""
    from gifemo.active import load_reranker
    from gifemo.data.tags import TagDictionary
    from gifemo.features.datamodule import feature_blocks
    from gifemo.features.normalise import FeatureNormaliser
    from gifemo.models.saved import load_model, save_model

    rng = np.random.default_rng(0)
    vocab = ["happy", "sad", "angry", "cute", "lol", "wow", "cat", "dog"]
    train_rows, cand_rows = [], []
    for n in range(60):
        tags = [str(t) for t in rng.choice(vocab, size=2, replace=False)]
        mu = rng.uniform(15, 40, size=17) + 6 * ("happy" in tags)
        scores = {e: [float(m), 2.0] for e, m in zip(EMOTIONS, mu, strict=True)}
        train_rows.append({"id": f"t{n}", "file": f"gifs/t{n}.gif", "tags": tags, "scores": scores})
    for n in range(20):
        tags = [str(t) for t in rng.choice(vocab, size=2, replace=False)]
        cand_rows.append({"id": f"c{n}", "file": f"gifs/c{n}.gif", "tags": tags})
    _write_folder(tmp_path / "train", train_rows)
    _write_folder(tmp_path / "cands", cand_rows)

    tags_tr = [r["tags"] for r in train_rows]
    dictionary = TagDictionary().fit(tags_tr)
    raw, blocks = feature_blocks("tag", None, tags_tr, dictionary)
    norm = FeatureNormaliser("l2").fit(raw, blocks)
    Y = np.array([[s[0] - 3 * s[1] for s in r["scores"].values()] for r in train_rows])
    est = MTLRegressor(ClusteredMTL, rho1=3.0, rho2=0.3, k=2, tol=1e-8)
    est.fit(norm.transform(raw), Y, np.ones_like(Y, dtype=bool))
    penalty = {"_target_": "gifemo.models.penalties.ClusteredMTL", "_partial_": True}
    node = {"_target_": "gifemo.models.estimators.MTLRegressor", "tol": 1e-8, "penalty": penalty}
    run = tmp_path / "run"
    save_model(run / "model", estimator=est, features="tag", normaliser=norm,
               dictionary=dictionary, config={"model": {"estimator": node}})  # fmt: skip
    (run / "run.json").write_text(json.dumps({"params": {"rho1": 3.0, "rho2": 0.3, "k": 2}}))

    rr = load_reranker(run, None, candidates_data=tmp_path / "cands", train_data=tmp_path / "train")
    saved = load_model(run / "model").score(None, [r["tags"] for r in cand_rows])
    ids = [r["id"] for r in cand_rows]
    assert np.allclose(rr.scores("fear", ids), saved[:, 7])
    assert rr.estimator.get_params()["rho1"] == 3.0 and rr.estimator.k_ == 2
    out = rr.rerank({"fear": {"c0": True, "c1": False}}, {"fear": ids[2:]})
    assert sorted(out["fear"]) == sorted(ids[2:]) and rr.version == 1
    # the first refit starts at the saved optimum: with no new label it would stay there
    assert rr.estimator.W_.shape == est.W_.shape
    with pytest.raises(ValueError, match="candidates_data"):
        load_reranker(run, None, train_data=tmp_path / "train")
