"""Every option of every config group composes, and every `_target_` in it instantiates."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from gifemo.data.synthetic import generate

CONF = Path(__file__).resolve().parents[1] / "conf"
# Groups of train.py chosen on the command line as `group=option` (its defaults list; `hydra` is
# Hydra's own settings). Other primary configs (collect.yaml) have groups of their own.
GROUPS = sorted(
    key
    for entry in OmegaConf.load(CONF / "train.yaml").defaults
    if not isinstance(entry, str)
    for key in entry
    if key != "hydra"
)


def options(group: str) -> list[str]:
    """Every option of a group, nested ones as `sub/name` (conf/experiment/table2/cmtl.yaml).
    Files named `_*.yaml` are bases that options list in their `defaults:`, not options."""
    root = CONF / group
    return sorted(
        p.relative_to(root).with_suffix("").as_posix()
        for p in root.rglob("*.yaml")
        if not p.name.startswith("_")
    )


# The full-size C3D (80 M parameters, random init) takes seconds to build: slow suite only.
SLOW_OPTIONS = {("backbone", "c3d")}
ALL_OPTIONS = [
    pytest.param(g, o, id=f"{g}={o}", marks=[pytest.mark.slow] if (g, o) in SLOW_OPTIONS else [])
    for g in GROUPS
    for o in options(g)
]


def base_overrides(data_dir: Path, out_dir: Path) -> list[str]:
    """Small and local: tiny generated data and a tiny C3D, everything under tmp dirs."""
    return [
        f"paths.data_dir={data_dir}",
        f"paths.output_dir={out_dir}",
        "data.synthetic_size=tiny",
        "backbone=c3d_tiny",
    ]


def compose_train(overrides: list[str], *, hydra_node: bool = False) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=overrides, return_hydra_config=hydra_node)


def targets(node: Any, path: str = "") -> list[tuple[str, DictConfig]]:
    """The outermost nodes holding a `_target_` (their children are built with them)."""
    if isinstance(node, DictConfig):
        if "_target_" in node:
            return [(path, node)]
        found = []
        for key in node:
            found += targets(node._get_node(key), f"{path}.{key}" if path else str(key))
        return found
    if OmegaConf.is_list(node):
        found = []
        for i, item in enumerate(node):
            found += targets(item, f"{path}[{i}]")
        return found
    return []


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One data dir per test session, shared with tests/test_train.py (generated once)."""
    path = tmp_path_factory.getbasetemp() / "gifemo-e2-data"
    path.mkdir(exist_ok=True)
    return path


def test_groups_are_complete() -> None:
    want = {
        "data",
        "backbone",
        "extract",
        "features",
        "model",
        "trainer",
        "logger",
        "hparams_search",
        "experiment",
        "paths",
        "optimizer",
        "callbacks",
    }
    assert want <= set(GROUPS), f"missing groups: {want - set(GROUPS)}"
    assert {"lasso", "trace", "cmtl", "gp", "unsorted", "ridge"} <= set(options("model"))
    assert {"visual", "tag", "visual_tag"} == set(options("features"))
    assert {"wandb", "csv", "none"} <= set(options("logger"))
    assert {"table2", "table2/cmtl", "table2/unsorted"} <= set(options("experiment"))


@pytest.mark.parametrize(("group", "option"), ALL_OPTIONS)
def test_option_composes_and_instantiates(
    group: str, option: str, data_dir: Path, tmp_path: Path
) -> None:
    overrides = base_overrides(data_dir, tmp_path)
    if group == "backbone":
        overrides.remove("backbone=c3d_tiny")
    cfg = compose_train([*overrides, f"{group}={option}"], hydra_node=True)
    assert cfg.hydra.runtime.choices[group] == option
    hydra_cfg = cfg.hydra
    with open_dict(cfg):
        del cfg["hydra"]
    OmegaConf.resolve(cfg)  # every interpolation resolves
    # A group's option can only change its own subtree; experiments and searches change anything.
    scope = cfg if group in ("experiment", "hparams_search") else cfg.get(group)
    built = {}
    for path, node in targets(scope, "" if scope is cfg else group):
        if path == "trainer" and node.accelerator == "gpu" and not torch.cuda.is_available():
            continue  # Lightning refuses accelerator=gpu without CUDA; composing is checked
        if path == "data" and not node.generate:  # real data: no silent generated fall-back
            with pytest.raises(Exception, match=rf"data\.root is not set: data={node.kind} reads"):
                instantiate(node)
            part = {"gifgif": "gifgif", "gifgif_plus": "gifgif_plus"}.get(node.kind, "candidates")
            root = generate(data_dir / "synthetic", size="tiny", parts=(part,)) / part
            built[path] = instantiate(
                node, root=str(root / "gifs" if node.kind == "folder" else root)
            )
            continue
        built[path] = instantiate(node)
        assert built[path] is not None, path
    # the group's own object(s) are among what was built
    if group in ("data", "backbone") or (group == "trainer" and torch.cuda.is_available()):
        assert group in built
    if group == "model":
        # every model names its runner by _target_ (a partial called with the config)
        assert callable(built["model.runner"]) and built["model.runner"].args == ()
        runner = built["model.runner"].func
        want = {"finetune": "finetune", "svm": "svm"}.get(option, "features")
        assert runner.__module__ == f"gifemo.runners.{want}" and runner.__name__ == "run"
        if option != "finetune":
            assert hasattr(built["model.estimator"], "fit")
    if group == "logger":
        assert ("logger" in built) == (option != "none")
    if group == "hparams_search":
        assert hydra_cfg.sweeper._target_.endswith("OptunaSweeper")
        assert hydra_cfg.mode == RunMode.MULTIRUN


def open_dict(cfg: DictConfig) -> Any:
    from omegaconf import open_dict as _open_dict

    return _open_dict(cfg)


def test_trainer_group_maps_onto_lightning_trainer(data_dir: Path, tmp_path: Path) -> None:
    cfg = compose_train(
        [
            *base_overrides(data_dir, tmp_path),
            "trainer=cpu",
            "trainer.max_epochs=3",
            "trainer.max_steps=7",
            "trainer.limit_val_batches=2",
        ]
    )
    trainer = instantiate(cfg.trainer)
    assert trainer.max_epochs == 3 and trainer.max_steps == 7
    assert trainer.limit_val_batches == 2
    assert type(trainer.accelerator).__name__ == "CPUAccelerator"
    assert cfg.ckpt_path is None and cfg.seed == 0


def test_table2_experiment_lists_the_papers_methods(data_dir: Path, tmp_path: Path) -> None:
    cfg = compose_train([*base_overrides(data_dir, tmp_path), "experiment=table2"], hydra_node=True)
    assert cfg.hydra.mode == RunMode.MULTIRUN
    methods = str(cfg.hydra.sweeper.params["+experiment/table2@_global_"]).split(",")
    assert methods == ["unsorted", "lasso_visual", "lasso_tag", "lasso", "gp", "trace", "cmtl"]
    expect = {
        "unsorted": ("unsorted", "visual+tag"),
        "lasso_visual": ("lasso", "visual"),
        "lasso_tag": ("lasso", "tag"),
        "lasso": ("lasso", "visual+tag"),
        "gp": ("gp", "visual+tag"),
        "trace": ("trace", "visual+tag"),
        "cmtl": ("cmtl", "visual+tag"),
    }
    for m in methods:
        job = compose_train(
            [
                *base_overrides(data_dir, tmp_path),
                "experiment=table2",
                f"+experiment/table2@_global_={m}",
            ]
        )
        assert (job.model.name, job.features.name) == expect[m]


def test_list_valued_hyperparameters_form_the_cv_grid(data_dir: Path, tmp_path: Path) -> None:
    from gifemo.runners.features import param_grid

    cfg = compose_train(
        [
            *base_overrides(data_dir, tmp_path),
            "model=cmtl",
            "model.rho=[1,2]",
            "model.rho2=5",
            "model.k=auto",
        ]
    )
    assert param_grid(cfg) == {"rho1": [1, 2], "rho2": 5, "k": "auto"}
    cfg = compose_train([*base_overrides(data_dir, tmp_path), "model=lasso", "model.rho=0.5"])
    assert param_grid(cfg) == {"rho": 0.5}


def test_model_svm_builds_the_binary_relevance_svm_of_its_config(
    data_dir: Path, tmp_path: Path
) -> None:
    from gifemo.models.svm import BinaryRelevanceSVM

    cfg = compose_train(
        [
            *base_overrides(data_dir, tmp_path),
            "model=svm",
            "data=synthetic",
            "data.kind=gifgif_plus",
            "model.estimator.C=0.25",
        ]
    )
    svm = instantiate(cfg.model.estimator, random_state=cfg.seed)
    assert isinstance(svm, BinaryRelevanceSVM)
    assert svm.get_params() == {
        "C": 0.25, "class_weight": "balanced", "loss": "squared_hinge", "max_iter": 10000,
        "tol": 1e-4, "random_state": 0,
    }  # fmt: skip
    assert cfg.model.test_fraction == 0.2 and cfg.data.kind == "gifgif_plus"


def test_model_finetune_builds_optimizer_and_callbacks_from_config(
    data_dir: Path, tmp_path: Path
) -> None:
    """The optimiser and ModelCheckpoint/EarlyStopping come from their groups' `_target_`s; a
    group option or a key override changes what is built; callbacks=none builds none."""
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

    from gifemo.finetune.callbacks import FinalCheckpoint
    from gifemo.runners.finetune import build_callbacks

    base = [*base_overrides(data_dir, tmp_path), "model=finetune", "data.kind=gifgif_plus"]
    cfg = compose_train([*base, "callbacks.early_stopping.patience=2"])
    checkpoint, final, stopping = build_callbacks(cfg)
    assert isinstance(checkpoint, ModelCheckpoint) and isinstance(stopping, EarlyStopping)
    assert isinstance(final, FinalCheckpoint) and final.path == tmp_path / "checkpoints/last.ckpt"
    assert Path(checkpoint.dirpath) == tmp_path / "checkpoints"
    assert (checkpoint.monitor, checkpoint.mode, checkpoint.save_last) == ("val/mAP", "max", True)
    assert (stopping.monitor, stopping.patience) == ("val/mAP", 2)
    params = [torch.nn.Parameter(torch.zeros(2))]
    assert type(instantiate(cfg.optimizer)(params)) is torch.optim.AdamW
    sgd = compose_train([*base, "optimizer=sgd", "callbacks=none"])
    assert build_callbacks(sgd) == []
    opt = instantiate(sgd.optimizer)(params, lr=0.1)
    assert type(opt) is torch.optim.SGD and opt.defaults["momentum"] == 0.9
    # the tiny experiment drops early stopping only
    tiny = compose_train([*base_overrides(data_dir, tmp_path), "experiment=finetune_tiny"])
    assert [type(c) for c in build_callbacks(tiny)] == [ModelCheckpoint, FinalCheckpoint]


def test_finetune_takes_the_clip_rule_from_the_clips_group(data_dir: Path, tmp_path: Path) -> None:
    """`train.py model=finetune clips=fps clips.fps=5`: the fine-tuning data module evaluates
    on FpsClips(5) and trains on RandomFpsClip(5); `clips=all` keeps the paper's rule."""
    from gifemo.backbones.c3d import c3d_preprocessing
    from gifemo.data.clips import AllClips, FpsClips, RandomFpsClip
    from gifemo.runners.finetune import build_datamodule

    base = [*base_overrides(data_dir, tmp_path), "model=finetune", "data.kind=gifgif_plus"]
    records, labels = [object()] * 3, np.zeros((3, 17), bool)
    split = {"train": np.arange(2), "val": np.arange(2, 3), "test": np.arange(2, 3)}
    for overrides, rule, train in (
        (["clips=fps", "clips.fps=5"], FpsClips, RandomFpsClip),
        ([], AllClips, None),
    ):
        cfg = compose_train([*base, *overrides])
        dm = build_datamodule(cfg, records, labels, split, c3d_preprocessing())
        assert type(dm.clips) is rule
        if train is not None:
            assert dm.clips.fps == 5.0 and isinstance(dm.dataset("train").sampler, train)


def test_bases_are_shared_not_copied() -> None:
    """Each option file holds only what differs from its base (no estimator/data block copies)."""
    for name in ("lasso", "ridge", "trace", "cmtl"):
        own = OmegaConf.load(CONF / "model" / f"{name}.yaml")
        assert list(own.defaults) == ["_mtl"]
        assert set(own.estimator) <= {"penalty"}
        assert set(own.estimator.penalty) == {"_target_"}
    for name in ("visual", "tag", "visual_tag"):
        own = OmegaConf.load(CONF / "features" / f"{name}.yaml")
        assert list(own.defaults) == ["_base"] and set(own) == {"defaults", "name"}
    for name in options("data"):
        own = OmegaConf.load(CONF / "data" / f"{name}.yaml")
        extra = {"generate"} if name == "synthetic" else set()  # only it generates data
        assert list(own.defaults) == ["_base"] and set(own) == {"defaults", "kind", *extra}


def test_extract_config_shares_the_run_directories_of_train() -> None:
    assert "hydra" not in OmegaConf.load(CONF / "extract.yaml")  # no copy of hydra/dirs.yaml
    dirs = OmegaConf.to_container(OmegaConf.load(CONF / "hydra" / "dirs.yaml"), resolve=False)
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        ex = compose("extract", return_hydra_config=True)
        tr = compose("train", return_hydra_config=True)
    for cfg in (ex, tr):  # the same (unresolved) templates; ${task_name} differs
        h = OmegaConf.to_container(cfg.hydra, resolve=False)
        assert h["run"]["dir"] == dirs["run"]["dir"] and h["sweep"] == dirs["sweep"]
        assert h["job"]["chdir"] is False
    assert not ex.hydra.callbacks and set(tr.hydra.callbacks) == {"sweep_summary", "scrub_secrets"}


def test_every_config_file_is_documented() -> None:
    """Each YAML file of the runner's groups opens with a comment (what it is, how to use it)."""
    mine = [
        "train.yaml",
        "hydra",
        "model",
        "features",
        "trainer",
        "logger",
        "hparams_search",
        "experiment",
        "optimizer",
        "callbacks",
        "data",
    ]
    files = [CONF / "train.yaml"] + [f for d in mine[1:] for f in (CONF / d).rglob("*.yaml")]
    undocumented = [
        str(f.relative_to(CONF)) for f in files if not f.read_text().lstrip().startswith("#")
    ]
    assert not undocumented, f"config files without a leading comment: {undocumented}"
