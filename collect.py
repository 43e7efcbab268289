"""Collect candidate GIFs from Giphy: ``GIPHY_API_KEY=... python collect.py [overrides]``.

A thin Hydra wrapper around :func:`gifemo.apps.collect.collector.collect`; configuration in
``conf/collect.yaml`` + ``conf/collect/default.yaml``, documentation in ``docs/collecting.md``.
The API key comes only from the environment variable ``GIPHY_API_KEY``.
"""

from __future__ import annotations

import os
import sys

import hydra
from omegaconf import DictConfig, OmegaConf

from gifemo.apps.collect.collector import CollectOptions, collect


@hydra.main(config_path="conf", config_name="collect", version_base="1.3")
def main(cfg: DictConfig) -> None:
    opts = CollectOptions.from_mapping(OmegaConf.to_container(cfg.collect, resolve=True))  # type: ignore[arg-type]
    key = os.environ.get("GIPHY_API_KEY", "")
    if not key:
        sys.exit("collect.py: set the environment variable GIPHY_API_KEY (your Giphy API key)")
    print(collect(opts, api_key=key).summary())


if __name__ == "__main__":
    main()
