"""Run by ``torchrun`` in test_distributed: two adversarial steps, then each rank saves its weights."""
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sasan.training.distributed import DistributedContext  # noqa: E402
from sasan.training.trainer import Trainer  # noqa: E402
from training.tiny import tiny_config  # noqa: E402

out = Path(sys.argv[1])
torch.set_num_threads(1)
dist = DistributedContext.from_environment(torch.device("cpu"))
config = tiny_config(training={"pretrain_attention_steps": 0, "steps": 2, "segmenter_steps": 0})
trainer = Trainer(config, out / "run", dist=dist)
before = {k: v.clone() for k, v in trainer.nets.state_dict().items()}
trainer.fit()
torch.save({"before": before, "after": trainer.nets.state_dict()}, out / f"rank{dist.rank}.pt")
dist.close()
