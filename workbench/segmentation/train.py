"""Training of the chest network (background / lung / GGO / consolidation), semi-supervised, with
grouped 5-fold cross-validation through the product's own segmentation.

``train_lesion_model(out_path) -> dict`` trains the network of :mod:`workbench.segmentation.networks` and
writes weights + metadata + model card; ``cross_validate(...)`` produces the figures of the card.

Data (all through the product's input mapping, :func:`workbench.segmentation.realslices.network_pair`):

* **Labeled real:** the 50 expert-annotated COVID-SemiSeg slices. Lesion classes from the experts; the
  lung class is the aerated lung of the slice (``real_slice_lung_mask``) ∪ the expert lesion, holes
  filled — so that consolidated and ground-glass lung *is* lung.
* **Unlabeled real:** the 1,600 slices of ``covid_semiseg_unlabeled`` (20 other patients), pseudo-labeled
  by the teacher (mean softmax of the slice and its mirror; pixels whose top probability is below
  :attr:`TrainConfig.pseudo_threshold` are ignored by the loss).
* **Synthetic:** axial slices of ``workbench.synthetic.make_phantom`` phantoms (exact lung and lesion
  ground truth, including lesion-free slices and slices above and below the lungs).

Schedule (noisy-student self-training): a **teacher** is trained on labeled + phantom slices; it
pseudo-labels the unlabeled slices; a **student**, initialised from the teacher, is trained on labeled,
pseudo-labeled and phantom slices under strong augmentation (:func:`augment_batch`: flips, ±15° rotation,
scale, shift; random window/brightness/contrast/gamma, blur, noise — exports come with different windows). Loss: cross-entropy
+ soft Dice of the lung, GGO and consolidation classes. AdamW, one-cycle learning rate.

Deterministic: ``monai.utils.set_determinism(seed)``, seeded numpy generators, one torch thread by default.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from . import networks as nw
from . import realslices as rs

IGNORE = 255


@dataclass
class TrainConfig:
    """Everything that defines a training run (recorded in the model's metadata)."""

    teacher_iterations: int = 1600
    student_iterations: int = 1000
    batch_size: int = 8
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    use_unlabeled: bool = True
    use_phantoms: bool = True
    pseudo_threshold: float = 0.8
    #: share of each batch: labeled real slices, pseudo-labeled slices (student only), phantom slices
    frac_labeled: float = 0.5
    frac_pseudo: float = 0.35
    frac_phantom: float = 0.15
    size: int = nw.IN_PLANE_SIZE
    num_threads: int = 1

    def recipe(self) -> dict[str, Any]:
        return asdict(self)


# ------------------------------------------------------------------------------------------- data
def labeled_pairs(slices: list[rs.RealSlice], size: int = nw.IN_PLANE_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Labeled real slices -> (float32 ``[n, S, S]``, uint8 4-class labels ``[n, S, S]``)."""
    xs, ys = zip(*(rs.network_pair(s.image01, rs.four_class_label(s), size) for s in slices))
    return np.stack(xs), np.stack(ys)


#: phantoms used for training: (severity, seed, shape zyx); seeds 100+ are not used by any test or benchmark.
#: Two grids: ~1.5 mm in-plane, and ~3 mm like the sample cases (at 3 mm, bundles of small vessels blur
#: into GGO-like patches: without these, the network calls them GGO on the lesion-free sample phantom).
PHANTOM_SET: tuple[tuple[float, int, tuple[int, int, int]], ...] = (
    *((sev, seed, (48, 256, 256)) for sev, seed in ((0.0, 100), (0.15, 101), (0.3, 102), (0.45, 103))),
    *((sev, seed, (48, 256, 256)) for sev, seed in ((0.6, 104), (0.75, 105), (0.9, 106), (1.0, 107))),
    *((sev, seed, (96, 128, 128)) for sev, seed in ((0.0, 110), (0.0, 111), (0.2, 112), (0.4, 113))),
    *((sev, seed, (96, 128, 128)) for sev, seed in ((0.7, 114), (1.0, 115))),
)
PHANTOM_SLICES: int = 14


def phantom_pairs(size: int = nw.IN_PLANE_SIZE) -> tuple[np.ndarray, np.ndarray, str]:
    """Axial phantom slices through the product's mapping -> (images, 4-class labels, recipe string).

    Per phantom: :data:`PHANTOM_SLICES` slices spread evenly over the whole volume (so lesion-free lung,
    the apex, the bases and slices without lung are all seen)."""
    from ..synthetic import make_phantom

    imgs, labs = [], []
    for severity, seed, shape in PHANTOM_SET:
        ph = make_phantom(severity=severity, seed=seed, shape_zyx=shape)
        hu = np.asarray(ph.ct.hu)
        sx, sy, sz = ph.ct.spacing_mm
        lab4 = (np.asarray(ph.lungs) > 0).astype(np.uint8)
        les = np.asarray(ph.lesions)
        lab4[les == 1] = nw.GGO
        lab4[les == 2] = nw.CONSOLIDATION
        pick = np.linspace(0, hu.shape[0] - 1, PHANTOM_SLICES).round().astype(int)
        box = nw.chest_box(hu, (sz, sy, sx))
        img = nw.crop_square(nw.window_hu(hu[pick]), box, fill=0.0)
        lab = nw.crop_square(lab4[pick].astype(np.float32), box, fill=0)
        imgs.append(nw.resize_stack(img, size).numpy())
        labs.append(nw.resize_stack(lab, size, mode="nearest").numpy().astype(np.uint8))
    recipe = f"make_phantom (severity, seed, shape) {list(PHANTOM_SET)} slices={PHANTOM_SLICES}"
    return np.concatenate(imgs), np.concatenate(labs), recipe


# ------------------------------------------------------------------------------------------- augmentation
def augment_batch(x: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random augmentation of a batch ``x [B, 1, S, S]`` in [0, 1], ``y [B, S, S]`` (labels), per sample:

    * geometry (p 0.8): rotation ±15°, isotropic scale 0.85-1.15, shift ±8 % (one ``grid_sample`` for the
      batch; bilinear for the image, nearest for the labels; air / background outside); left-right flip (p 0.5);
    * a different export window (p 0.6 each): contrast × 0.7-1.4 (about air = 0), brightness +(-0.06..0.16),
      clipped to [0, 1]; gamma 0.6-1.5 (p 0.5); Gaussian blur σ ≈ 0.7 px (p 0.15); noise σ 0.025 (p 0.3).
    """
    b = x.shape[0]

    def u(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(b, generator=gen)

    def p(prob: float) -> torch.Tensor:
        return torch.rand(b, generator=gen) < prob

    geo = p(0.8)
    angle = torch.where(geo, u(-0.26, 0.26), torch.zeros(b))
    scale = torch.where(geo, u(0.85, 1.15), torch.ones(b))
    tx = torch.where(geo, u(-0.16, 0.16), torch.zeros(b))
    ty = torch.where(geo, u(-0.16, 0.16), torch.zeros(b))
    flip = torch.where(p(0.5), -1.0, 1.0)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos * flip, -sin, tx], 1), torch.stack([sin * flip, cos, ty], 1)], 1)  # [B, 2, 3]
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    yf = F.grid_sample(y[:, None].float(), grid, mode="nearest", padding_mode="zeros", align_corners=False)
    y = yf[:, 0].round().long()

    v = lambda t: t.view(b, 1, 1, 1)  # noqa: E731
    x = x * v(torch.where(p(0.6), u(0.7, 1.4), torch.ones(b)))
    x = (x + v(torch.where(p(0.6), u(-0.06, 0.16), torch.zeros(b)))).clamp(0.0, 1.0)
    x = x.clamp_min(1e-6) ** v(torch.where(p(0.5), u(0.6, 1.5), torch.ones(b)))
    blur = p(0.15)
    if blur.any():
        k = torch.tensor([0.25, 0.5, 0.25])
        kern = (k[:, None] * k[None, :])[None, None]
        xb = F.conv2d(F.pad(x[blur], (1, 1, 1, 1), mode="replicate"), kern)
        x = x.clone()
        x[blur] = xb
    noise = v(torch.where(p(0.3), torch.full((b,), 0.025), torch.zeros(b)))
    x = (x + noise * torch.randn(x.shape, generator=gen)).clamp(0.0, 1.0)
    return x, y


# ------------------------------------------------------------------------------------------- loss
def dice_ce_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy + soft Dice (batch-wise, classes lung / GGO / consolidation); label 255 is ignored."""
    valid = target != IGNORE
    ce = F.cross_entropy(logits, target, ignore_index=IGNORE)
    probs = torch.softmax(logits, dim=1)
    t = torch.where(valid, target, torch.zeros_like(target))
    onehot = F.one_hot(t, logits.shape[1]).permute(0, 3, 1, 2).float() * valid[:, None]
    p = probs * valid[:, None]
    dims = (0, 2, 3)
    inter = (p * onehot).sum(dims)
    den = p.sum(dims) + onehot.sum(dims)
    dice = 1.0 - (2.0 * inter + 1.0) / (den + 1.0)
    return ce + dice[1:].mean()


# ------------------------------------------------------------------------------------------- training
def _train(
    net: torch.nn.Module,
    pools: list[tuple[np.ndarray, np.ndarray, float]],
    iterations: int,
    cfg: TrainConfig,
    seed: int,
    log: Any = None,
) -> list[float]:
    """Train ``net`` in place for ``iterations`` batches drawn from ``pools`` = [(images, labels, share)]."""
    from monai.utils import set_determinism

    set_determinism(seed=seed)
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    pools = [p for p in pools if len(p[0]) and p[2] > 0]
    shares = np.array([p[2] for p in pools], float)
    counts = np.maximum(1, np.round(shares / shares.sum() * cfg.batch_size).astype(int))
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=max(iterations, 1))
    history: list[float] = []
    t0 = time.time()
    running = []
    net.train()
    for it in range(iterations):
        xb, yb = [], []
        for (x, y, _share), c in zip(pools, counts):
            idx = rng.integers(0, len(x), size=c)
            xi = torch.as_tensor(x[idx]).float()
            xb.append(xi / 255.0 if x.dtype == np.uint8 else xi)
            yb.append(torch.as_tensor(y[idx]).long())
        xt, yt = augment_batch(torch.cat(xb)[:, None], torch.cat(yb), gen)
        xt = xt.contiguous(memory_format=torch.channels_last)
        opt.zero_grad()
        loss = dice_ce_loss(net(xt), yt)
        loss.backward()
        opt.step()
        sched.step()
        running.append(float(loss.detach()))
        if (it + 1) % 50 == 0 or it + 1 == iterations:
            history.append(float(np.mean(running)))
            running = []
            if log:
                log(f"  it {it + 1:5d}/{iterations} loss {history[-1]:.4f} ({time.time() - t0:.0f} s)")
    net.eval()
    return history


def pseudo_labels(net: torch.nn.Module, images_u8: np.ndarray, threshold: float) -> tuple[np.ndarray, float]:
    """Teacher labels of the unlabeled slices (flip TTA); pixels less confident than ``threshold`` -> 255.

    Returns (uint8 labels ``[n, S, S]``, fraction of pixels kept)."""
    out = np.zeros(images_u8.shape, np.uint8)
    kept = 0
    for b in range(0, len(images_u8), 32):
        x = torch.as_tensor(images_u8[b : b + 32].astype(np.float32) / 255.0)
        p = nw.predict_probabilities(net, x, tta=True)
        conf, lab = p.max(dim=1)
        lab = lab.numpy().astype(np.uint8)
        low = conf.numpy() < threshold
        lab[low] = IGNORE
        kept += int((~low).sum())
        out[b : b + 32] = lab
    return out, kept / max(out.size, 1)


def fit_network(
    labeled: tuple[np.ndarray, np.ndarray],
    cfg: TrainConfig,
    phantoms: tuple[np.ndarray, np.ndarray] | None = None,
    unlabeled: np.ndarray | None = None,
    log: Any = print,
    on_teacher: Any = None,
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Teacher (labeled + phantoms), then — with ``unlabeled`` — pseudo-labels and a student.

    ``on_teacher(net)`` is called with the trained teacher before the student starts (CV uses it to
    evaluate the teacher: the gain of the unlabeled slices)."""
    torch.set_num_threads(cfg.num_threads)
    from monai.utils import set_determinism

    set_determinism(seed=cfg.seed)
    ph = phantoms if (phantoms is not None and cfg.use_phantoms) else (labeled[0][:0], labeled[1][:0])
    info: dict[str, Any] = {}
    net = nw.build_lesion_net().to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    t0 = time.time()
    log(f"teacher: {len(labeled[0])} labeled + {len(ph[0])} phantom slices, {cfg.teacher_iterations} iterations")
    info["teacher_loss"] = _train(
        net,
        [(labeled[0], labeled[1], cfg.frac_labeled), (ph[0], ph[1], cfg.frac_phantom)],
        cfg.teacher_iterations,
        cfg,
        cfg.seed,
        log,
    )
    info["teacher_seconds"] = round(time.time() - t0, 1)
    if on_teacher is not None:
        on_teacher(net)
    if unlabeled is not None and cfg.use_unlabeled and cfg.student_iterations > 0:
        t1 = time.time()
        y_u, kept = pseudo_labels(net, unlabeled, cfg.pseudo_threshold)
        info["pseudo_label_kept_fraction"] = round(kept, 4)
        info["pseudo_label_class_fractions"] = [round(float((y_u == c).mean()), 4) for c in range(len(nw.CLASSES))]
        log(f"pseudo-labels: {len(unlabeled)} slices, {100 * kept:.1f} % of pixels confident")
        info["student_loss"] = _train(
            net,
            [
                (labeled[0], labeled[1], cfg.frac_labeled),
                (unlabeled, y_u, cfg.frac_pseudo),
                (ph[0], ph[1], cfg.frac_phantom),
            ],
            cfg.student_iterations,
            cfg,
            cfg.seed + 1,
            log,
        )
        info["student_seconds"] = round(time.time() - t1, 1)
    info["train_seconds"] = round(time.time() - t0, 1)
    return net, info


# ------------------------------------------------------------------------------------------- CV
def evaluate_slices(
    slices: list[rs.RealSlice], weights: str | Path | None = None, lesion_method: str = "unet"
) -> dict[str, dict[str, float]]:
    """Per-slice metrics of the product (``segment_lungs`` + ``segment_lesions``) on real slices."""
    out = {}
    for s in slices:
        lungs, lesions = rs.segment_real_slice(s, weights=weights, lesion_method=lesion_method)
        m = rs.slice_metrics(lesions, s.labels, lungs)
        m["lesion_px"] = float((s.labels > 0).sum())
        m["lesion_inside_px"] = float(((s.labels > 0) & (lungs > 0)).sum())
        out[s.name] = m
    return out


def pooled_inside_pct(per_slice: dict[str, dict[str, float]]) -> float:
    """% of all expert lesion pixels (pooled over slices) inside the product's lung mask."""
    tot = sum(v["lesion_px"] for v in per_slice.values())
    return 100.0 * sum(v["lesion_inside_px"] for v in per_slice.values()) / max(tot, 1.0)


def cross_validate(
    cfg: TrainConfig,
    out_dir: str | Path,
    folds_to_run: list[int] | None = None,
    k: int = 5,
    log: Any = print,
) -> dict[str, Any]:
    """Grouped k-fold CV over the 50 labeled slices: per fold, the whole training recipe (teacher,
    pseudo-labels, student) on the other folds, then the product evaluated on the held-out fold.

    Writes ``fold<k>.pt`` and ``fold<k>.json`` (per-slice metrics, timings) to ``out_dir``; returns the
    merged results of the folds found there (see :func:`collect_cv`)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    slices = rs.load_real_slices()
    folds = rs.cv_folds(slices, k=k, seed=cfg.seed)
    by_name = {s.name: s for s in slices}
    ph = phantom_pairs(cfg.size) if cfg.use_phantoms else None
    unl = rs.load_unlabeled_images(cfg.size)[0] if cfg.use_unlabeled else None
    for f in folds_to_run if folds_to_run is not None else range(k):
        held = folds[f]
        train_slices = [s for s in slices if s.name not in held]
        log(f"fold {f}: held out {', '.join(held)}")
        held_slices = [by_name[n] for n in held]
        teacher_eval: dict[str, Any] = {}

        def eval_teacher(
            net: torch.nn.Module,
            f: int = f,
            held: tuple[str, ...] = held,
            held_slices: list[rs.RealSlice] = held_slices,
            teacher_eval: dict[str, Any] = teacher_eval,
        ) -> None:
            tpath = out_dir / f"fold{f}_teacher.pt"
            nw.save_lesion_model(net, {**_arch_meta(), "fold": f, "held_out": list(held), "stage": "teacher"}, tpath)
            teacher_eval.update(evaluate_slices(held_slices, weights=tpath))
            s = rs.summarize(teacher_eval)
            log(f"fold {f} teacher: dice {s['dice']['mean']:.3f} inside {pooled_inside_pct(teacher_eval):.1f} %")

        net, info = fit_network(
            labeled_pairs(train_slices, cfg.size), cfg, ph[:2] if ph else None, unl, log, on_teacher=eval_teacher
        )
        wpath = out_dir / f"fold{f}.pt"
        nw.save_lesion_model(net, {**_arch_meta(), "fold": f, "held_out": list(held)}, wpath)
        t0 = time.time()
        per = evaluate_slices(held_slices, weights=wpath)
        thr = evaluate_slices(held_slices, weights=wpath, lesion_method="threshold")
        rec = {
            "fold": f,
            "held_out": list(held),
            "config": cfg.recipe(),
            "info": info,
            "eval_seconds": round(time.time() - t0, 1),
            "per_slice": per,
            "per_slice_threshold": thr,
            "per_slice_teacher": teacher_eval,
        }
        (out_dir / f"fold{f}.json").write_text(json.dumps(rec, indent=1))
        s = rs.summarize(per)
        log(
            f"fold {f}: dice {s['dice']['mean']:.3f} ggo {s['ggo_dice']['mean']:.3f} "
            f"cons {s['consolidation_dice']['mean']:.3f} inside {pooled_inside_pct(per):.1f} %"
        )
    return collect_cv(out_dir, k)


def collect_cv(out_dir: str | Path, k: int = 5) -> dict[str, Any]:
    """Merge the fold files of a CV run: per-slice metrics, the summary with 95 % CIs, folds, timings."""
    out_dir = Path(out_dir)
    per: dict[str, dict[str, float]] = {}
    per_thr: dict[str, dict[str, float]] = {}
    per_teacher: dict[str, dict[str, float]] = {}
    folds, seconds = [], []
    for f in range(k):
        p = out_dir / f"fold{f}.json"
        if not p.is_file():
            continue
        rec = json.loads(p.read_text())
        per.update(rec["per_slice"])
        per_thr.update(rec.get("per_slice_threshold", {}))
        per_teacher.update(rec.get("per_slice_teacher", {}))
        folds.append(rec["held_out"])
        seconds.append(rec["info"].get("train_seconds", float("nan")))
    return {
        "n_folds_done": len(folds),
        "folds": folds,
        "per_slice": per,
        "summary": rs.summarize(per) if per else {},
        "pooled_inside_pct": pooled_inside_pct(per) if per else float("nan"),
        "threshold_summary": rs.summarize(per_thr) if per_thr else {},
        "teacher_summary": rs.summarize(per_teacher) if per_teacher else {},
        "teacher_pooled_inside_pct": pooled_inside_pct(per_teacher) if per_teacher else float("nan"),
        "train_seconds_per_fold": seconds,
    }


def reevaluate_cv(cv_dir: str | Path, k: int = 5) -> dict[str, Any]:
    """Recompute the per-slice metrics of the fold models in ``cv_dir`` through the current product code
    (``segment_lungs`` + ``segment_lesions``; fold weights unchanged), rewrite the fold files and return
    :func:`collect_cv`. Used when the lung or decoding code changes after the folds were trained."""
    cv_dir = Path(cv_dir)
    slices = {s.name: s for s in rs.load_real_slices()}
    for f in range(k):
        rec_path = cv_dir / f"fold{f}.json"
        if not rec_path.is_file():
            continue
        rec = json.loads(rec_path.read_text())
        held = [slices[n] for n in rec["held_out"]]
        t0 = time.time()
        rec["per_slice"] = evaluate_slices(held, weights=cv_dir / f"fold{f}.pt")
        rec["per_slice_threshold"] = evaluate_slices(held, weights=cv_dir / f"fold{f}.pt", lesion_method="threshold")
        if (cv_dir / f"fold{f}_teacher.pt").is_file():
            rec["per_slice_teacher"] = evaluate_slices(held, weights=cv_dir / f"fold{f}_teacher.pt")
        rec["eval_seconds"] = round(time.time() - t0, 1)
        rec_path.write_text(json.dumps(rec, indent=1))
    return collect_cv(cv_dir, k)


#: the lesion-free sample phantom may keep at most this much false lesion (mL) with a lesion decision
HEALTHY_PHANTOM_MAX_ML: float = 10.0


def select_lesion_decision(cv_dir: str | Path, weights: str | Path = nw.DEFAULT_WEIGHTS, k: int = 5) -> dict[str, Any]:
    """How :data:`networks.LESION_DECISION` is chosen, recomputed: for each candidate of
    :data:`networks.LESION_DECISION_CANDIDATES`, the cross-validated mean Dice of the fold models in
    ``cv_dir`` on their held-out real slices (through the product) and the false lesion volume (mL) of the
    lesion-free sample phantom ``phantom_none`` with the shipped ``weights``. ``chosen``: the best Dice
    among the candidates under :data:`HEALTHY_PHANTOM_MAX_ML`. ``nested_dice``: the estimate of this choice
    itself — each fold scored with the candidate chosen on the other folds' slices."""
    from ..io import load_ct
    from ..paths import sample_data_dir
    from .lesions import segment_lesions
    from .lungs import segment_lungs

    cv_dir = Path(cv_dir)
    slices = {s.name: s for s in rs.load_real_slices()}
    held = {f: json.loads((cv_dir / f"fold{f}.json").read_text())["held_out"] for f in range(k)}
    phantom = sample_data_dir() / "cases" / "phantom_none.nii.gz"
    ct = load_ct(phantom) if phantom.is_file() else None
    per: dict[float, dict[str, float]] = {}
    healthy_ml: dict[float, float] = {}
    for t in nw.LESION_DECISION_CANDIDATES:
        with nw.lesion_decision(t):
            per[t] = {}
            for f in range(k):
                rows = evaluate_slices([slices[n] for n in held[f]], weights=cv_dir / f"fold{f}.pt")
                per[t].update({n: m["dice"] for n, m in rows.items()})
            if ct is not None:
                lesions = segment_lesions(ct, segment_lungs(ct, weights=weights), weights=weights)
                healthy_ml[t] = float((lesions > 0).sum()) * ct.voxel_volume_ml
    feasible = [t for t in per if healthy_ml.get(t, 0.0) < HEALTHY_PHANTOM_MAX_ML]

    def best(names: list[str]) -> float:
        return max(feasible, key=lambda t: (float(np.mean([per[t][n] for n in names])), t))

    nested_choices, nested = [], []
    for f in range(k):
        others = [n for g in range(k) if g != f for n in held[g]]
        t = best(others)
        nested_choices.append(t)
        nested += [per[t][n] for n in held[f]]
    everyone = [n for f in range(k) for n in held[f]]
    return {
        "candidates": list(per),
        "cv_dice": {str(t): float(np.mean(list(v.values()))) for t, v in per.items()},
        "healthy_phantom_ml": {str(t): v for t, v in healthy_ml.items()},
        "healthy_phantom_max_ml": HEALTHY_PHANTOM_MAX_ML,
        "chosen": best(everyone),
        "nested_choices": nested_choices,
        "nested_dice": float(np.mean(nested)),
    }


def refresh_model_cv(out_path: str | Path = nw.DEFAULT_WEIGHTS, cv_dir: str | Path = "results/lesion_cv") -> dict:
    """Re-evaluate the CV folds with the current code and rewrite the shipped model's metadata and card
    (the weights are not retrained)."""
    out_path = Path(out_path)
    ckpt = torch.load(out_path, map_location="cpu", weights_only=True)
    meta = dict(ckpt["meta"])
    meta["cv"] = reevaluate_cv(cv_dir)
    meta["cv"]["lesion_decision"] = select_lesion_decision(cv_dir, out_path)
    meta["cv_evaluated"] = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    net = nw.build_lesion_net()
    net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()})
    meta["weights_sha256"] = nw.save_lesion_model(net, meta, out_path)
    write_model_card(meta, out_path.with_suffix(".md"))
    return meta


# ------------------------------------------------------------------------------------------- shipped model
def _arch_meta() -> dict[str, Any]:
    return {
        "name": "lesion_unet",
        "version": nw.MODEL_VERSION,
        "architecture": "monai.networks.nets.UNet 2D",
        "channels": list(nw.NETWORK_CHANNELS),
        "strides": list(nw.NETWORK_STRIDES),
        "num_res_units": nw.NUM_RES_UNITS,
        "in_plane_size": nw.IN_PLANE_SIZE,
        "crop_margin": nw.CROP_MARGIN,
        "window_hu": list(nw.WINDOW_HU),
        "classes": list(nw.CLASSES),
        "lung_decision": nw.LUNG_DECISION,
    }


def train_lesion_model(
    out_path: str | Path = nw.DEFAULT_WEIGHTS,
    cfg: TrainConfig | None = None,
    cv_dir: str | Path | None = None,
    log: Any = print,
) -> dict[str, Any]:
    """Train the shipped chest network on all 50 labeled slices (+ unlabeled, + phantoms) and save
    weights ``.pt`` + metadata ``.json`` + model card ``.md`` to ``out_path``.

    ``cv_dir``: a folder with the fold results of :func:`cross_validate` run with the same ``cfg``; its
    cross-validated figures go into the metadata and the card (the card says when they are missing)."""
    cfg = cfg or TrainConfig()
    slices = rs.load_real_slices()
    names = tuple(s.name for s in slices)
    ph = phantom_pairs(cfg.size) if cfg.use_phantoms else None
    unl = rs.load_unlabeled_images(cfg.size)[0] if cfg.use_unlabeled else None
    net, info = fit_network(labeled_pairs(slices, cfg.size), cfg, ph[:2] if ph else None, unl, log)
    cv = collect_cv(cv_dir) if cv_dir is not None else None
    import platform

    meta: dict[str, Any] = {
        **_arch_meta(),
        "config": cfg.recipe(),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "trained_on": f"CPU ({platform.machine()}), {cfg.num_threads} torch thread(s), shared 2-core machine",
        "torch_version": str(torch.__version__),
        "n_labeled_slices": len(slices),
        "labeled_slices": list(names),
        "n_unlabeled_slices": 0 if unl is None else int(len(unl)),
        "n_phantom_slices": 0 if ph is None else int(len(ph[0])),
        "phantom_recipe": ph[2] if ph else "none",
        "training_data_sha256": rs.data_hash(names, extra=ph[2] if ph else ""),
        "unlabeled_data_sha256": rs.unlabeled_hash() if unl is not None else None,
        "near_duplicate_groups": [g for g in rs.near_duplicate_groups(slices) if len(g) > 1],
        "training": info,
        "cv": cv,
    }
    digest = nw.save_lesion_model(net, meta, out_path)
    meta["weights_sha256"] = digest
    write_model_card(meta, Path(out_path).with_suffix(".md"))
    if cv is not None and cv.get("n_folds_done", 0) == 5:  # the lesion decision needs the shipped weights too
        return refresh_model_cv(out_path, cv_dir)  # type: ignore[arg-type]
    return meta


def write_model_card(meta: dict[str, Any], path: str | Path, appendix: str = "") -> None:
    """Write the Markdown model card from the model's metadata (+ an optional appendix)."""
    from .model_card import render_model_card

    Path(path).write_text(render_model_card(meta, appendix))


__all__ = [
    "TrainConfig",
    "cross_validate",
    "collect_cv",
    "fit_network",
    "train_lesion_model",
    "reevaluate_cv",
    "refresh_model_cv",
    "select_lesion_decision",
]
