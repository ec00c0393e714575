"""Training writes a complete, safely loadable run directory.

Resume, early stopping, determinism.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from siamese.contracts.spec import InputSpec, normalize_pixels
from siamese.core.errors import ConfigError, RunError
from siamese.data.images import to_tensor
from siamese.training import TrainConfig, load_run, train
from siamese.training.augment import build_augmentation
from siamese.training.batches import flatten_views, normalize_batch
from siamese.training.samplers import PKSampler


def tiny(data: Path, out: Path, **overrides) -> TrainConfig:
    base = {
        "data_dir": str(data),
        "out_dir": str(out),
        "image_size": 24,
        "widths": (4, 8),
        "head_dim": 8,
        "epochs": 2,
        "steps_per_epoch": 2,
        "identities_per_batch": 3,
        "images_per_identity": 2,
        "val_fraction": 0.25,
        "seed": 3,
    }
    return TrainConfig(**{**base, **overrides})


def test_run_directory_contents(trained_run: Path) -> None:
    for name in (
        "config.json",
        "tower.safetensors",
        "last.safetensors",
        "checkpoint.pt",
        "history.json",
        "loss.png",
    ):
        assert (trained_run / name).is_file(), name
    config = json.loads((trained_run / "config.json").read_text())
    assert config["tower"]["name"] == "conv" and config["tower"]["embedding_dim"] == 16
    assert config["input_spec"]["height"] == 32 and config["input_spec"]["channels"] == 1
    assert config["loss"] == {
        "name": "multi-similarity",
        "margin": 0.5,
        "miner": "builtin",
        "sampler": "pk",
    }
    assert set(config["data"]["val_identities"]).isdisjoint(config["data"]["train_identities"])
    assert "torch" in config["versions"]
    history = json.loads((trained_run / "history.json").read_text())
    assert [row["epoch"] for row in history["epochs"]] == [1, 2]
    for row in history["epochs"]:
        for key in ("val_recall_at_1", "val_recall_at_5", "val_map_at_r", "val_roc_auc", "val_eer"):
            assert key in row, key  # the best epoch's values: test_validation_figures.py
    assert history["metric"] == "map_at_r"
    assert (trained_run / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_load_run_rebuilds_the_tower(trained_run: Path) -> None:
    run = load_run(trained_run)
    assert not run.tower.training
    assert run.tower(torch.zeros(2, *run.spec.shape)).shape == (2, 16)


def test_the_kept_weights_carry_the_fitted_projection(tiny_dataset: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    run_dir = train(
        tiny(tiny_dataset, tmp_path / "features", embed_from="features", grid=2)
    ).run_dir
    saved = load_file(run_dir / "tower.safetensors")
    run = load_run(run_dir)
    assert (
        torch.count_nonzero(saved["projection.mean"]) > 0
    )  # fitted to the training images, not the initial zeros
    assert torch.equal(run.tower.projection.basis, saved["projection.basis"])
    basis = saved["projection.basis"]
    assert torch.allclose(
        basis.T @ basis, torch.eye(basis.shape[1]), atol=1e-4
    )  # orthonormal principal directions
    assert run.tower.backbone(torch.zeros(1, *run.spec.shape)).shape == (1, 8 * 2 * 2)
    config = json.loads((run_dir / "config.json").read_text())
    assert (
        config["tower"]["options"]["embed_from"] == "features"
        and config["tower"]["options"]["grid"] == 2
    )
    assert config["tower"]["normalized"]


def test_the_kept_projection_is_refitted_on_every_training_image(
    tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Epochs fit the projection on a sample; the kept epoch's is refitted on the full sample."""
    from siamese.data.image_folder import scan_image_folder
    from siamese.training import trainer
    from siamese.training.data import load_image_folder, split_identities
    from siamese.training.serving import _forward_all

    monkeypatch.setattr(trainer, "EPOCH_PROJECTION_SAMPLE", 4)  # fewer than the training images
    config = tiny(tiny_dataset, tmp_path / "refit", embed_from="features", grid=2)
    run = load_run(train(config).run_dir)
    data = load_image_folder(config.data_dir, run.spec)
    train_ids, _ = split_identities(data.identities, config.val_fraction, config.seed)
    train_set = data.subset(train_ids)
    assert 4 < len(train_set) < len(scan_image_folder(tiny_dataset))
    features = _forward_all(run.tower, run.tower.backbone, train_set, torch.device("cpu"), False)
    torch.testing.assert_close(run.tower.projection.mean, features.mean(0), atol=1e-4, rtol=1e-4)


def test_runs_that_predate_the_projection_load_as_they_trained(
    tiny_dataset: Path, tmp_path: Path
) -> None:
    """Older runs served the head's output, pooled globally, had no head batch-norm and the narrower
    conv tower; their config.json names none of it (widths was null: "the tower's default")."""
    result = train(
        tiny(
            tiny_dataset,
            tmp_path / "old",
            epochs=1,
            embed_from="head",
            grid=1,
            head_batch_norm=False,
            widths=(16, 32, 64, 128),
        )
    )
    config_path = result.run_dir / "config.json"
    config = json.loads(config_path.read_text())
    config["tower"]["options"] = {
        k: v
        for k, v in config["tower"]["options"].items()
        if k not in ("embed_from", "grid", "batch_norm", "widths")
    }
    for name in ("embed_from", "grid"):
        del config["train"][name]
    config["train"]["widths"] = None
    config_path.write_text(json.dumps(config))
    run = load_run(result.run_dir)
    assert run.tower.projection is None and run.tower.backbone(
        torch.zeros(1, *run.spec.shape)
    ).shape == (1, 128)
    old = TrainConfig.from_dict(config["train"])
    assert (old.embed_from, old.grid, old.widths) == (
        "head",
        1,
        (16, 32, 64, 128),
    )  # what it trained with, not today's defaults


def test_new_runs_record_the_conv_widths(tiny_dataset: Path, tmp_path: Path) -> None:
    default = TrainConfig(data_dir=str(tiny_dataset), out_dir=str(tmp_path / "unused"))
    assert default.widths == (16, 32, 64, 128)
    run_dir = train(tiny(tiny_dataset, tmp_path / "run", epochs=1, widths=(4, 6))).run_dir
    config = json.loads((run_dir / "config.json").read_text())
    assert config["tower"]["options"]["widths"] == [4, 6] and config["train"]["widths"] == [4, 6]
    assert load_run(run_dir).tower.backbone(torch.zeros(1, 1, 24, 24)).shape == (1, 6 * 4 * 4)


@pytest.mark.parametrize("widths", [(), (8, 0)])
def test_conv_widths_must_be_positive(
    tiny_dataset: Path, tmp_path: Path, widths: tuple[int, ...]
) -> None:
    with pytest.raises(ConfigError, match="conv tower widths must be one or more positive numbers"):
        tiny(tiny_dataset, tmp_path / "run", widths=widths)


def test_training_is_deterministic(tiny_dataset: Path, tmp_path: Path) -> None:
    def once(name: str) -> list[float]:
        return [
            row["loss"]
            for row in train(tiny(tiny_dataset, tmp_path / name, augment="strong")).history
        ]

    assert once("a") == once("b")


def test_augmentation_in_worker_processes_is_deterministic(
    tiny_dataset: Path, tmp_path: Path
) -> None:
    def once(name: str) -> list[float]:
        config = tiny(tiny_dataset, tmp_path / name, augment="light", workers=1, epochs=1)
        return [row["loss"] for row in train(config).history]

    assert once("a") == once("b")


@pytest.mark.parametrize(
    ("loss", "miner", "sampler"),
    [
        ("contrastive", None, "random"),
        ("triplet", None, "random"),
        ("contrastive", "all-pairs", "pk"),
        ("triplet", "semi-hard", "pk"),
        ("triplet", "batch-all", "pk"),
        ("triplet", None, "pk"),
        ("triplet-softmax", None, "random"),
        ("triplet-softmax", None, "pk"),
    ],
)
def test_every_loss_trains(
    tiny_dataset: Path, tmp_path: Path, loss: str, miner: str | None, sampler: str
) -> None:
    result = train(
        tiny(
            tiny_dataset,
            tmp_path / "run",
            loss=loss,
            miner=miner,
            sampler=sampler,
            epochs=1,
            batch_size=4,
        )
    )
    recorded = json.loads((tmp_path / "run" / "config.json").read_text())["loss"]
    assert (recorded["name"], recorded["sampler"]) == (loss, sampler)
    assert recorded["miner"] == (miner or ("none" if sampler == "random" else "batch-hard"))
    assert result.history[0]["loss"] > 0  # an untrained tower violates margins on these batches


def test_instance_term_trains_on_two_views(tiny_dataset: Path, tmp_path: Path) -> None:
    plain = train(tiny(tiny_dataset, tmp_path / "plain", epochs=1))
    both = train(tiny(tiny_dataset, tmp_path / "views", epochs=1, instance_weight=1.0))
    assert both.history[0]["loss"] > plain.history[0]["loss"]  # the view term adds to the loss
    assert (
        json.loads((tmp_path / "views" / "config.json").read_text())["train"]["instance_weight"]
        == 1.0
    )


def test_flatten_views_keeps_labels_and_names_instances() -> None:
    images = torch.arange(3 * 2 * 1 * 2 * 2).reshape(3, 2, 1, 2, 2)
    flat, labels, instances = flatten_views(images, torch.tensor([7, 7, 9]))
    assert flat.shape == (6, 1, 2, 2) and torch.equal(flat[1], images[0, 1])
    assert labels.tolist() == [7, 7, 7, 7, 9, 9] and instances.tolist() == [0, 0, 1, 1, 2, 2]
    same, same_labels, none = flatten_views(images[:, 0], torch.tensor([7, 7, 9]))
    assert same is not None and same_labels.tolist() == [7, 7, 9] and none is None


def test_seed_tower_with_the_seed_recipe(tiny_dataset: Path, tmp_path: Path) -> None:
    config = tiny(
        tiny_dataset,
        tmp_path / "seed",
        tower="seed",
        image_size=32,
        loss="contrastive",
        sampler="random",
        epochs=1,
        batch_size=8,
        lr=5e-4,
        augment="none",
        widths=None,
        head_dim=None,
    )
    result = train(config)
    saved = json.loads((tmp_path / "seed" / "config.json").read_text())
    assert saved["loss"]["margin"] == 2.0 and saved["loss"]["sampler"] == "random"
    assert load_run(result.run_dir).tower.fc1[-1].out_features == 5


@pytest.mark.parametrize(
    "instance_weight", [0.0, 0.5]
)  # with the instance term, its projector resumes too
def test_resume_continues_where_it_stopped(
    tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, instance_weight: float
) -> None:
    def tiny_run(out: Path, **options):
        return tiny(tiny_dataset, out, instance_weight=instance_weight, **options)

    straight = train(tiny_run(tmp_path / "straight", epochs=3)).history

    from siamese.training import run_keeper

    real_save = run_keeper.save_checkpoint

    def interrupt_after_epoch_2(run_dir, state):
        real_save(run_dir, state)
        if state["epoch"] == 2:
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C mid-run

    monkeypatch.setattr(run_keeper, "save_checkpoint", interrupt_after_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_run(tmp_path / "resumed", epochs=3))
    monkeypatch.setattr(run_keeper, "save_checkpoint", real_save)

    with pytest.raises(ConfigError, match=r"resume it \(resume\)"):
        train(tiny_run(tmp_path / "resumed", epochs=3))
    with pytest.raises(ConfigError, match="different settings.*lr"):
        train(tiny_run(tmp_path / "resumed", epochs=3, lr=0.5, resume=True))
    resumed = train(tiny_run(tmp_path / "resumed", epochs=3, resume=True)).history
    assert [row["epoch"] for row in resumed] == [1, 2, 3]
    assert [row["loss"] for row in resumed] == pytest.approx(
        [row["loss"] for row in straight], rel=1e-6
    )


def test_early_stopping(tiny_dataset: Path, tmp_path: Path) -> None:
    result = train(
        tiny(
            tiny_dataset,
            tmp_path / "run",
            epochs=6,
            patience=1,
            lr=1e-9,
            warmup_epochs=0,
            select_by="recall_at_1",
        )
    )
    assert result.stopped_early and len(result.history) < 6


def test_refuses_pickled_weights(trained_run: Path, tmp_path: Path) -> None:
    copy = tmp_path / "run"
    shutil.copytree(trained_run, copy)
    (copy / "tower.safetensors").write_bytes(b"\x80\x04\x95" + b"pickle payload")
    with pytest.raises(RunError, match="unreadable weights"):
        load_run(copy)
    (copy / "checkpoint.pt").write_bytes(b"\x80\x04\x95 not a checkpoint")
    config = TrainConfig.from_dict(json.loads((copy / "config.json").read_text())["train"])
    with pytest.raises(RunError, match="cannot load checkpoint safely"):
        train(
            TrainConfig(
                **{
                    **config.to_dict(),
                    "out_dir": str(copy),
                    "resume": True,
                    "widths": tuple(config.widths),
                }
            )
        )


def test_pk_sampler_batches() -> None:
    labels = np.array([0] * 5 + [1] * 3 + [2] * 2 + [3] * 1)
    batches = list(PKSampler(labels, p=3, k=4, steps=20, seed=1))
    assert len(batches) == 20
    for batch in batches:
        counts = np.bincount(labels[batch], minlength=4)
        assert sorted(c for c in counts if c) == [4, 4, 4] and counts[3] == 0


def test_pk_sampler_keeps_batch_size_with_few_identities() -> None:
    labels = np.array([0] * 5 + [1] * 3 + [2] * 2)
    grown = list(
        PKSampler(labels, p=4, k=3, steps=5, seed=1)
    )  # 3 identities: K grows 3 → 4, the batch keeps 12 images
    assert all(sorted(np.bincount(labels[batch])) == [4, 4, 4] for batch in grown)
    capped = PKSampler(
        labels, p=8, k=4, steps=5, seed=1
    )  # 32 // 3 = 10 images each, capped at the largest identity
    assert (capped.p, capped.k) == (3, 5)


def test_training_normalisation_equals_engine_normalisation() -> None:
    spec = InputSpec.create(8, 3, mean=(0.4, 0.5, 0.6), std=(0.2, 0.3, 0.25))
    pixels = np.random.default_rng(0).integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    ours = normalize_batch(torch.from_numpy(pixels).permute(0, 3, 1, 2), spec).numpy()
    np.testing.assert_array_equal(ours, normalize_pixels(to_tensor(pixels), spec))


@pytest.mark.parametrize("preset", ["light", "medium", "strong"])
@pytest.mark.parametrize("shape", [(5, 1, 20, 20), (3, 3, 24, 40)])
def test_augmentations_keep_shape_and_dtype(preset: str, shape: tuple[int, ...]) -> None:
    augment = build_augmentation(preset, "both")
    images = torch.randint(0, 256, shape, dtype=torch.uint8)
    out = augment(images)
    assert out.shape == images.shape and out.dtype == torch.uint8
    assert build_augmentation("none", "none") is None
    with pytest.raises(ConfigError, match="unknown flip"):
        build_augmentation("light", "sideways")
    with pytest.raises(ConfigError, match="unknown augmentation"):
        build_augmentation("wild", "none")


def test_batch_augmentation_draws_each_image_its_own_transform_reproducibly() -> None:
    """Sixteen copies of one image come out as sixteen different images, the same for one seed."""
    image = torch.randint(0, 256, (1, 1, 32, 32), dtype=torch.uint8).expand(16, 1, 32, 32)
    augment = build_augmentation("medium", "none")
    torch.manual_seed(3)
    first = augment(image)
    torch.manual_seed(3)
    again = augment(image)
    assert torch.equal(first, again)
    distinct = {first[i].numpy().tobytes() for i in range(16)}
    assert len(distinct) == 16


def test_identity_ranges_leave_images_unchanged_even_when_not_square() -> None:
    """No crop, no rotation, no lighting: the affine resampling must be exact, with no shear."""
    from siamese.training.augment import BatchAugmentation, Preset

    images = torch.randint(0, 256, (4, 3, 24, 40), dtype=torch.uint8)
    still = BatchAugmentation(Preset((1.0, 1.0), (1.0, 1.0), 0.0, 0.0), "none")
    assert torch.equal(still(images), images)
    flipped = BatchAugmentation(None, "horizontal")(images)
    for original, out in zip(images, flipped, strict=True):
        assert torch.equal(out, original) or torch.equal(out, original.flip(2))


def test_rotation_turns_an_off_centre_mark_about_the_centre() -> None:
    """A 90° turn of a non-square image moves a mark as a 90° turn in pixels does, not sheared."""
    import torch.nn.functional as F

    from siamese.training.augment import affine_theta

    image = torch.zeros(1, 1, 40, 60)
    image[0, 0, 18:22, 40:44] = 255  # 12 px right of the centre (row 19.5, column 29.5)
    one, zero = torch.ones(1), torch.zeros(1)
    theta = affine_theta(one, one, zero, zero, torch.tensor([math.pi / 2]), 60 / 40)
    grid = F.affine_grid(theta, [1, 1, 40, 60], align_corners=False)
    rotated = F.grid_sample(image, grid, align_corners=False)
    rows, cols = torch.nonzero(rotated[0, 0] > 128, as_tuple=True)
    row, col = rows.float().mean().item(), cols.float().mean().item()
    # now 12 px above or below the centre, at its column, and still a 4 × 4 mark
    assert abs(col - 29.5) < 1.0 and abs(abs(row - 19.5) - 12) < 1.0
    assert 9 <= len(rows) <= 20


def test_medium_augmentation_erases_patches_light_does_not() -> None:
    """Crops, small rotations and lighting keep the centre of a white image.

    Random erasing blacks out patches.
    """
    torch.manual_seed(0)
    white = torch.full((100, 1, 40, 40), 255, dtype=torch.uint8)

    def centre_erased(preset: str) -> int:
        out = build_augmentation(preset, "none")(white)
        return int((out[:, :, 17:23, 17:23] == 0).flatten(1).any(1).sum())

    assert centre_erased("light") == 0 and centre_erased("medium") > 0


def test_strong_augmentation_blurs_some_images() -> None:
    """A checkerboard keeps its full contrast unless blurred: some are, some are not."""
    from siamese.training.augment import BatchAugmentation, Preset

    board = ((torch.arange(16).view(1, -1) + torch.arange(16).view(-1, 1)) % 2 * 255).to(
        torch.uint8
    )
    images = board.expand(64, 1, 16, 16)
    blur_only = Preset((1.0, 1.0), (1.0, 1.0), 0.0, 0.0, blur_p=0.5, blur_sigma=(1.0, 1.5))
    torch.manual_seed(1)
    out = BatchAugmentation(blur_only, "none")(images)
    unchanged = [torch.equal(o, i) for o, i in zip(out, images, strict=True)]
    assert 10 < sum(unchanged) < 54
    blurred = out[[not u for u in unchanged]].float()
    assert (blurred[:, :, 4:12, 4:12].std(dim=(1, 2, 3)) < 60).all()


def test_bad_config_values() -> None:
    with pytest.raises(ConfigError, match="epochs"):
        TrainConfig(data_dir="d", out_dir="o", epochs=0)
    with pytest.raises(ConfigError, match="device"):
        TrainConfig(data_dir="d", out_dir="o", device="tpu")
    with pytest.raises(ConfigError, match="select_by must be one of"):
        TrainConfig(data_dir="d", out_dir="o", select_by="accuracy")
    with pytest.raises(ConfigError, match="two augmented views"):
        TrainConfig(data_dir="d", out_dir="o", instance_weight=1.0, augment="none")
    with pytest.raises(ConfigError, match="P×K"):
        TrainConfig(
            data_dir="d", out_dir="o", instance_weight=1.0, sampler="random", loss="contrastive"
        )
    with pytest.raises(RunError, match="not found"):
        load_run("/nonexistent/run")
