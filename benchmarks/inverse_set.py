"""Inverse-set sampling against its baselines, side by side on the same query.

Model: the digits CNN (``inverset.zoo.digits``); generator G: the decoder of a small VAE on the
same digits (``inverset.sampling.vae``); E: the CNN's first hidden block (relu1), the default
encoder, for every method. Query: ``TARGET`` in ``[Z1, Z2]`` in G's latent space, n samples.

Methods: (a) this method (paper defaults, and variants); (b) independent multi-start projected
gradient that stops each start at feasibility: n starts drawn as ``inverset.solvers.gradient``
draws them, moved by the same projected Adam (steps relative to the box width, cosine learning
rate, aim 0.1% inside the range), each frozen at the first step it lies in the range and
charged the gradient evaluations until then (300, the cap, if never); (c) rejection sampling
from G's prior; (d) unadjusted Langevin dynamics in the latent space on the prior plus a range
penalty (the PPGN family). Every returned sample is re-evaluated.

Columns: "in range" counts the returned samples that re-evaluate in the range, out of the n
asked for (over all seeds); E-div (mean pairwise E-distance), E-NN (median E-distance to the
nearest other sample: near-copies pull it to 0) and the costs per sample are over
those in-range samples. "steps" is seed 0's run only: (a) seeding steps + sampling steps, (b)
the median step at which a start first lay in the range / the last step taken, (c) none, (d)
the Langevin steps of every chain. "range coverage (8 bins)" splits [Z1, Z2] into 8 equal bins
and lists, one number per seed, how many of them hold at least one in-range sample's value (8:
the samples reach every part of the range). A method that proves the range unreachable says
so, with its bound.

    python benchmarks/inverse_set.py [--target logit:3 --range 8,12 -n 500 --seeds 0,1,2]
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch
from _args import listed, positive

from inverset.domain import Box
from inverset.goal import Goal
from inverset.model import forward
from inverset.problem import Problem
from inverset.sampling import sample
from inverset.sampling.encoders import make_encoder
from inverset.sampling.inverse_set import _mean_pairwise
from inverset.sampling.vae import digits_vae
from inverset.space import Latent
from inverset.zoo import digits

#: what a method returns when it has no samples
NO_SAMPLES = np.zeros((0, 1, 8, 8), dtype=np.float32)


def verify(model, target, z1, z2, xs, enc):
    """(in-range mask, E features) of model inputs ``xs``, recomputed (none for no inputs)."""
    if len(xs) == 0:
        return np.zeros(0, dtype=bool), np.zeros((0, 1))
    p = Problem.build(model, target, Goal.range(z1, z2), Box(0, 1))
    names = [*p.layer_names, *([enc.layer] if enc.layer else [])]
    with torch.no_grad():
        x = torch.as_tensor(xs, dtype=torch.float32)
        acts = forward(model, x, names)
        v = p.target.evaluate(acts).double().numpy()
        e = enc(x, acts).double().numpy()
    return (v >= z1) & (v <= z2), e


def median_nearest(e: np.ndarray) -> float:
    """Median over the samples of the E-distance to the nearest other sample: near-copies
    (which the mean pairwise distance does not see) pull it towards 0."""
    if len(e) < 2:
        return float("nan")
    t = torch.as_tensor(e)
    d = torch.cdist(t, t)
    d.fill_diagonal_(math.inf)
    return float(d.min(1).values.median())


def ours(model, space, target, z1, z2, n, seed, **kw) -> dict:
    """The inverse-set sampler; an unreachable range comes back with no samples and the
    exact solver's proof (its message states the bound) instead of costs."""
    r = sample(model, target, (z1, z2), n, Box(0, 1), space=space, seed=seed, **kw)
    i = r.info
    steps = f"{i['seed_steps']}+{i['sample_steps']}"
    if r.status == "unreachable":
        note = r.message  # states the proven bound
        return {
            "xs": NO_SAMPLES,
            "fevals": r.nfev,
            "steps": steps,
            "status": r.status,
            "note": note,
        }
    return {
        "xs": r.xs,
        "grad_evals": i["grad_evals"],
        "fevals": r.nfev,
        "steps": steps,
        "status": r.status,
    }


def multistart(model, space, target, z1, z2, n, seed, steps=300, lr=0.05) -> dict:
    """n independent projected-Adam descents on the distance to the range, batched, each
    stopped at its first step in the range (see the module docstring)."""
    from inverset.solvers.gradient import Scaled

    p = Problem.build(model, target, Goal.range(z1, z2), Box(0, 1), space=space)
    inset = 1e-3 * (z2 - z1)  # as the gradient solver: float noise keeps stopped points inside
    aim = Goal.range(z1 + inset, z2 - inset)
    sc, box = Scaled(p), p.space.box
    gen = torch.Generator().manual_seed(seed)
    u = sc.u(box.sample(n, gen, device=p.device, dtype=p.dtype)).requires_grad_(True)
    opt = torch.optim.Adam([u], lr=lr)
    active = torch.ones(n, dtype=torch.bool)
    charged = torch.full((n,), steps)  # gradient evaluations per start
    fevals = 0
    with p.session():
        for step in range(steps + 1):
            idx = active.nonzero().squeeze(1)
            v = p.evaluate(p.space.to_input(sc.z(u[idx])))
            fevals += len(idx)
            done = aim.satisfied(v.detach())
            charged[idx[done]] = step
            active[idx[done]] = False
            if step == steps or not bool(active.any()):
                break
            for g in opt.param_groups:  # the gradient solver's cosine schedule
                g["lr"] = lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * step / steps)))
            opt.zero_grad()
            aim.loss(v[~done]).sum().backward()  # rows of stopped starts get no gradient
            frozen = u.detach()[~active].clone()
            opt.step()
            with torch.no_grad():
                u[~active] = frozen  # Adam's momentum would move them: they stay where they stopped
                u.copy_(sc.u(box.project(sc.z(u))))
    hit = ~active
    with torch.no_grad():
        xs = p.space.to_input(sc.z(u[hit])).numpy()
    first = charged[hit].double()
    return {
        "xs": xs,
        "grad_evals": int(charged.sum()),
        "fevals": fevals,
        "steps": f"{first.median():.0f}/{step}" if len(first) else f"-/{step}",
        "status": f"{int(hit.sum())} of {n} starts reached the range",
    }


def rejection(model, space, target, z1, z2, n, seed, budget=400_000, batch=4096):
    p = Problem.build(model, target, Goal.range(z1, z2), Box(0, 1), space=space)
    gen = torch.Generator().manual_seed(seed)
    kept, drawn = [], 0
    with torch.no_grad(), p.session():
        while sum(len(k) for k in kept) < n and drawn < budget:
            z = torch.randn((batch, *space.shape), generator=gen).clamp(-space.bound, space.bound)
            x = space.to_input(z)
            v = p.evaluate(x)
            kept.append(x[(v >= z1) & (v <= z2)].numpy())
            drawn += batch
    xs = np.concatenate(kept)[:n] if kept else NO_SAMPLES
    return {"xs": xs, "grad_evals": 0, "fevals": drawn, "steps": "-", "status": f"{drawn} drawn"}


def langevin(model, space, target, z1, z2, n, seed, chains=50, eta=1e-3, kappa=50.0, thin=2):
    """Unadjusted Langevin on U(z) = |z|^2/2 + kappa * distance of f(G(z)) to [z1, z2] / width;
    every ``thin``-th state of each chain that lies in the range is kept, until n."""
    p = Problem.build(model, target, Goal.range(z1, z2), Box(0, 1), space=space)
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn((chains, *space.shape), generator=gen)
    w = z2 - z1
    kept, steps = [], 0
    with p.session():
        while sum(len(k) for k in kept) < n and steps < 4000:
            z = z.detach().requires_grad_(True)
            x = space.to_input(z)
            v = p.evaluate(x)
            if steps % thin == 0:
                ok = ((v >= z1) & (v <= z2)).detach()
                kept.append(x[ok].detach().numpy())
            dist = (z1 - v).clamp_min(0) + (v - z2).clamp_min(0)
            u = 0.5 * (z**2).sum(1) + kappa * dist / w
            (g,) = torch.autograd.grad(u.sum(), z)
            noise = torch.randn(z.shape, generator=gen)
            z = (z - eta * g + math.sqrt(2 * eta) * noise).clamp(-space.bound, space.bound)
            steps += 1
    xs = np.concatenate(kept)[:n] if kept else NO_SAMPLES
    return {
        "xs": xs,
        "grad_evals": steps * chains,
        "fevals": p.nfev,
        "steps": str(steps),
        "status": f"{steps} steps of {chains} chains",
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", default="logit:3")
    ap.add_argument("--range", type=listed(float, count=2), default="8,12", help="z1,z2")
    ap.add_argument("-n", type=positive(int), default=500)
    ap.add_argument("--seeds", type=listed(int), default="0,1,2")
    ap.add_argument("--threads", type=positive(int), default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    z1, z2 = a.range
    if not z1 < z2:
        ap.error(f"--range {z1:g},{z2:g}: give z1 < z2")
    t = time.perf_counter()
    cnn = digits("cnn", seed=0)
    vae = digits_vae(seed=0)
    print(
        f"digits CNN acc {cnn.accuracy:.3f}; VAE (dim {vae.dim}) recon |err| "
        f"{vae.recon_error:.3f}; trained in {time.perf_counter() - t:.1f} s"
    )
    model = cnn.model
    space = Latent(vae.decoder, vae.dim, bound=3.0, domain=Box(0, 1, shape=(1, 8, 8)))
    enc = make_encoder(model, None)
    methods = {
        "(a) ours (defaults: K=10, sq, plain walk step 0.025)": lambda s: ours(
            model, space, a.target, z1, z2, a.n, s
        ),
        "(a) ours, Adam walk step 0.1": lambda s: ours(
            model, space, a.target, z1, z2, a.n, s, walk_optimizer="adam", step=0.1
        ),
        "(a) ours, Adam walk step 0.02": lambda s: ours(
            model, space, a.target, z1, z2, a.n, s, walk_optimizer="adam", step=0.02
        ),
        "(a) ours, memory = last batch only": lambda s: ours(
            model, space, a.target, z1, z2, a.n, s, memory="last"
        ),
        "(a) ours, log-distance diversity": lambda s: ours(
            model, space, a.target, z1, z2, a.n, s, diversity="log"
        ),
        "(a) ours, no seed redraws (paper)": lambda s: ours(
            model, space, a.target, z1, z2, a.n, s, seed_restarts=False
        ),
        "(a) ours, K=50": lambda s: ours(model, space, a.target, z1, z2, a.n, s, K=50),
        "(a) ours, walk margin 0 (whole range)": lambda s: ours(
            model, space, a.target, z1, z2, a.n, s, walk_margin=0.0
        ),
        "(a) ours, plain steps in seeding too (paper)": lambda s: ours(
            model, space, a.target, z1, z2, a.n, s, optimizer="sgd"
        ),
        "(b) multi-start projected gradient": lambda s: multistart(
            model, space, a.target, z1, z2, a.n, s
        ),
        "(c) rejection from the prior": lambda s: rejection(model, space, a.target, z1, z2, a.n, s),
        "(d) Langevin in latent space": lambda s: langevin(model, space, a.target, z1, z2, a.n, s),
    }
    seeds = a.seeds
    print(f"query: {a.target} in [{z1:g}, {z2:g}], n={a.n}, E={enc.describe()}, seeds {seeds}")
    print(
        "in range: re-evaluated in range / asked for; E-div, E-NN (median E-distance to the "
        "nearest other sample) and costs per sample: over the in-range samples; steps (seed "
        "0): (a) seeding+sampling, (b) median first in-range step/last step, (d) Langevin "
        "steps; range coverage: per seed, how many of 8 equal bins of the range hold an "
        "in-range sample"
    )
    head = (
        f"{'method':52s} {'in range':>10s} {'E-div':>13s} {'E-NN':>6s} {'grad/sample':>11s} "
        f"{'fwd/sample':>10s} {'ms/sample':>9s} {'steps':>9s}  range coverage (8 bins)"
    )
    print(head)
    print("-" * len(head))
    asked = a.n * len(seeds)
    for name, fn in methods.items():
        rows, notes = [], []
        for s in seeds:
            t = time.perf_counter()
            r = fn(s)
            dt = time.perf_counter() - t
            notes.append(f"seed {s}: {r.get('note', r['status'])}")
            ok, e = verify(model, a.target, z1, z2, r["xs"], enc)
            k = max(int(ok.sum()), 1)
            p = Problem.build(model, a.target, Goal.range(z1, z2), Box(0, 1))
            xs = torch.as_tensor(r["xs"], dtype=torch.float32)
            vals = p.values(xs) if len(xs) else []
            cover = np.histogram(vals, bins=8, range=(z1, z2))[0]
            rows.append(
                (
                    int(ok.sum()),
                    _mean_pairwise(e[ok]) or float("nan"),
                    r.get("grad_evals", 0) / k,
                    r["fevals"] / k,
                    1000 * dt / k,
                    r["steps"],
                    int((cover > 0).sum()),
                    median_nearest(e[ok]),
                )
            )
        good = sum(r[0] for r in rows)
        div = np.array([r[1] for r in rows])
        if good == 0:
            print(f"{name:52s} {f'0/{asked}':>10s}  no sample in range; {'; '.join(notes)}")
            continue
        ge, fe, ms = (np.mean([r[i] for r in rows if r[0]]) for i in (2, 3, 4))
        print(
            f"{name:52s} {f'{good}/{asked}':>10s} "
            f"{f'{np.nanmean(div):.3f}±{np.nanstd(div):.3f}':>13s} "
            f"{np.nanmean([r[7] for r in rows]):6.3f} {ge:11.1f} {fe:10.1f} "
            f"{ms:9.2f} {rows[0][5]:>9s}  {[r[6] for r in rows]}"
        )


if __name__ == "__main__":
    main()
