"""Batch-norm over the global batch when training on several processes.

Every tower normalises with batch statistics (the conv and seed backbones, the head's optional
batch-norm). Left per rank, each rank would normalise its own slice with its own statistics, so a
distributed step would not compute what one process computes on the whole batch, and the
statistics would come from world× fewer images.

On CUDA the layers become PyTorch's ``nn.SyncBatchNorm``. PyTorch's SyncBatchNorm refuses CPU
tensors ("SyncBatchNorm expected input tensor to be on GPU", checked on torch 2.14), so on CPU
(gloo) they become :class:`GlobalBatchNorm`: the same arithmetic, with the per-channel sums
all-reduced through the differentiable collective of :mod:`.distributed`. Both keep BatchNorm's
parameter and buffer names, so the weights they save load into an ordinary tower.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from siamese.training.distributed import all_reduce_sum


class GlobalBatchNorm(_BatchNorm):
    """BatchNorm whose training statistics are those of every rank's batch together (any backend).

    Two all-reduces per layer and step (ranks' batches have equal shapes): the per-channel sums (for
    the mean), then the sums of squared deviations from that mean (for the variance; the two-pass
    form keeps float32 accurate). Outside training, or in a single process, it is exactly
    ``F.batch_norm``.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2-D input, got {input.dim()}-D")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(input)
        synced = self.training and torch.distributed.is_initialized()
        if not synced or torch.distributed.get_world_size() == 1:
            return super().forward(input)
        dims = [0, *range(2, input.dim())]
        shape = [1, -1] + [1] * (input.dim() - 2)
        # every rank's batch has the same shape (the global batch is gathered in equal slices)
        total = float(input.numel() // input.shape[1] * torch.distributed.get_world_size())
        mean = all_reduce_sum(input.sum(dims)) / total
        centred = input - mean.view(shape)
        var = all_reduce_sum(centred.pow(2).sum(dims)) / total
        output = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            output = output * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = (
                    1.0 / float(self.num_batches_tracked)
                    if self.momentum is None
                    else self.momentum
                )
                unbiased = var * (total / max(total - 1.0, 1.0))
                self.running_mean.mul_(1 - factor).add_(mean.detach(), alpha=factor)
                self.running_var.mul_(1 - factor).add_(unbiased.detach(), alpha=factor)
        return output


def synchronise_batch_norm(module: nn.Module, device: torch.device) -> nn.Module:
    """Make every batch-norm layer synchronised for ``device`` (in place where possible)."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return _convert(module)


def _convert(module: nn.Module) -> nn.Module:
    if isinstance(module, _BatchNorm) and not isinstance(module, GlobalBatchNorm):
        replaced = GlobalBatchNorm(
            module.num_features,
            module.eps,
            module.momentum,
            module.affine,
            module.track_running_stats,
            device=module.running_mean.device if module.running_mean is not None else None,
            dtype=module.running_mean.dtype if module.running_mean is not None else None,
        )
        replaced.load_state_dict(module.state_dict())
        replaced.train(module.training)
        return replaced
    for name, child in module.named_children():
        module.add_module(name, _convert(child))
    return module
