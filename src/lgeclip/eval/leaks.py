"""Leak check: no evaluated patient may have reached any training or model selection upstream of a result.

Upstream of a trained run evaluated on a cache: the run's own training + validation patients (the records of its
training cache in ``data.train_splits`` + ``data.val_split``), the anatomy nets that preprocessed the cache
(``cache.json`` ``seg_run`` / ``landmarks_run``) and the segmentation run that initialised the vision encoder
(``model`` / ``classifier`` ``vision_init_path``). An anatomy run's patients are those of its ``split.json`` in the
splits it trained and selected on, over every cohort, plus those of the run it was fine-tuned from
(``init_run``). An anatomy run without ``split.json`` cannot be verified and fails the check.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from lgeclip.io.cohort import patient_of
from lgeclip.preprocess.cache import read_cache

HINT = ("every stage must read the same fold of the cohort's splits.json: rebuild the cache with anatomy nets of "
        "that fold (`lgeclip crossval --anatomy per_fold` does this per fold) or with nets trained on other cohorts; "
        "`lgeclip evaluate --allow-leak` evaluates anyway (oracle / debugging only)")


class LeakError(ValueError):
    """An evaluated patient was used upstream (training or model selection), or upstream cannot be verified."""


def _task_section(run: Path) -> dict:
    path = Path(run) / "config.yaml"
    if not path.is_file():
        return {}
    raw = yaml.safe_load(path.read_text()) or {}
    return raw.get("task", raw) or {}


def anatomy_run_patients(run: str | Path) -> set[str]:
    """Patients an anatomy run folder trained or selected on (its ``split.json``, every cohort)."""
    run = Path(run)
    path = run / "split.json"
    if not path.is_file():
        raise LeakError(f"anatomy run {run}: no split.json, so the patients it trained on are unknown; {HINT}")
    split = json.loads(path.read_text())
    data = _task_section(run).get("data") or {}
    used = {*split.get("train_splits", data.get("train_splits", ["train"])),
            split.get("val_split", data.get("val_split", "val"))}
    out: set[str] = set()
    for c in split.get("cohorts", {}).values():
        for s in used:
            out |= set(c.get("patients", {}).get(s, []))
    return out


def _add_anatomy(sources: dict[str, set[str]], name: str, run: Path, seen: set[Path]) -> None:
    """``run``'s patients under ``name``, then those of the run it was fine-tuned from (``init_run``)."""
    key = Path(run).resolve()
    if key in seen:
        return
    seen.add(key)
    sources[name] = anatomy_run_patients(run)
    init = _task_section(run).get("init_run")
    if init:
        _add_anatomy(sources, f"{name} <- init_run {init}", Path(init), seen)


def _anatomy_run_of(path: str | Path) -> Path | None:
    """The anatomy run folder behind a vision_init_path (folder or a file in it), None for e.g. ImageNet weights."""
    p = Path(path)
    folder = p.parent if p.is_file() else p
    if (folder / "split.json").is_file() or (folder / "encoder.safetensors").is_file():
        return folder
    return None


def _cache_meta(cache: Path) -> dict:
    path = Path(cache) / "cache.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def upstream_patients(run: str | Path | None, cache: str | Path) -> dict[str, set[str]]:
    """Source name -> patient keys that reached training / model selection upstream of ``run`` evaluated on
    ``cache`` (``run=None``: the cache's anatomy nets only, e.g. before training)."""
    cache = Path(cache)
    sources: dict[str, set[str]] = {}
    caches = [cache]
    if run is not None:
        task = _task_section(Path(run))
        if not task:
            raise LeakError(f"{run}: no config.yaml, so its training patients are unknown")
        data = task.get("data") or {}
        trained_on = Path(task["cache"]) if task.get("cache") else cache
        if not (trained_on / "index.csv").is_file():
            trained_on = cache
        splits = {*data.get("train_splits", ["train"]), data.get("val_split", "val")}
        sources["run train/val"] = {r.patient_key for r in read_cache(trained_on)
                                    if "all" in splits or r.split in splits}
        if trained_on.resolve() != cache.resolve():
            caches.append(trained_on)
    seen: set[Path] = set()
    for c in caches:
        meta = _cache_meta(c)
        for key in ("seg_run", "landmarks_run"):
            if meta.get(key):
                _add_anatomy(sources, f"{key} {meta[key]}", Path(meta[key]), seen)
    if run is not None:
        for section in ("model", "classifier"):
            sec = task.get(section) or {}
            folder = _anatomy_run_of(sec["vision_init_path"]) if sec.get("vision_init_path") else None
            if folder is not None and sec.get("vision_init", "random") != "random":
                seen.discard(folder.resolve())  # listed under its own name even when it is also the seg_run
                _add_anatomy(sources, f"{section}.vision_init {folder}", folder, seen)
    return sources


def check_no_leak(run: str | Path | None, cache: str | Path, split: str = "test") -> dict:
    """Raise :class:`LeakError` if a patient of ``split`` in ``cache`` is in any upstream source of
    :func:`upstream_patients`; else ``{"ok": True, "split", "n_evaluated_patients", "upstream": {source: n}}``."""
    evaluated = {r.patient_key for r in read_cache(cache) if split == "all" or r.split == split}
    sources = upstream_patients(run, cache)
    # by patient: another study of an evaluated patient upstream is a leak too
    ev_patients = {patient_of(k) for k in evaluated}
    leaks = {name: sorted({patient_of(k) for k in pats} & ev_patients) for name, pats in sources.items()}
    leaks = {name: keys for name, keys in leaks.items() if keys}
    if leaks:
        parts = [f"{len(keys)} of the {len(ev_patients)} evaluated {split!r} patients of {cache} were used by "
                 f"{name} (e.g. {', '.join(keys[:5])})" for name, keys in leaks.items()]
        raise LeakError("patient leak: " + "; ".join(parts) + f". {HINT}")
    return {"ok": True, "split": split, "n_evaluated_patients": len(evaluated),
            "upstream": {name: len(pats) for name, pats in sources.items()}}
