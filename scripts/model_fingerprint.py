"""Give a model file the fingerprint of its training scans, so inference warns about inputs unlike them.

    python -m scripts.model_fingerprint MODEL CONFIG [--source-root DIR] [--target-root DIR]

CONFIG is the run configuration the model was trained with (``Resources/configs/head_ct_mr.yaml``; the
phantom model's preset ``Resources/configs/phantom_demo.yaml``): its training subjects make the fingerprint,
its validation subjects set the scale (``sasan.domain``). The roots override the configuration's data folders
(``--source-root ~/.cache/sasan/head/CT``). Only the card changes: the tensors are written back bit for bit,
which is checked. Models exported since the fingerprint exists get it from ``sasan export`` already.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path

from sasan import bundle
from sasan.card import read_card
from sasan.config import load_config
from sasan.domain.from_run import domain_from_run

log = logging.getLogger("model_fingerprint")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("config", type=Path)
    parser.add_argument("--source-root", help="the source domain's data folder (default: the configuration's)")
    parser.add_argument("--target-root", help="the target domain's data folder (default: the configuration's)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    config = load_config(args.config) if not (args.source_root or args.target_root) else _with_roots(args)
    card = read_card(args.model)
    if [config.data.source.modality, config.data.target.modality] != card.modalities:
        raise SystemExit(f"{args.config} trains {config.data.source.modality} / {config.data.target.modality}; "
                         f"the model has {' / '.join(card.modalities)}")
    bundle.replace_card(args.model, dataclasses.replace(card, domain=domain_from_run(config)))
    print(args.model)


def _with_roots(args: argparse.Namespace):
    import yaml

    from sasan.config import config_from_dict

    mapping = yaml.safe_load(args.config.read_text(encoding="utf-8"))
    for key, root in (("source", args.source_root), ("target", args.target_root)):
        if root:
            mapping["data"][key]["root"] = str(Path(root).expanduser().resolve())
    return config_from_dict(mapping, base_dir=Path.cwd())


if __name__ == "__main__":
    main()
