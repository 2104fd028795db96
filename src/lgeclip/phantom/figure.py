"""Side-by-side picture of phantom PSIR slices and real EMIDEC LGE slices (a realism check by eye)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np


def _phantom_slices(phantom_dir: Path, n: int) -> list[tuple[np.ndarray, str]]:
    import pydicom

    rows = list(csv.DictReader(open(phantom_dir / "cohort_truth.csv")))
    rows.sort(key=lambda r: r["scar"] != "True")  # scar patients first
    out = []
    for r in rows:
        truth = json.loads((phantom_dir / "truth" / r["patient_id"] / "truth.json").read_text())
        sl = truth["slices"]
        if not sl:
            continue
        pick = next((s for s in sl if s["has_scar"]), sl[len(sl) // 2])
        for f in (phantom_dir / "dicom" / r["study_folder"]).rglob("*.dcm"):
            ds = pydicom.dcmread(f, stop_before_pixels=True, specific_tags=["SOPInstanceUID"])
            if ds.SOPInstanceUID == pick["sop_uid"]:
                ds = pydicom.dcmread(f)
                img = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
                sp = float(ds.PixelSpacing[0])
                c = np.round(pick.get("lv_center_px", [img.shape[0] / 2, img.shape[1] / 2])).astype(int)
                h = int(round(90 / sp))  # 180 mm field around the LV, like the EMIDEC crops
                pad = np.pad(img, h, mode="constant", constant_values=float(np.median(img[:8, :8])))
                crop = pad[c[0]: c[0] + 2 * h, c[1]: c[1] + 2 * h]
                lo, hi = np.percentile(crop, [1, 99.5])
                label = f"phantom {r['vendor']} {r['pattern'] or 'no scar'}" + (" (scar)" if pick["has_scar"] else "")
                out.append((np.clip((crop - lo) / (hi - lo + 1e-6), 0, 1), label))
                break
        if len(out) >= n:
            break
    return out


def _emidec_slices(emidec_dir: Path, n: int, seed: int = 0) -> list[tuple[np.ndarray, str]]:
    from PIL import Image

    files = sorted((emidec_dir / "train").glob("Case_*_slice00[2-4].png"))
    rng = np.random.default_rng(seed)
    pick = [files[i] for i in rng.choice(len(files), size=min(n, len(files)), replace=False)]
    return [(np.asarray(Image.open(f), dtype=np.float32) / 255.0, f"EMIDEC {f.stem}") for f in pick]


def compare_with_emidec(phantom_dir: str | Path, emidec_dir: str | Path, out_png: str | Path, n: int = 8) -> Path:
    """Grid: a row block of phantom PSIR slices (LV-centred 180 mm crops) over a block of EMIDEC slices."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ph = _phantom_slices(Path(phantom_dir), n)
    em = _emidec_slices(Path(emidec_dir), n)
    cols = 4
    blocks = [ph, em]
    nrows = sum(int(np.ceil(len(b) / cols)) for b in blocks)
    fig, axes = plt.subplots(nrows, cols, figsize=(3 * cols, 3 * nrows), squeeze=False)
    for a in axes.ravel():
        a.axis("off")
    r = 0
    for b in blocks:
        for i, (img, label) in enumerate(b):
            a = axes[r + i // cols, i % cols]
            a.imshow(img, cmap="gray", vmin=0, vmax=1)
            a.set_title(label, fontsize=7)
        r += int(np.ceil(len(b) / cols))
    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=80)
    plt.close(fig)
    return out_png
