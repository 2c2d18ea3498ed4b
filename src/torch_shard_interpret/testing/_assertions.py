"""assert_no_hooks: prove that no hook of ours is left on a module tree."""

from __future__ import annotations

from torch import nn

_HOOK_DICTS = (
    "_forward_hooks",
    "_forward_pre_hooks",
    "_backward_hooks",
    "_backward_pre_hooks",
    "_state_dict_hooks",
    "_load_state_dict_pre_hooks",
)


def tsi_hooks(module: nn.Module) -> list[str]:
    """Descriptions of every hook registered by torch-shard-interpret on ``module`` and its children."""
    found = []
    for path, sub in module.named_modules():
        for attr in _HOOK_DICTS:
            for fn in getattr(sub, attr, {}).values():
                owner = getattr(fn, "__module__", "") or ""
                if owner.startswith("torch_shard_interpret"):
                    found.append(f"{path or '<root>'}.{attr}: {getattr(fn, '__qualname__', fn)!r}")
    return found


def assert_no_hooks(module: nn.Module) -> None:
    """Fail when any hook of ours is still registered on ``module`` or its children."""
    left = tsi_hooks(module)
    assert not left, "hooks left behind:\n  " + "\n  ".join(left)
