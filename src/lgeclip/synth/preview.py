"""Picture of synthetic scars like the paper's Figure 2: original, candidate region, scar weight, blended, sentence."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np

from lgeclip.synth.config import SynthScarCfg
from lgeclip.synth.scar import scar_region, synthesize_scar

_COLUMNS = ("original", "candidate region", "scar weight M", "blended", "sentence")


def _cache_slices(cache: Path, n: int, rng: np.random.Generator) -> list[dict]:
    from lgeclip.preprocess.cache import load_cached_slice, read_cache

    records = read_cache(cache)
    pool = [r for r in records if r.label == "negative"] or records
    order = rng.permutation(len(pool))[: 3 * n]  # spares for slices without a candidate region
    out = []
    for i in order:
        r = pool[int(i)]
        s = load_cached_slice(r.path, oriented=True)
        s.update(level=r.level, name=f"{Path(cache).name}/{r.slice_id}")
        out.append(s)
    return out


def _collect_rows(slices: list[dict], n: int | None, rng: np.random.Generator, cfg: SynthScarCfg,
                  skipped: list[dict]) -> list[tuple]:
    """Up to ``n`` rows (slice, region, weight, scarred, sentence, params); slices without a region are noted."""
    rows = []
    for s in slices:
        if n is not None and len(rows) >= n:
            break
        scarred, weight, sentence, params = synthesize_scar(
            s["image"], s["myocardium"], s["aha"], s["layers"], s["thickness"], s["level"], rng, cfg,
            pixel_mm=float(s.get("pixel_mm", 1.0)))
        if sentence is None:
            skipped.append({"name": s.get("name", ""), "reason": params["skipped"]})
            continue
        region = scar_region(s["myocardium"], s["aha"], s["layers"], params["segments"], params["layers"])
        rows.append((s, region, weight, scarred, sentence, params))
    return rows


def _render(rows: list[tuple], out_png: Path, title: str | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(rows), 5, figsize=(15, 2.9 * len(rows)), squeeze=False,
                             gridspec_kw={"width_ratios": [1, 1, 1, 1, 1.5]})
    for i, (s, region, weight, scarred, sentence, params) in enumerate(rows):
        img = np.asarray(s["image"], np.float32)
        myo = np.asarray(s["myocardium"]) > 0
        vmax = float(img.max()) or 1.0
        axes[i, 0].imshow(img, cmap="gray", vmin=0, vmax=vmax)
        overlay = np.dstack([img / vmax] * 3)
        overlay[myo] = overlay[myo] * 0.5 + [0.0, 0.25, 0.5]  # myocardium blue
        overlay[region] = overlay[region] * 0.3 + [0.7, 0.1, 0.1]  # candidate region red
        axes[i, 1].imshow(np.clip(overlay, 0, 1))
        axes[i, 2].imshow(weight, cmap="magma", vmin=0, vmax=1)
        axes[i, 3].imshow(scarred, cmap="gray", vmin=0, vmax=vmax)
        note = (f"{s.get('name', '')}\nsegments {params['segments']}, layers {params['layers']}\n"
                f"radii {params['radii'][0]:.1f}/{params['radii'][1]:.1f} px (th {params['thickness_px']:.1f} px), "
                f"sigma {params['sigma']:.1f}, gamma {params['gamma']:.2f}")
        axes[i, 4].text(0.0, 0.5, "\n".join(textwrap.wrap(sentence, 45)) + "\n\n" + note, fontsize=8,
                        va="center", ha="left", transform=axes[i, 4].transAxes)
        for j, ax in enumerate(axes[i]):
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(_COLUMNS[j], fontsize=10)
        axes[i, 4].axis("off")
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_png.with_name(f".{out_png.stem}.tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    tmp.replace(out_png)


def synth_preview_slices(groups: dict[str, list[dict]], out_png: str | Path, n: int = 6, seed: int = 0,
                         cfg: SynthScarCfg | None = None, title: str | None = None) -> dict:
    """Grid with up to ``n`` rows per group of slice dicts (image, myocardium, aha, layers, thickness, level,
    pixel_mm, optional name); slices without a candidate region at their level are passed over."""
    cfg = cfg or SynthScarCfg()
    rng = np.random.default_rng(seed)
    rows, skipped, counts = [], [], {}
    for name, slices in groups.items():
        got = _collect_rows(slices, n, rng, cfg, skipped)
        counts[name] = len(got)
        rows.extend(got)
    if not rows:
        raise ValueError(f"synth_preview: no slice had a candidate region: {skipped[:3]}")
    _render(rows, Path(out_png), title)
    return {"out": str(out_png), "rows": len(rows), "rows_per_group": counts, "sentences": [r[4] for r in rows],
            "skipped": skipped}


def synth_preview(caches: list[Path], out_png: Path, n: int = 6, seed: int = 0,
                  cfg: SynthScarCfg | None = None) -> dict:
    """Figure-2-style grid: ``n`` rows of (original, candidate region, scar weight, blended, sentence) per cache,
    from report-negative cached slices (any slices when a cache has none)."""
    rng = np.random.default_rng(seed)
    groups = {str(c): _cache_slices(Path(c), n, rng) for c in caches}
    return synth_preview_slices(groups, out_png, n=n, seed=seed, cfg=cfg,
                                title="synthetic scar: " + ", ".join(Path(c).name for c in caches))
