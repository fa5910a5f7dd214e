"""How the speed paths' checks compare a fast result with the one it stands in for."""

from __future__ import annotations

import torch


def close(got: torch.Tensor, want: torch.Tensor, tol: float) -> bool:
    """Within ``tol`` of ``want``'s largest value: a leak, a lost context or a wrong mask
    changes a result by about its scale; rounding by far less."""
    return bool(((got.float() - want.float()).abs().max() / want.abs().max().float().clamp_min(1e-6))
                < tol)
