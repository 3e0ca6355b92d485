"""Before the Live Avatar model loads: its files, the GPUs and their memory, each refused
with one line naming what to change.

Everything here reads headers and device properties only, so a wrong setup fails in well
under a second instead of after minutes of reading 49 GB of weights.

    plan = preflight(checkpoint_dir, lora, ranks=5, weights="bf16", height=720, width=400)
"""
from __future__ import annotations

from dataclasses import dataclass

from .liveavatar_files import check_liveavatar
from .sizing import LiveAvatarPlan, fp8_supported, liveavatar_plan

FP8_CAPABILITY = (8, 9)     # FP8 matmuls: Ada (sm89) and Hopper (sm90) or newer


class PreflightError(RuntimeError):
    """Live Avatar cannot run as configured, phrased as one line for the user."""


@dataclass(frozen=True)
class GPU:
    name: str
    total_bytes: int
    capability: tuple[int, int]


def visible_gpus() -> list[GPU]:
    """The CUDA devices torch sees (device properties only: no CUDA context is created)."""
    import torch
    if not torch.cuda.is_available():
        return []
    props = [torch.cuda.get_device_properties(i) for i in range(torch.cuda.device_count())]
    return [GPU(p.name, p.total_memory, (p.major, p.minor)) for p in props]


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB"


def fits(plan: LiveAvatarPlan, gpus: list[GPU]) -> bool:
    return len(gpus) >= plan.ranks and all(r.total_bytes <= g.total_bytes for r, g in zip(plan.per_rank, gpus))


def fastest_fit(plan: LiveAvatarPlan, gpus: list[GPU]) -> str:
    """Advice: the fastest setup of causal_dit.* that fits these GPUs (bf16, then fewer ranks on ties)."""
    options = ["bf16", "fp8"] if fp8_supported() and all(g.capability >= FP8_CAPABILITY for g in gpus) else ["bf16"]
    plans = [liveavatar_plan(plan.height, plan.width, ranks, weights)
             for ranks in range(1, min(len(gpus), 5) + 1) for weights in options]
    fitting = sorted((p for p in plans if fits(p, gpus)),
                     key=lambda p: (p.bottleneck_forwards, p.weights != "bf16", p.ranks))
    if not fitting:
        return f"no setup of these {len(gpus)} GPU(s) fits {plan.height}×{plan.width}; lower causal_dit.height/width"
    return f"set causal_dit.ranks {fitting[0].ranks} and causal_dit.weights {fitting[0].weights}"


def preflight(checkpoint: str, lora: str, ranks: int, weights: str, height: int, width: int,
              gpus: list[GPU] | None = None) -> LiveAvatarPlan:
    """The plan for this setup, or PreflightError: a bad file, no GPU, too little memory."""
    bad = [c for c in check_liveavatar(checkpoint, lora) if not c.ok]
    if bad:
        more = f" (and {len(bad) - 1} more; python app.py --check lists them)" if len(bad) > 1 else ""
        raise PreflightError(f"Live Avatar checkpoint {checkpoint}: {bad[0].name}: {bad[0].detail}{more}")
    try:
        plan = liveavatar_plan(height, width, ranks, weights)
    except ValueError as e:
        raise PreflightError(f"causal_dit: {e}") from None
    gpus = visible_gpus() if gpus is None else gpus
    if not gpus:
        raise PreflightError("Live Avatar needs CUDA GPUs and torch sees none (torch.cuda.is_available() is "
                             "False); run it on a GPU machine, or use avatar.backend portrait here")
    if len(gpus) < ranks:
        raise PreflightError(f"causal_dit.ranks {ranks} needs {ranks} GPUs, torch sees {len(gpus)}; "
                             f"{fastest_fit(plan, gpus)}")
    if weights == "fp8" and min(g.capability for g in gpus[:ranks]) < FP8_CAPABILITY:
        g = min(gpus[:ranks], key=lambda g: g.capability)
        raise PreflightError(f"causal_dit.weights fp8 needs compute capability 8.9+ (Ada, Hopper); {g.name} is "
                             f"{g.capability[0]}.{g.capability[1]}: use causal_dit.weights bf16")
    for rank, (row, gpu) in enumerate(zip(plan.per_rank, gpus)):
        if row.total_bytes > gpu.total_bytes:
            raise PreflightError(
                f"Live Avatar at {height}×{width} on {ranks} rank(s), {weights}: rank {rank} ({row.role}) needs "
                f"{_gib(row.total_bytes)} (weights {_gib(row.weight_bytes)} + caches {_gib(row.cache_bytes)} + "
                f"work {_gib(row.work_bytes)}) but GPU {rank} ({gpu.name}) has {_gib(gpu.total_bytes)}; "
                f"{fastest_fit(plan, gpus)}")
    return plan
