"""Grad-CAM++ against its paper's general formula, with the derivatives of ``Y = exp(S)`` taken by autograd."""

from __future__ import annotations

import torch
from torch import nn

import torch_shard_interpret.vision as tv


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU())
        self.head = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 16, 5)
        )

    def forward(self, x):
        return self.head(self.body(x))


def _paper_cam(net: _Net, image: torch.Tensor, target: int) -> torch.Tensor:
    """Chattopadhay et al. eq. 19 with every derivative of ``exp(score)`` w.r.t. the site taken elementwise."""
    a = net.body(image[None]).detach().requires_grad_(True)
    y = torch.exp(net.head(a)[0, target])
    (d1,) = torch.autograd.grad(y, a, create_graph=True)
    d2, d3 = torch.zeros_like(a), torch.zeros_like(a)
    for i in range(a.numel()):
        (row,) = torch.autograd.grad(d1.flatten()[i], a, create_graph=True)
        d2.view(-1)[i] = row.flatten()[i].detach()
        (row3,) = torch.autograd.grad(row.flatten()[i], a, retain_graph=True)
        d3.view(-1)[i] = row3.flatten()[i]
    denom = 2 * d2 + a.detach().sum((2, 3), keepdim=True) * d3
    alpha = d2 / torch.where(denom != 0, denom, torch.ones(()))
    weights = (alpha * d1.detach().clamp_min(0)).sum((2, 3), keepdim=True)
    return (weights * a.detach()).sum(1).clamp_min(0)[0]


def test_grad_cam_pp_matches_the_paper_formula_up_to_scale():
    torch.manual_seed(0)
    net = _Net().eval()
    x, t = torch.rand(3, 1, 4, 4), torch.tensor([1, 3, 4])
    ours = tv.grad_cam_pp(net, x, target=t, site="body:output", upsample=False).attributions
    ref = torch.stack([_paper_cam(net, x[i], int(t[i])) for i in range(3)])
    assert ours.shape == (3, 4, 4) and float(ref.amax()) > 0
    # the closed form drops the positive factor exp(score) of each image, so compare maps scaled to max 1
    norm = ours / ours.amax((1, 2), keepdim=True)
    assert torch.allclose(norm, ref / ref.amax((1, 2), keepdim=True), atol=1e-5)
    plain = tv.grad_cam(net, x, target=t, site="body:output", upsample=False).attributions
    assert not torch.allclose(norm, plain / plain.amax((1, 2), keepdim=True), atol=1e-2)
