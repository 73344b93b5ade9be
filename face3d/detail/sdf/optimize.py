"""Fit the implicit surface to the views (photometric + mask + eikonal + prior losses).

Rendering model per ray (Lambertian, as the 3DMM fitter): colour = albedo(x) · SH(n(x)),
with x the differentiable ray–surface hit (``trace.py``) and n the SDF gradient direction.
Albedo is the fitter's de-lit UV albedo times a learnable *low-resolution* gain map (16²
texels by default): fine shading variation cannot be explained by it and must go into
geometry, which keeps albedo, normals and shading separated.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from face3d.detail.sdf.network import ImplicitFace
from face3d.detail.sdf.trace import attach_implicit_gradient, intersect
from face3d.detail.sdf.views import View, pixel_rays
from face3d.mesh import Mesh


@dataclass(frozen=True)
class SDFFitOptions:
    """Settings of the SDF reconstructor; defaults target ≤ 2 minutes per photo on a 2-core CPU.

    Around the optimisation (:func:`~face3d.detail.sdf.pipeline.reconstruct_sdf`): synth_yaws,
    degrees by which the head is turned for the synthetic views (empty: none); uv_resolution R of
    the displacement and normal maps (0: no maps); voxel, the marching-cubes voxel (metres);
    albedo_blur, Gaussian blur of the albedo (sigma as a fraction of its width) before fitting, so
    shading detail that the texture bake absorbed into the albedo is explained by geometry;
    facing, (lo, hi) facing cosines over which detail fades in, from none where no real photo sees
    the surface better than ``lo`` to all at ``hi`` (None keeps all of it).

    ``w_prior`` (weight of the residual's pull back to the 3DMM surface) was chosen on development
    faces (``benchmarks/sdf.py`` seeds 7 and 8, not the benchmark's seed 0): 1e-3 → 3e-3 took
    their mean 3D normal error from 19.63 to 19.45 degrees and scan-to-mesh from 1.331 to 1.328 mm.

    ``warmup`` (iterations) and ``lr_final`` (fraction of ``lr`` at the last iteration) shape the
    learning rate (:func:`lr_factor`); the defaults keep it constant, as the benchmarked numbers were
    measured. At a constant rate Adam's first, sign-like step overshoots (planted-bump test: photo
    loss 0.0016 -> 0.0039) and the fit has not settled after 250 iterations, so float rounding
    decides where it ends: the same seeded test gave bump correlation 0.67 with MKL's AVX-512
    kernels and 0.76 with its AVX2 ones. A warm-up and a decay remove the overshoot and let it settle.
    """

    iterations: int = 300
    rays: int = 4096
    newton_steps: int = 3
    lr: float = 2e-3
    w_eikonal: float = 0.1
    w_prior: float = 3e-3
    w_mask: float = 0.05
    gain_resolution: int = 16
    max_residual: float = 6e-3
    seed: int = 0
    warmup: int = 0
    lr_final: float = 1.0
    synth_yaws: tuple[float, ...] = (-25.0, 25.0)
    uv_resolution: int = 256
    voxel: float = 1e-3
    albedo_blur: float = 0.02
    facing: tuple[float, float] | None = (0.2, 0.5)


def lr_factor(it: int, options: SDFFitOptions) -> float:
    """Learning-rate multiplier at iteration ``it``: a linear warm-up over ``options.warmup``
    iterations times a cosine decay from 1 to ``options.lr_final`` at the last iteration (the
    defaults, 0 and 1, keep the rate constant)."""
    warm = min(1.0, (it + 1) / options.warmup) if options.warmup > 0 else 1.0
    progress = it / max(options.iterations - 1, 1)
    return warm * (options.lr_final + (1.0 - options.lr_final) * 0.5 * (1.0 + math.cos(math.pi * progress)))


@dataclass
class SDFFitLog:
    """Loss history and the divergence verdict."""

    losses: list[dict[str, float]] = field(default_factory=list)
    diverged: bool = False
    reason: str = ""


class _RayBank:
    """Pixels of one view that hit the fitted mesh: rays, start depths, colours, and the base
    SDF's local plane (closest sample q, its normal n) and albedo texture coordinate at the
    start point. Within the few millimetres the hit moves, base(x) = (x - q) . n, so the loop
    needs no nearest-neighbour queries."""

    def __init__(self, view: View, start_depth: Tensor, mask: Tensor, face: ImplicitFace, uvs: Tensor,
                 uv_faces: Tensor, device: torch.device | str = "cpu") -> None:
        o, d, cos = pixel_rays(view.camera)
        keep = mask.reshape(-1) & (start_depth.reshape(-1) > 0)
        self.origins = o[keep]
        self.dirs = d[keep]
        self.t0 = start_depth.reshape(-1)[keep] / cos[keep]
        self.colors = view.image.reshape(-1, 3)[keep].float()
        self.view = view
        x0 = (self.origins + self.t0.unsqueeze(-1) * self.dirs).double().numpy()
        q, n, idx = face.base.query(x0)
        self.q = torch.as_tensor(q, dtype=torch.float32)
        self.n = torch.as_tensor(n, dtype=torch.float32)
        self.tex = sample_texcoords(face, idx, uvs, uv_faces)
        for name in ("origins", "dirs", "t0", "colors", "q", "n", "tex"):
            setattr(self, name, getattr(self, name).to(device))
        self.sh = view.sh.float().to(device)  # (1,9,3)
        self.t = self.t0.clone()  # warm start: each ray's last hit

    def __len__(self) -> int:
        return int(self.origins.shape[0])


def sample_texcoords(face: ImplicitFace, idx: np.ndarray, uvs: Tensor, uv_faces: Tensor) -> Tensor:
    """Texture coordinates (N,2) (``face3d.renderers.texture`` convention, row 0 at the top) of base
    surface samples ``idx`` (N,); ``uvs`` (T,2) in OBJ convention (v up)."""
    s = face.base.samples
    tri = torch.as_tensor(s.tri[idx])
    bary = torch.as_tensor(s.bary[idx], dtype=uvs.dtype)
    uv = (uvs[uv_faces[tri]] * bary.unsqueeze(-1)).sum(1)
    return torch.stack([uv[:, 0], 1 - uv[:, 1]], -1)


def start_depths(mesh: Mesh, view: View) -> tuple[Tensor, Tensor]:
    """Depth (H,W) of the fitted mesh (batch 1) along the view axis and its coverage mask (H,W) bool."""
    from face3d import renderers

    out = renderers.render_mesh(mesh, view.camera, vertex_colors=torch.ones_like(mesh.vertices), antialias=False)
    return out.depth[0, ..., 0], out.tri_id[0] >= 0


def albedo_at(tex: Tensor, albedo_uv: Tensor, gain: Tensor) -> Tensor:
    """Albedo (N,3) at texture coordinates (N,2): the fitted UV albedo (R,R,3) times the bilinear
    low-resolution gain map (g,g,3)."""
    from face3d import renderers

    tc = tex.reshape(1, 1, -1, 2)
    base = renderers.texture(albedo_uv.unsqueeze(0), tc, boundary_mode="clamp").reshape(-1, 3)
    g = renderers.texture(gain.unsqueeze(0), tc, boundary_mode="clamp").reshape(-1, 3)
    return base * g


def fit_implicit(face: ImplicitFace, views: list[View], mesh: Mesh, albedo_uv: Tensor, options: SDFFitOptions | None = None,
                 progress: Callable[[int, int], None] | None = None) -> tuple[Tensor, SDFFitLog]:
    """Optimise ``face.residual`` (in place) and a gain map. Returns (gain (g,g,3), log).

    mesh: the fitted 3DMM mesh (batch 1, metres, with uvs) the rays start from; views: batch-1
    views with ``sh``. The loop runs on the device of ``face.residual`` (CUDA when it is there); rays are set up and
    random draws made on the CPU, so a seed gives the same samples on every device.
    Stops early and sets ``log.diverged`` if the loss becomes non-finite, explodes (> 20× its
    first value) or the residual leaves ±``max_residual`` metres.
    """
    from face3d import renderers

    opt = options or SDFFitOptions()
    dev = face.residual.center.device
    gen = torch.Generator().manual_seed(opt.seed)
    banks = []
    uvs, uv_faces = mesh.uvs.float(), mesh.texture_faces  # type: ignore[union-attr]
    for v in views:
        depth, mask = start_depths(mesh, v)
        banks.append(_RayBank(v, depth, mask, face, uvs, uv_faces, dev))
    albedo_uv = albedo_uv.to(dev)
    probe = torch.as_tensor(face.base.samples.points[:: max(1, len(face.base.samples.points) // 4000)], dtype=torch.float32, device=dev)
    gain = torch.ones(opt.gain_resolution, opt.gain_resolution, 3, device=dev, requires_grad=True)
    params = [{"params": face.residual.parameters(), "lr": opt.lr}, {"params": [gain], "lr": 1e-2}]
    optim = torch.optim.Adam(params)
    log = SDFFitLog()
    first = None
    weights = [b.view.weight if len(b) else 0.0 for b in banks]
    share = [w / max(sum(weights), 1e-9) for w in weights]
    base_lr = [g["lr"] for g in optim.param_groups]
    for it in range(opt.iterations):
        for group, lr in zip(optim.param_groups, base_lr):
            group["lr"] = lr * lr_factor(it, opt)
        optim.zero_grad()
        terms = {"photo": 0.0, "eikonal": 0.0, "prior": 0.0, "mask": 0.0}
        total = torch.zeros((), device=dev)
        for bank, frac in zip(banks, share):
            if len(bank) == 0 or frac <= 0:
                continue
            sel = torch.randint(0, len(bank), (max(64, round(opt.rays * frac)),), generator=gen).to(dev)
            o, d, t0, c = bank.origins[sel], bank.dirs[sel], bank.t0[sel], bank.colors[sel]
            q, nb = bank.q[sel], bank.n[sel]

            def local(x: Tensor, q: Tensor = q, nb: Tensor = nb) -> Tensor:
                return ((x - q) * nb).sum(-1) + face.residual(x)

            t, ok = intersect(local, o, d, bank.t[sel], iters=opt.newton_steps)
            bank.t[sel] = torch.where(ok, t, t0)
            q_ok, n_ok = q[ok], nb[ok]
            x = attach_implicit_gradient(lambda y, q_ok=q_ok, n_ok=n_ok: local(y, q_ok, n_ok), o[ok], d[ok], t[ok])
            xg = x if x.requires_grad else x.requires_grad_(True)
            f = local(xg, q_ok, n_ok)
            (g,) = torch.autograd.grad(f.sum(), xg, create_graph=True)
            n = g / g.norm(dim=-1, keepdim=True).clamp_min(1e-9)
            alb = albedo_at(bank.tex[sel][ok], albedo_uv, gain)
            shade = renderers.sh_shade(n.unsqueeze(0), bank.sh)[0]
            pred = alb * shade
            photo = torch.sqrt((pred - c[ok]) ** 2 + 1e-6).mean()
            # eikonal and prior at points jittered around the hits (the base part has |grad| = 1)
            jitter = (x.detach() + torch.randn(x.shape, generator=gen).to(dev) * 2e-3).requires_grad_(True)
            fj = local(jitter, q_ok, n_ok)
            (gj,) = torch.autograd.grad(fj.sum(), jitter, create_graph=True)
            eik = ((gj.norm(dim=-1) - 1) ** 2).mean()
            prior = (face.residual(jitter) / 1e-3).pow(2).mean()
            # mask term: silhouette rays whose hit did not converge should still meet the surface
            miss = ~ok
            if bool(miss.any()):
                xm = o[miss] + t0[miss].unsqueeze(-1) * d[miss]
                mask_l = torch.relu(local(xm, q[miss], nb[miss])).mean() / 1e-3
            else:
                mask_l = torch.zeros((), device=dev)
            total = total + frac * (photo + opt.w_eikonal * eik + opt.w_prior * prior + opt.w_mask * mask_l)
            terms["photo"] += float(photo.detach()) * frac
            terms["eikonal"] += float(eik.detach()) * frac
            terms["prior"] += float(prior.detach()) * frac
            terms["mask"] += float(mask_l.detach()) * frac
        gain_smooth = (gain[1:] - gain[:-1]).pow(2).mean() + (gain[:, 1:] - gain[:, :-1]).pow(2).mean()
        total = total + 1.0 * gain_smooth
        val = float(total.detach())
        terms["total"] = val
        log.losses.append(terms)
        if first is None:
            first = val
        if not math.isfinite(val) or val > 20 * max(first, 1e-6):
            log.diverged, log.reason = True, f"loss {'not finite' if not math.isfinite(val) else 'exploded'} at iteration {it} ({val:.4g} vs {first:.4g})"
            break
        total.backward()
        optim.step()
        with torch.no_grad():
            gain.clamp_(0.5, 2.0)
        if it % 25 == 0 or it == opt.iterations - 1:
            with torch.no_grad():
                r = face.residual(probe).abs().max()
            if float(r) > opt.max_residual:
                log.diverged, log.reason = True, f"residual drifted {float(r) * 1e3:.2f} mm from the 3DMM prior at iteration {it}"
                break
        if progress is not None:
            progress(it + 1, opt.iterations)
    return gain.detach(), log
