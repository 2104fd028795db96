"""`lgeclip` console script. Each subcommand parses arguments and calls one typed API function."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Learn LGE scar detection from report text.")
bench_app = typer.Typer(no_args_is_help=False, help="Speed and memory benchmarks.")
app.add_typer(bench_app, name="bench")

Overrides = typer.Option(None, "--set", "-s", help="Config override key=value (repeatable).")


def _print(obj: object) -> None:
    from rich import print_json

    print_json(data=obj)


@app.command()
def phantom(
    out: Path = typer.Option(..., help="Output folder for the phantom cohort."),
    patients: int = typer.Option(200, help="Number of patients."),
    seed: int = typer.Option(0, help="Random seed."),
    workers: int = typer.Option(2, help="Parallel worker processes."),
) -> None:
    """Generate a phantom CMR cohort: DICOM studies, free-text reports and ground truth."""
    from lgeclip.phantom import generate_cohort

    _print(generate_cohort(out, patients=patients, seed=seed, workers=workers))


@app.command()
def ingest(
    dicom_root: Path = typer.Argument(..., help="Folder of DICOM studies (any layout)."),
    reports: Path = typer.Option(..., help="reports.csv (patient_id, accession, report_text)."),
    out: Path = typer.Option(..., help="Cohort folder to write."),
    rules: Path | None = typer.Option(None, help="Series selection rules YAML."),
    truth: Path | None = typer.Option(None, help="Phantom truth folder to attach masks from."),
    levels: int = typer.Option(3, help="Slices to keep per study (basal/mid/apical)."),
    id_column: str = typer.Option("patient_id", help="Reports CSV column with the patient ID."),
    accession_column: str = typer.Option("accession", help="Reports CSV column with the accession number."),
    text_column: str = typer.Option("report_text", help="Reports CSV column with the report text."),
) -> None:
    """Select the PSIR LGE short-axis series of each study, read the reports, write a cohort manifest.
    The reports CSV may be UTF-8 (with or without BOM) or Windows-1252/Latin-1, separated by , ; tab or |."""
    from lgeclip.io.ingest import ingest_dicom

    columns = {"id_column": id_column, "accession_column": accession_column, "text_column": text_column}
    _print(ingest_dicom(dicom_root, reports, out, rules=rules, truth=truth, n_levels=levels,
                        report_columns=columns))


@app.command("ingest-emidec")
def ingest_emidec_cmd(
    emidec_dir: Path = typer.Argument(..., help="EMIDEC PNG folder (train/, trainannot/, val/, valannot/)."),
    out: Path = typer.Option(..., help="Cohort folder to write."),
    spacing_mm: float | None = typer.Option(None, help="Fixed pixel spacing (default: estimated per case from LV "
                                            "circularity and the official volumes)."),
    slice_spacing_mm: float = typer.Option(10.0, help="Slice spacing used with the official volumes (mm)."),
    seg: Path | None = typer.Option(None, help="Segmentation run: with --landmarks, name the walls of the "
                                    "reports in the RVIP frame (AHA segments) instead of the assumed display."),
    landmarks: Path | None = typer.Option(None, help="RVIP run (see --seg)."),
) -> None:
    """Read EMIDEC PNG slices + labels into a cohort, with label-derived reports."""
    from lgeclip.io.emidec import ingest_emidec

    frame = None
    if (seg is None) != (landmarks is None):
        raise typer.BadParameter("--seg and --landmarks go together")
    if seg is not None:
        from lgeclip.anatomy.frames import RvipFrame

        frame = RvipFrame.from_run_dirs(seg, landmarks)
    _print(ingest_emidec(emidec_dir, out, spacing_mm=spacing_mm, slice_spacing_mm=slice_spacing_mm, frame=frame))


@app.command("ingest-acdc")
def ingest_acdc_cmd(
    acdc_dir: Path = typer.Argument(..., help="ACDC folder (patientNNN/ with Info.cfg and NIfTI, or training/)."),
    out: Path = typer.Option(..., help="Cohort folder to write."),
    frames: str = typer.Option("ED,ES", help="Frames to read, from Info.cfg keys (comma-separated)."),
    touch_mm: float = typer.Option(3.0, help="RV / myocardium contact distance for the RVIP arc (mm)."),
) -> None:
    """Read ACDC cine NIfTI (RV, myocardium, LV labels) into an anatomy cohort with RVIP truth."""
    from lgeclip.io.acdc import ingest_acdc

    _print(ingest_acdc(acdc_dir, out, frames=tuple(f.strip() for f in frames.split(",") if f.strip()),
                       touch_mm=touch_mm))


@app.command("train-seg")
def train_seg(
    cohort: list[Path] = typer.Option(..., help="Cohort folder(s) with masks (repeatable)."),
    out: Path = typer.Option(..., help="Run folder."),
    config: Path | None = typer.Option(None, help="Recipe YAML."),
    set_: list[str] | None = Overrides,
    resume: bool = typer.Option(False, help="Resume from the last checkpoint."),
) -> None:
    """Train the myocardium segmentation net (UNet, DenseNet121 encoder)."""
    from lgeclip.train.anatomy import train_segmentation

    _print(train_segmentation(cohort, out, config=config, overrides=set_, resume=resume))


@app.command("train-landmarks")
def train_landmarks_cmd(
    cohort: list[Path] = typer.Option(..., help="Cohort folder(s) with RVIP truth (repeatable)."),
    out: Path = typer.Option(..., help="Run folder."),
    config: Path | None = typer.Option(None, help="Recipe YAML."),
    set_: list[str] | None = Overrides,
    resume: bool = typer.Option(False, help="Resume from the last checkpoint."),
) -> None:
    """Train the RV-insertion-point heatmap net (UNet, ResNet18 encoder)."""
    from lgeclip.train.anatomy import train_landmarks

    _print(train_landmarks(cohort, out, config=config, overrides=set_, resume=resume))


@app.command("evaluate-anatomy")
def evaluate_anatomy_cmd(
    seg: Path = typer.Option(..., help="Segmentation run folder."),
    landmarks: Path = typer.Option(..., help="Landmark run folder."),
    cohort: Path = typer.Option(..., help="Cohort folder with truth."),
    out: Path | None = typer.Option(None, help="Output folder (default: <cohort>/anatomy_eval)."),
    split: str = typer.Option("test", help="Patient split to evaluate (train/val/test/all)."),
    tta: bool = typer.Option(False, help="Flip test-time augmentation of the segmentation net."),
    dihedral: bool = typer.Option(False, help="With --tta: the 8 flips and 90-degree turns instead of 4 flips."),
    stack_max_dev_deg: float = typer.Option(0.0, help="Stack-consistent RVIPs first (0 = off; see "
                                            "PreprocessCfg.rvip_stack_max_dev_deg)."),
) -> None:
    """Myocardium Dice and RVIP error (mm) against truth; JSON + picture grid."""
    from lgeclip.eval.anatomy import evaluate_anatomy

    _print(evaluate_anatomy(seg, landmarks, cohort, out=out, split=split,
                            tta="dihedral" if tta and dihedral else tta, stack_max_dev_deg=stack_max_dev_deg))


@app.command()
def preprocess(
    cohort: Path = typer.Option(..., help="Cohort folder."),
    seg: Path | None = typer.Option(None, help="Segmentation run folder."),
    landmarks: Path | None = typer.Option(None, help="Landmark run folder."),
    out: Path = typer.Option(..., help="Cache folder."),
    config: Path | None = typer.Option(None, help="Preprocess recipe YAML."),
    set_: list[str] | None = Overrides,
    oracle: bool = typer.Option(False, help="Use truth masks/RVIPs instead of the nets (where present)."),
) -> None:
    """Preprocess every slice (1 mm, LV crop, orientation, percentile cap) into a cache."""
    from lgeclip.preprocess.cache import build_cache

    _print(build_cache(cohort, seg, landmarks, out, config=config, overrides=set_, oracle=oracle))


@app.command("synth-preview")
def synth_preview_cmd(
    cache: list[Path] = typer.Option(..., help="Cache folder(s)."),
    out: Path = typer.Option(Path("synth_preview.png"), help="PNG to write."),
    n: int = typer.Option(6, help="Rows per cache."),
    seed: int = typer.Option(0, help="Random seed."),
) -> None:
    """Grid of (original, candidate region, scar weight, blended, sentence) rows."""
    from lgeclip.synth.preview import synth_preview

    _print(synth_preview(cache, out, n=n, seed=seed))


@app.command()
def train(
    config: Path = typer.Option(..., help="Training recipe YAML (configs/train/*.yaml)."),
    cache: Path = typer.Option(..., help="Preprocessed cache folder."),
    out: Path = typer.Option(..., help="Run folder."),
    set_: list[str] | None = Overrides,
    resume: bool = typer.Option(False, help="Resume from the last checkpoint."),
) -> None:
    """Train the text-supervised model (or the image-only baseline); torchrun-compatible."""
    from lgeclip.train.clip import train_clip

    _print(train_clip(config, cache, out, overrides=set_, resume=resume))


@app.command()
def evaluate(
    run: Path = typer.Option(..., help="Run folder."),
    cache: Path = typer.Option(..., help="Cache folder."),
    split: str = typer.Option("test", help="Patient split (train/val/test/all)."),
    out: Path | None = typer.Option(None, help="Output folder (default: <run>/eval_<split>)."),
    allow_leak: bool = typer.Option(False, "--allow-leak", help="Evaluate even if evaluated patients were used "
                                    "upstream (training / selection of the run or its anatomy nets); oracle / debug."),
    segments: bool = typer.Option(False, "--segments", help="Score where: P(scar) per AHA segment and wall third "
                                  "against the truth scar masks (default out: <run>/eval_segments_<split>)."),
    method: str = typer.Option("bright", help="Regional question with --segments: occlude (the region's wall "
                               "removed: the fall of P(LGE)), keep (only the region's wall left: its P(LGE)), "
                               "bright (a training-free floor: P(LGE) x the share of the region's wall brighter than "
                               "half-way from the darkest wall quarter to the blood pool), or "
                               "asked in words (CLIP runs): prompts (contrastive) or caption (the caption decoder's "
                               "likelihood) of sentences per wall / depth / pattern (ischaemic or not), times P(LGE)."),
    band_mm: float = typer.Option(2.0, help="With --segments: regions reach this far (mm) beyond the myocardium "
                                  "mask (bright subendocardial scar is often segmented as blood pool)."),
    retrieval: bool = typer.Option(False, "--retrieval", help="Study <-> report retrieval R@1/5/10 and median rank "
                                   "(with chance), and prototype / linear-probe curves at 1, 4, 16 labelled "
                                   "training patients per class beside zero-shot (CLIP runs; default out: "
                                   "<run>/eval_retrieval_<split>)."),
) -> None:
    """Zero-shot (or classifier) evaluation: balanced accuracy, AUROC, per-patient/per-slice CSV (leak-checked);
    --segments: where (AHA segments, wall thirds); --retrieval: study-level retrieval and few-shot probes."""
    if segments and retrieval:
        raise typer.BadParameter("--segments and --retrieval are separate evaluations: run one at a time")
    if retrieval:
        from lgeclip.eval.retrieval import evaluate_retrieval

        _print(evaluate_retrieval(run, cache, split=split, out=out, allow_leak=allow_leak))
        return
    if segments:
        from lgeclip.eval.segments import evaluate_segments

        _print(evaluate_segments(run, cache, split=split, out=out, method=method, allow_leak=allow_leak,
                                 band_mm=band_mm))
        return
    from lgeclip.eval.evaluate import evaluate_run

    _print(evaluate_run(run, cache, split=split, out=out, allow_leak=allow_leak))


@app.command()
def ablate(
    cache: Path = typer.Option(..., help="Cache folder."),
    out: Path = typer.Option(Path("ablation"), help="Output folder."),
    recipe: str = typer.Option("cpu", help="Base recipe name in configs/train/."),
    seeds: int = typer.Option(3, help="Seeds per variant."),
    imagenet_weights: Path | None = typer.Option(None, help="Local ImageNet DenseNet121 weights file."),
    variant: list[str] | None = typer.Option(None, help="Only these variants (repeatable; default: all). Two "
                                             "processes on disjoint variants can share one --out."),
    set_: list[str] | None = Overrides,
) -> None:
    """Train + evaluate the paper's ablations over seeds; writes ablation.md / ablation.json (resumable)."""
    from lgeclip.eval.ablate import ablate as run_ablate

    _print(run_ablate(cache, out, recipe=recipe, seeds=seeds, imagenet_weights=imagenet_weights, overrides=set_,
                      variants=variant))


@app.command()
def crossval(
    cache: Path = typer.Option(..., help="Cache folder (its cohort's splits.json gives the folds)."),
    out: Path = typer.Option(Path("crossval"), help="Output folder."),
    recipe: str = typer.Option("cpu", help="Recipe name in configs/train/ or a YAML path."),
    folds: int | None = typer.Option(None, help="Folds; must match the cohort's splits.json (sizes a new one: 5)."),
    seed: int = typer.Option(0, help="Training seed (and the split seed of a cohort without splits.json)."),
    val_fraction: float | None = typer.Option(None, help="Validation share; must match splits.json (new: 0.125)."),
    anatomy: str = typer.Option("shared", help="shared: the cache's anatomy nets (leak-checked per fold); "
                                "per_fold: train seg + RVIP nets and rebuild the cache for every fold."),
    seg_recipe: Path | None = typer.Option(None, help="per_fold: segmentation recipe YAML."),
    landmarks_recipe: Path | None = typer.Option(None, help="per_fold: RVIP recipe YAML."),
    anatomy_cohort: list[Path] | None = typer.Option(None, help="per_fold: other cohort(s) added to the anatomy "
                                                     "training, e.g. a phantom (repeatable)."),
    seg_set: list[str] | None = typer.Option(None, help="per_fold: segmentation override key=value (repeatable)."),
    landmarks_set: list[str] | None = typer.Option(None, help="per_fold: RVIP override key=value (repeatable)."),
    preprocess_config: Path | None = typer.Option(None, help="per_fold: preprocess YAML (default: the cache's)."),
    set_: list[str] | None = Overrides,
) -> None:
    """Patient-level k-fold cross-validation: out-of-fold P(LGE) for every patient, pooled metrics (resumable)."""
    from lgeclip.eval.crossval import crossval as run_crossval

    s = run_crossval(cache, out, recipe=recipe, folds=folds, seed=seed, val_fraction=val_fraction, overrides=set_,
                     anatomy=anatomy, seg_recipe=seg_recipe, landmarks_recipe=landmarks_recipe,
                     anatomy_cohorts=anatomy_cohort, seg_overrides=seg_set, landmarks_overrides=landmarks_set,
                     preprocess_config=preprocess_config)
    _print({"crossval_json": str(out / "crossval.json"), "pooled": s["pooled"], "fold_mean_sd": s["fold_mean_sd"]})


@bench_app.callback(invoke_without_command=True)
def bench(
    ctx: typer.Context,
    out: Path = typer.Option(Path("bench.json"), help="JSON to write."),
    run: Path | None = typer.Option(None, help="Run folder (default: random weights)."),
    batch_sizes: str = typer.Option("1,8,32", help="Comma-separated batch sizes."),
    image_size: int | None = typer.Option(None, help="Input side without a run (default 224, the paper's)."),
    threads: int | None = typer.Option(None, help="CPU threads (default: torch's; 1 is steadier on shared CPUs)."),
    device: str = typer.Option("auto", help="auto | cpu | cuda."),
) -> None:
    """Inference images/s and peak memory, preprocessing and synthetic-scar time."""
    if ctx.invoked_subcommand is None:
        from lgeclip.eval.bench import bench_all

        sizes = tuple(int(b) for b in batch_sizes.split(","))
        _print(bench_all(out, run=run, batch_sizes=sizes, image_size=image_size, num_threads=threads,
                         device=device))


@bench_app.command("synth")
def bench_synth_cmd(
    n: int = typer.Option(500, help="Slices per size."),
    out: Path | None = typer.Option(None, help="JSON to write."),
) -> None:
    """Synthetic scar time per slice at 224 and 112 px (median over n slices, one core)."""
    from lgeclip.synth.bench import bench_synth

    _print(bench_synth(n=n, out=out))


@app.command()
def predict(
    studies: Path = typer.Argument(..., help="A DICOM study folder, or a folder of many."),
    run: Path = typer.Option(..., help="Run folder of a trained model."),
    out: Path = typer.Option(..., help="Output folder."),
    dicom_out: bool = typer.Option(False, help="Also write a DICOM SR (TID 1500) and a Secondary Capture per study."),
    method: str = typer.Option("bright", help="How each AHA segment is scored: bright (P(LGE) x the share of its "
                               "wall brighter than half-way to the blood pool; chosen on validation patients), "
                               "occlude, keep, prompts or caption (as in `evaluate --segments`)."),
) -> None:
    """Series selection -> preprocessing -> zero-shot P(LGE) per slice and per patient, and where (AHA segments)."""
    from lgeclip.infer.predict import predict_studies

    _print(predict_studies(studies, run, out, dicom_out=dicom_out, method=method))


@app.command()
def demo(
    out: Path = typer.Option(Path("demo_out"), help="Output folder."),
    quick: bool = typer.Option(False, help="Smoke-size run of the same chain (minutes)."),
) -> None:
    """End-to-end: phantom -> ingest -> anatomy -> preprocess -> train -> evaluate -> figures."""
    from lgeclip.cli.demo import run_demo

    run_demo(out, quick=quick)


if __name__ == "__main__":  # pragma: no cover
    app()
