"""The Markdown model card of the chest network, rendered from the metadata the training code writes.

``render_model_card(meta) -> str``; ``cv_table(cv) -> str`` (the cross-validation table, also reprinted by
``benchmarks/segmentation.py``). Every number comes from the metadata (``lesion_unet.json``).
"""

from __future__ import annotations

import math
from typing import Any

#: rows of the CV table: (metric key, label, digits)
CV_ROWS: tuple[tuple[str, str, int], ...] = (
    ("dice", "Dice, infection (binary)", 3),
    ("sensitivity", "sensitivity", 3),
    ("specificity", "specificity", 3),
    ("ggo_dice", "Dice, ground-glass opacity", 3),
    ("consolidation_dice", "Dice, consolidation", 3),
    ("hd95_px", "HD95, infection (pixels of the export)", 1),
    ("lesion_inside_lung_pct", "expert lesion inside the lung mask, % (mean per slice)", 1),
)


def _cell(entry: dict[str, Any] | None, digits: int) -> str:
    if not entry or entry.get("n", 0) == 0 or not math.isfinite(entry.get("mean", float("nan"))):
        return "–"
    lo, hi = entry["ci95"]
    return f"{entry['mean']:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def cv_table(cv: dict[str, Any]) -> str:
    """Markdown table: mean over slices [95 % bootstrap CI] of each metric, for the shipped recipe (teacher +
    pseudo-labels + student), the teacher alone (no unlabeled slices) and the threshold baseline."""
    cols = [("network (shipped recipe)", cv.get("summary")), ("teacher only (no unlabeled)", cv.get("teacher_summary"))]
    cols.append(("threshold baseline", cv.get("threshold_summary")))
    cols = [(name, s) for name, s in cols if s]
    lines = ["| metric | " + " | ".join(n for n, _ in cols) + " |", "|---|" + "---|" * len(cols)]
    for key, label, digits in CV_ROWS:
        lines.append(f"| {label} | " + " | ".join(_cell(s.get(key), digits) for _, s in cols) + " |")
    pooled = [
        cv.get("pooled_inside_pct"),
        cv.get("teacher_pooled_inside_pct"),
        cv.get("pooled_inside_pct"),  # the threshold baseline runs inside the same lung mask
    ][: len(cols)]
    lines.append(
        "| expert lesion inside the lung mask, % (pooled pixels) | "
        + " | ".join("–" if v is None or not math.isfinite(v) else f"{v:.1f}" for v in pooled)
        + " |"
    )
    return "\n".join(lines)


def lesion_decision_text(sel: dict[str, Any] | None) -> str:
    """A paragraph on how the lesion decision threshold was chosen (``train.select_lesion_decision``)."""
    if not sel:
        return ""
    rows = "; ".join(
        f"{t}: Dice {sel['cv_dice'][t]:.3f}"
        + (f", healthy phantom {sel['healthy_phantom_ml'][t]:.1f} mL" if t in sel.get("healthy_phantom_ml", {}) else "")
        for t in sel["cv_dice"]
    )
    return (
        "\n\n**Lesion decision.** Inside the lung a pixel is lesion when P(GGO) + P(consolidation) ≥ t × "
        f"(P(GGO) + P(consolidation) + P(lung)); t = **{sel['chosen']}**, the candidate with the best "
        f"cross-validated Dice among those that leave the lesion-free sample phantom under "
        f"{sel['healthy_phantom_max_ml']:.0f} mL of lesion ({rows}). The table above is for the chosen t, "
        "so it is slightly optimistic; the estimate of the choice itself (nested: each fold scored with the t "
        f"chosen on the other four folds, choices {sel['nested_choices']}) is Dice **{sel['nested_dice']:.3f}**."
    )


def render_model_card(meta: dict[str, Any], appendix: str = "") -> str:
    """The model card (Markdown) of a trained chest network from its metadata."""
    cfg = meta.get("config", {})
    info = meta.get("training", {})
    cv = meta.get("cv") or {}
    groups = ", ".join("{" + ", ".join(g) + "}" for g in meta.get("near_duplicate_groups", []))
    folds = cv.get("folds") or []
    fold_txt = "; ".join(f"fold {i}: {', '.join(f)}" for i, f in enumerate(folds)) or "(not run)"
    minutes = info.get("train_seconds", float("nan")) / 60.0
    cv_minutes = [s / 60.0 for s in cv.get("train_seconds_per_fold", []) if s == s]
    if cv.get("n_folds_done", 0) == 5:
        cv_md = cv_table(cv) + lesion_decision_text(cv.get("lesion_decision"))
    else:
        cv_md = f"*Cross-validation not available with these weights ({cv.get('n_folds_done', 0)} of 5 folds).*"
    from .lesions import MIN_NETWORK_LESION_ML

    text = f"""# Model card: `lesion_unet` — chest network: lung, ground-glass opacity, consolidation

**Research use only. Not a medical device; not for diagnosis or treatment decisions.**

| | |
|---|---|
| file | `workbench/models/lesion_unet.pt` (float16 weights + metadata; `lesion_unet.json` sidecar) |
| sha256 of the weights | `{meta.get("weights_sha256", "")}` |
| version | {meta["version"]} |
| trained (UTC) | {meta["date"]} |
| architecture | {meta["architecture"]}, channels {tuple(meta["channels"])}, strides {tuple(meta["strides"])}, {meta["num_res_units"]} residual unit per level, batch norm; random initialisation (no downloaded weights); 1 input channel, 4 output classes {tuple(meta["classes"])} |
| input | {meta["in_plane_size"]} × {meta["in_plane_size"]} crop of an axial slice, HU window [{meta["window_hu"][0]:.0f}, {meta["window_hu"][1]:.0f}] → [0, 1] |
| training | teacher {cfg.get("teacher_iterations")} + student {cfg.get("student_iterations")} iterations of batch {cfg.get("batch_size")} (labeled {cfg.get("frac_labeled")}, pseudo-labeled {cfg.get("frac_pseudo")}, phantom {cfg.get("frac_phantom")} of each batch), AdamW (weight decay {cfg.get("weight_decay")}) + one-cycle LR (max {cfg.get("lr")}), cross-entropy + soft Dice (lung, GGO, consolidation), seed {cfg.get("seed")} |
| where / how long | {meta.get("trained_on", "")}: {minutes:.0f} min for the shipped model (teacher {info.get("teacher_seconds", float("nan")) / 60:.0f} min, pseudo-labels + student {info.get("student_seconds", float("nan")) / 60:.0f} min); the 5-fold cross-validation took {sum(cv_minutes):.0f} min of training in all; torch {meta.get("torch_version", "")} |
| training data sha256 | labeled: `{meta.get("training_data_sha256", "")}` (file list + contents of the 50 slices + phantom recipe); unlabeled: `{meta.get("unlabeled_data_sha256", "")}` |
| code | `workbench/segmentation/networks.py` (network, mapping, inference), `workbench/segmentation/train.py` (training, CV), `workbench/segmentation/realslices.py` (real slices, folds, metrics); regenerate with `workbench train-lesions` |

## Intended use
One pass of this network per axial slice serves two product steps:
`segment_lungs(ct)` = on a volume, the classical aerated lung ∪ the network's dense lung (consolidation,
dense ground glass) that borders it, so that diseased lung stays lung; on a single slice, the network's
lung; split right / left. `segment_lesions(ct, lungs, method="unet")` = the network's GGO (label 1) and
consolidation (label 2) pixels inside that lung mask. For research biomarkers of COVID-19 pneumonia (lesion volume, extent,
GGO / consolidation share, severity score).

## Data
* **Labeled real (all 50 slices):** COVID-SemiSeg multiclass slices (Fan D.-P. et al., *Inf-Net*, IEEE TMI
  2020; from the "COVID-19 CT segmentation dataset" of medicalsegmentation.com / SIRM, radiologist
  annotation): 8-bit lung-window JPG + labels 0/1/2, transposed back to CTScan orientation. Lesion
  classes from the experts; **lung class = aerated lung of the slice (lung-air threshold, two largest
  regions, closing, hole filling) ∪ the expert lesion**, holes filled. The shipped model uses all
  {meta.get("n_labeled_slices")} slices; the figures below are cross-validated.
* **Unlabeled real:** {meta.get("n_unlabeled_slices")} slices of 20 other patients (COVID-SemiSeg "COVID-19 CT
  Collection", from Ma J. et al., Zenodo 3757476), turned to CTScan orientation per source (coronacases.org:
  rotated 90°; Radiopaedia: transposed), the coronacases.org volumes (exported with a much wider window:
  soft tissue at grey ≈ 0.36 instead of ≈ 0.84) rescaled so that soft tissue lands where it is in the
  labeled exports. Labels: the teacher's own pseudo-labels (mean softmax of the slice and its mirror);
  pixels with top probability < {cfg.get("pseudo_threshold")} are ignored by the loss
  ({100 * info.get("pseudo_label_kept_fraction", float("nan")):.0f} % of the pixels kept). The published
  pseudo-labels of these images were not used.
* **Synthetic:** {meta.get("n_phantom_slices")} axial slices of `workbench.synthetic.make_phantom` phantoms
  ({meta.get("phantom_recipe")}): exact lung and lesion labels, lesion-free lung, apex, bases and
  slices without lung. Not used for evaluation (the phantoms of tests and benchmarks have other seeds).
* Not used for training: the TotalSegmentator example (kept as an independent test of the lung mask).

## Input mapping
* HU are clipped to **[{meta["window_hu"][0]:.0f}, {meta["window_hu"][1]:.0f}] HU** and scaled to [0, 1];
  JPG grey values g are read as g / 255. Derivation: in the 50 labeled JPGs air is at grey 0-10, the
  lung-parenchyma histogram mode at grey 27-70 (median 44) and mediastinal soft tissue at 197-232
  (median 214); with air = -1000 HU, aerated lung ≈ -850 HU and soft tissue ≈ +40 HU a linear fit gives
  255 ≈ +250 HU. Individual exports were made with other windows; the augmentation covers that spread.
* Geometry (`networks.chest_box`): one square box per volume around the air-like voxels inside the body
  (lungs and airways) + {100 * meta["crop_margin"]:.0f} % margin, resampled to {meta["in_plane_size"]} ×
  {meta["in_plane_size"]}; an exported slice (tissue along at least three of its four edges) is already such a
  crop and is used whole. Class probabilities are resampled back bilinearly.
* Test-time augmentation: mean softmax of the slice and its left-right mirror.
* Decision (`networks.decode`): lung where P(background) < 0.5; lesion there where P(GGO) +
  P(consolidation) ≥ t × (P(GGO) + P(consolidation) + P(lung)) with t = {(cv.get("lesion_decision") or {}).get("chosen", 0.5)}
  (see "Lesion decision" below), consolidation where P(consolidation) > P(GGO). Pixels with
  0.5 ≤ P(background) < {meta.get("lung_decision", 0.8)} are an uncertain lung border, counted as lung only where no classical
  aerated-lung border exists (a single slice): experts draw subpleural lesions up to the chest wall.

## Training
Noisy-student self-training: a teacher is trained on labeled + phantom slices; it pseudo-labels the
unlabeled slices; the student (initialised from the teacher) is trained on labeled, pseudo-labeled and
phantom slices. Augmentation (`train.augment_batch`): flips, ±15° rotation, ±15 % scale, ±8 % shift; a
different export window (contrast × 0.7-1.4, brightness -0.06..+0.16, gamma 0.6-1.5), blur, noise.
Deterministic (seeded; one torch thread).

## Cross-validated evaluation (50 labeled slices, 5 folds)
Protocol: the whole recipe (teacher, pseudo-labels, student) is re-run in each fold on the other 4 folds;
the held-out slices go through **the product** — a 1-slice CT (JPG grey → HU through the window above,
0.75 mm pixels) → `segment_lungs` → `segment_lesions` — and are scored against the experts at the
export's resolution. Near-duplicate slices share a fold: single-linkage groups of slices whose 64 × 64
area-resized images correlate at Pearson r ≥ 0.84 ({groups}; unrelated chest slices correlate at about
0.70-0.82). Folds: {fold_txt}.
Metrics per slice, then averaged over slices (published Inf-Net protocol): Dice, sensitivity and
specificity of the binary infection mask over all pixels of the slice; Dice of GGO and of consolidation
(slices where the class is absent from both prediction and truth are skipped); HD95 (`monai.metrics`,
pixels of the export; slices with an empty prediction skipped); the share of the expert lesion inside
the product's lung mask. 95 % CIs: percentile bootstrap over slices (2,000 resamples).

{cv_md}

Published reference on the separate 48-slice COVID-SemiSeg test split (binary infection, mean over
images): U-Net 0.439, Inf-Net 0.682, Semi-Inf-Net 0.739 Dice (sensitivity 0.725, specificity 0.960);
multi-class Inf-Net GGO Dice 0.624-0.646, consolidation 0.238-0.362. These are not the same slices:
the comparison is indicative.

## Limitations
* 50 labeled slices from one public source (Italian cases, 2020) and 20 unlabeled patients: small data;
  expect lower accuracy on other scanners, kernels, slice thicknesses, children, and non-COVID disease
  (fibrosis, oedema, tumours and effusions are not classes; an effusion may be called consolidation).
* Real training images are 8-bit JPG exports of unknown window: the HU mapping is an estimate.
* 2D slice by slice: no 3D context. On a volume, `segment_lesions` adds two 3D steps: vessels (with their
  partial-volume rim) are taken out of the ground glass, and lesion components under {MIN_NETWORK_LESION_ML:g} mL
  are dropped, so that a healthy scan measures (almost) no lesion; small isolated lesions are missed.
* The lung label of the real slices is an automatic aerated-lung mask ∪ the expert lesion, not a
  manual lung outline.
* The GGO / consolidation boundary is a radiological judgement; inter-reader agreement is itself far
  from perfect.
"""
    if appendix:
        text += "\n" + appendix.strip() + "\n"
    return text
