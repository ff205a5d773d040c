"""The ``maze-ppo`` recipe's frozen encoder, pretrained on the agent's own frames: the convolutions are
trained as the encoder of a frame autoencoder (``FrameDecoder`` mirrors them) on frames of a uniform random
walk in the training mazes (``random_walk_frames``), then held fixed by the trainer (``maze_ppo.py``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from .conv_policy import CONV_FILTERS, CONV_KERNEL, CONV_STRIDE, ConvPolicy


class FrameDecoder(nn.Module):
    """The convolutions' mirror image: their output (16, 5, 7) back to a frame (3, 30, 40)."""

    def __init__(self, channels: int = 3, generator: torch.Generator | None = None):
        super().__init__()
        self.layers = nn.Sequential(
            nn.ConvTranspose2d(CONV_FILTERS, CONV_FILTERS, CONV_KERNEL, CONV_STRIDE, output_padding=(0, 1)),
            nn.ReLU(),
            nn.ConvTranspose2d(CONV_FILTERS, channels, CONV_KERNEL, CONV_STRIDE, output_padding=(1, 1)))
        with torch.no_grad():
            for layer in (self.layers[0], self.layers[2]):
                assert isinstance(layer, nn.ConvTranspose2d) and layer.bias is not None
                nn.init.xavier_uniform_(layer.weight, generator=generator)
                layer.bias.zero_()

    def forward(self, conv_out: torch.Tensor) -> torch.Tensor:
        return self.layers(conv_out)


def random_walk_frames(env: Any, n_frames: int, rng: np.random.Generator) -> torch.Tensor:
    """``n_frames`` frames (uint8, (n, 3, 30, 40)) of uniformly random actions, group after group of the
    training pool, each trial played to its end."""
    frames: list[np.ndarray] = []
    count, group = 0, 0
    while count < n_frames:
        n = env.select_group(group % env.n_groups)
        obs, live = env.reset(), np.ones(n, bool)
        while live.any() and count < n_frames:
            frames.append(np.rint((obs[live] + 1.0) * 127.5).astype(np.uint8))  # a finished trial's frame
            count += int(live.sum())  # is its last one, repeated: neither kept nor counted
            result = env.step(rng.integers(env.spec.n_actions, size=n))
            obs, live = result.obs, ~result.trial_done
        group += 1
    return torch.as_tensor(np.concatenate(frames)[:n_frames])


def pretrain_encoder(net: ConvPolicy, frames: torch.Tensor, epochs: int, lr: float, gen: torch.Generator,
                     batch: int = 256) -> list[float]:
    """Train ``net.conv`` as an autoencoder's encoder on ``frames`` (uint8); the mean squared error of
    each epoch, in the [-1, 1] pixel scale."""
    device = next(net.parameters()).device
    decoder = FrameDecoder(net.obs_shape[0], gen).to(device)
    optimizer = torch.optim.Adam([*net.conv.parameters(), *decoder.parameters()], lr=lr)
    losses = []
    for _ in range(epochs):
        total = 0.0
        order = torch.randperm(len(frames), generator=gen)
        for idx in order.split(batch):
            x = frames[idx].to(device).float() * (2.0 / 255.0) - 1.0
            loss = ((decoder(net.conv(x)) - x) ** 2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(idx)
        losses.append(total / len(frames))
    return losses
