"""The renderer on its own: fit a mesh's size and position to silhouettes seen by two cameras.

    python examples/fit_silhouette.py                 # -> out/silhouette.png (targets | start | fitted)

Only ``face3d.renderers`` and torch: a sphere is scaled (per axis) and moved until its antialiased
coverage (``render_mesh(...).alpha``) matches the silhouettes of a hidden ellipsoid from the
front and from the side. The gradients reach the vertices through the antialiasing of the
silhouette edges, as in nvdiffrast. Prints the IoU and the recovered radii.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch


def cameras(size: int) -> object:
    """Two pinhole cameras 0.5 m from the origin: in front (+Z) and on the right (+X)."""
    from face3d import renderers

    eyes = torch.tensor([[0.0, 0.0, 0.5], [0.5, 0.0, 0.0]])
    R, t = renderers.look_at(eyes, torch.zeros(2, 3))
    K = renderers.perspective_from_fov(40.0, size, size).expand(2, 3, 3)
    return renderers.PerspectiveCamera(K=K, R=R, t=t, width=size, height=size)


def silhouettes(vertices: torch.Tensor, faces: torch.Tensor, camera: object) -> torch.Tensor:
    """(2, H, W) antialiased coverage of the mesh ``vertices`` (V, 3) metres in the two views."""
    from face3d import renderers

    return renderers.render_mesh(renderers.Mesh(vertices[None].expand(2, -1, -1), faces), camera).alpha[..., 0]


def blurred(alpha: torch.Tensor, k: int = 9) -> torch.Tensor:
    """(B, H, W) box blur of width ``k`` pixels: compares silhouettes over a wider band than their edges."""
    box = torch.ones(1, 1, k, k) / k**2
    return torch.nn.functional.conv2d(alpha[:, None], box, padding=k // 2)[:, 0]


def fit(steps: int = 100, size: int = 64, seed: int = 0, lr: float = 0.03) -> dict:
    """Fit per-axis radii and a translation of a unit sphere to a hidden ellipsoid's two silhouettes
    (Adam with a cosine-decayed step; loss: squared coverage difference, sharp plus blurred)."""
    import trimesh

    torch.manual_seed(seed)
    sphere = trimesh.creation.icosphere(subdivisions=3)
    unit = torch.tensor(sphere.vertices, dtype=torch.float32)
    faces = torch.tensor(sphere.faces, dtype=torch.int32)
    cam = cameras(size)
    true_radii, true_shift = torch.tensor([0.07, 0.10, 0.085]), torch.tensor([0.02, -0.01, 0.015])
    with torch.no_grad():
        target = silhouettes(unit * true_radii + true_shift, faces, cam)
    log_r = torch.full((3,), float(np.log(0.06)), requires_grad=True)
    shift = torch.zeros(3, requires_grad=True)
    opt = torch.optim.Adam([log_r, shift], lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=0.05 * lr)
    with torch.no_grad():
        start = silhouettes(unit * log_r.exp() + shift, faces, cam)
    for _ in range(steps):
        opt.zero_grad()
        alpha = silhouettes(unit * log_r.exp() + shift, faces, cam)
        loss = ((alpha - target) ** 2).mean() + ((blurred(alpha) - blurred(target)) ** 2).mean()
        loss.backward()
        opt.step()
        sched.step()
    with torch.no_grad():
        fitted = silhouettes(unit * log_r.exp() + shift, faces, cam)

    def iou(a: torch.Tensor, b: torch.Tensor) -> float:
        a, b = a > 0.5, b > 0.5
        return float((a & b).sum() / (a | b).sum())

    return {"radii": log_r.exp().detach().numpy(), "shift": shift.detach().numpy(), "true_radii": true_radii.numpy(),
            "true_shift": true_shift.numpy(), "iou_start": iou(start, target), "iou": iou(fitted, target),
            "images": torch.cat([target, start, fitted], 0)}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--out", type=Path, default=Path("out/silhouette.png"))
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--size", type=int, default=64)
    args = ap.parse_args(argv)

    from PIL import Image

    r = fit(args.steps, args.size)
    print(f"IoU {r['iou_start']:.3f} -> {r['iou']:.3f}; radii {np.round(r['radii'] * 1000, 1)} mm "
          f"(true {np.round(r['true_radii'] * 1000, 1)}), shift {np.round(r['shift'] * 1000, 1)} mm "
          f"(true {np.round(r['true_shift'] * 1000, 1)})")
    tiles = (r["images"].numpy() * 255).astype(np.uint8)  # target front, side, start front, side, fitted front, side
    grid = np.concatenate([np.concatenate(list(tiles[i : i + 2]), 0) for i in range(0, 6, 2)], 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(args.out)
    print(f"wrote {args.out} (columns: target, start, fitted; rows: front, side)")
    return r


if __name__ == "__main__":
    main()
