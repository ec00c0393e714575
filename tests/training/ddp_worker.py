"""One rank of a two-process gloo job, started by test_distributed.py as a script (not imported).

    python ddp_worker.py equivalence OUT.json
    python ddp_worker.py early-stop DATA_DIR RUN_DIR OUT.json

The environment carries RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR and
MASTER_PORT, as torchrun would set them.

equivalence: for several losses, in float64, the distributed step (this rank's half of the
global batch, gathered; DDP; batch-norm over the global batch) against one process on the whole
batch, computed here too: the loss, every parameter's gradient, and the parameters after three
Adam steps. Writes the largest differences and a digest of the parameters.
early-stop: trains with validation that never improves (patched on rank 0), so rank 0 decides to
stop after ``patience`` epochs and every rank must leave the loop.
"""

from __future__ import annotations

import copy
import hashlib
import json
import sys

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from siamese.contracts.spec import InputSpec
from siamese.training.batches import flatten_views
from siamese.training.distributed import Ranks, ranks_from_environment, setup, teardown
from siamese.training.losses import create_criterion
from siamese.training.losses.instance import InstanceLoss
from siamese.training.samplers import PKSampler
from siamese.training.step import TrainingForward, step_loss
from siamese.training.sync_batchnorm import synchronise_batch_norm
from siamese.training.towers import create_tower

#: (name, loss, miner, sampler, instance weight); P=2 identities per rank × K=3 images.
CASES = [
    ("multi-similarity", "multi-similarity", None, "pk", 0.0),
    ("triplet-batch-hard", "triplet", "batch-hard", "pk", 0.0),
    ("contrastive-hard-pairs", "contrastive", "hard-pairs", "pk", 0.0),
    ("contrastive-random-pairs", "contrastive", None, "random", 0.0),
    ("triplet-random", "triplet", None, "random", 0.0),
    ("multi-similarity-instance", "multi-similarity", None, "pk", 0.5),
]
P, K, IDENTITIES, IMAGES_EACH, STEPS = 2, 3, 8, 5, 3


def _global_batches(case: tuple, ranks: Ranks, pixels: torch.Tensor, labels: np.ndarray):
    """Per step: (this rank's indices, the global batch's indices as one process draws them)."""
    _, loss, _, sampler, _ = case
    if sampler == "pk":
        mine = PKSampler(labels, P, K, STEPS, seed=7, rank=ranks.rank, world=ranks.world)
        whole = PKSampler(labels, ranks.world * P, K, STEPS, seed=7)
        return list(zip(mine, whole))
    from siamese.training.samplers import RandomTupleSampler

    kind = "pairs" if loss == "contrastive" else "triplets"
    mine = RandomTupleSampler(labels, kind, 4, STEPS, seed=7, rank=ranks.rank, world=ranks.world)
    whole = RandomTupleSampler(labels, kind, ranks.world * 4, STEPS, seed=7)
    return list(zip(mine, whole))


def _inputs(pixels, labels, indices, views: int):
    images = pixels[indices]
    if views == 2:  # two "views": the image and a fixed perturbation of it
        images = torch.stack([images, images.flip(-1)], dim=1)
    batch, lab, instances = flatten_views(images, torch.as_tensor(labels[indices]))
    return batch, lab, instances


def equivalence(out: str) -> None:
    ranks = ranks_from_environment()
    _, joined = setup(ranks, torch.device("cpu"), threads=1)
    torch.set_default_dtype(torch.float64)
    spec = InputSpec.create(16, 1)
    generator = torch.Generator().manual_seed(0)
    pixels = torch.randn(IDENTITIES * IMAGES_EACH, 1, 16, 16, generator=generator)
    labels = np.repeat(np.arange(IDENTITIES), IMAGES_EACH).astype(np.int64)
    report = {}
    for case in CASES:
        name, loss_name, miner, sampler, weight = case
        torch.manual_seed(1)
        tower = create_tower(
            "conv", spec, {"widths": [4, 8], "grid": 2, "embedding_dim": 6, "batch_norm": True}
        )
        instance = (
            InstanceLoss(weight, in_features=tower.head.linear.in_features) if weight else None
        )
        criterion = create_criterion(
            loss_name, margin=None, normalized=True, sampler=sampler, miner=miner
        )
        reference = TrainingForward(copy.deepcopy(tower), copy.deepcopy(instance))
        ranked = TrainingForward(synchronise_batch_norm(tower, torch.device("cpu")), instance)
        model = DistributedDataParallel(ranked)
        optimisers = [torch.optim.Adam(m.parameters(), lr=0.01) for m in (reference, ranked)]
        views = 2 if weight else 1
        worst = {"loss": 0.0, "grad": 0.0, "grad_scale": 0.0, "param": 0.0}
        for step, (mine, whole) in enumerate(_global_batches(case, ranks, pixels, labels)):
            losses, grads = [], []
            for forward, indices, world, optimiser in (
                (reference, whole, Ranks(), optimisers[0]),
                (model, mine, ranks, optimisers[1]),
            ):
                batch, lab, instances = _inputs(pixels, labels, indices, views)
                module = forward.module if forward is model else forward
                loss = step_loss(
                    forward, criterion, module.instance_loss, batch, lab, instances, world
                )
                optimiser.zero_grad()
                loss.backward()
                losses.append(loss.item())
                grads.append([p.grad.clone() for p in module.parameters()])
                optimiser.step()
            worst["loss"] = max(worst["loss"], abs(losses[0] - losses[1]))
            for ref, got in zip(*grads):
                worst["grad"] = max(worst["grad"], float((ref - got).abs().max()))
                worst["grad_scale"] = max(worst["grad_scale"], float(ref.abs().max()))
            if step == 0:
                worst["first_loss"] = losses[0]
                # what plain DDP would compute: the loss of this rank's half alone
                batch, lab, instances = _inputs(pixels, labels, mine, views)
                alone = step_loss(
                    reference, criterion, reference.instance_loss, batch, lab, instances, Ranks()
                )
                worst["local_loss_gap"] = abs(alone.item() - losses[0])
        for ref, got in zip(reference.parameters(), ranked.parameters()):
            worst["param"] = max(worst["param"], float((ref - got).abs().max()))
        digest = hashlib.sha256()
        for p in ranked.parameters():
            digest.update(p.detach().numpy().tobytes())
        worst["digest"] = digest.hexdigest()
        report[name] = worst
    del model, ranked, reference, optimisers  # the DDP wrapper holds the group: drop it first
    teardown(joined)
    with open(out, "w") as handle:
        json.dump(report, handle)


def early_stop(data_dir: str, run_dir: str, out: str) -> None:
    from siamese.training import TrainConfig, trainer

    never_better = {
        "recall_at_1": 0.5,
        "recall_at_5": 0.5,
        "map_at_r": 0.5,
        "roc_auc": 0.5,
        "eer": 0.5,
    }
    trainer.validation_metrics = lambda *args, **kwargs: dict(never_better)
    config = TrainConfig(
        data_dir=data_dir,
        out_dir=run_dir,
        image_size=24,
        widths=(4, 8),
        head_dim=8,
        epochs=20,
        steps_per_epoch=1,
        identities_per_batch=2,
        images_per_identity=2,
        val_fraction=0.25,
        patience=2,
        threads=1,
    )
    result = trainer.train(config)
    with open(out, "w") as handle:
        json.dump({"epochs": len(result.history), "stopped_early": result.stopped_early}, handle)


if __name__ == "__main__":
    if sys.argv[1] == "equivalence":
        equivalence(sys.argv[2])
    else:
        early_stop(*sys.argv[2:5])
