"""The founding paper's experiment: the seven U-Net variants trained under one recipe, compared.

    python benchmarks/study.py time [--only NAME ...] [--steps 10]
    python benchmarks/study.py train [--only NAME ...] [--out runs/study]
    python benchmarks/study.py retime [--out runs/study] [--rounds 21]
    python benchmarks/study.py report

The study file (``tuning/study/study.toml``) fixes the budget and lists the runs: the seven
variants of :data:`VARIANTS` and two second-seed runs that measure the run-to-run spread.

``time`` trains each variant for a few steps on this machine and prints its seconds a step: what
sized the budget, and what to check on a new machine before starting a run.

``train`` trains each run without a record, in order, with the recipe of the shipped model
(``tuning/experiments/shipped.toml``: the same on-the-fly photo stream and seed, noise
input and validation set) under the study's budget, into ``OUT/NAME``, without the shipped model's
classical demosaic base (a ``unet`` option the other variants lack: the study compares the
paper's networks as such). Killed at any point, the same command continues from the last
checkpoint. When a run has trained, it is measured (below) and its record written to
``tuning/study/results/NAME.json``: config, budget, precision, machine, wall time, the validation
curve, and every figure of the report's table, with a 160x160 crop of one stress frame for the
crop figure. Commit each record as it is written; a run with a record is never trained again,
so the next session's ``train`` goes on with the next run. ``double_unet`` starts its first
network from the trained ``unet`` and keeps it frozen (the U-UNet recipe): the unet run leaves
those weights as ``OUT/unet.keras`` for it (an experiment checkpoint, never committed).

``retime`` times every recorded run's network again, all in one process and round by round,
into the records: each run's own figure was taken beside whatever else ran while it trained.

``report`` rebuilds ``tuning/study/README.md`` and its two figures (``tuning/study/quality_vs_gmacs.png``,
``tuning/study/crops.png``) from the records alone, with the paper's table beside ours and a
verdict per paper claim against the run-to-run spread.

Widths (the fairness rule): every SID-family variant keeps the shipped model's base width (12) and
depth (5), so each adds its own mechanism (attention gates, a discriminator, a second U-Net, a VAE
branch) to the same U-Net, and the GANs' U-Net discriminator has that width too (at its default
32 it cost five generator steps a step: 2.6 s against 0.42 on an AVX2 machine); ``unet_deep`` is
one level deeper (6) at width 8, GroupNorm needing a multiple of 8; ``fast_unet`` keeps its own
design (8x packing, depth 3) at width 24. Parameters and GMACs are in the table, so equal-cost
comparisons can be read off it.

Measured per run: parameters, GMACs per output megapixel, CPU seconds of the network for a 12 MP
frame (forward pass on 1 MP tiles, x12, median of 3, on the machine that trained it), the stress
grid's PSNR / SSIM overall and per ISO band beside scaled + non-local means, the gradient-histogram
distance to the truth (GHD, below), the colour saturation of the output against the truth's (the
"washed-out colour" the U-UNet was meant to fix), the fidelity benchmark at ratio 1 (mean / worst,
``benchmarks/fidelity.py``'s scikit-image set, beside the perfect-scene ceiling), and the PSNR
change of the int8-weight TFLite twin on every fourth stress pair.

GHD, the perceptual measure: the 1-Wasserstein distance between the distributions of log gradient
magnitudes (luminance, forward differences) of the output and of the truth, averaged over the
stress frames. It runs offline and measures what "visually better" claims are usually about: an
over-smoothed output lacks the truth's strong gradients, a noisy or over-sharpened one has too
many; both move the histogram. Lower is closer; it ignores where the gradients are (PSNR's job).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import sys
import tempfile
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

REPO = pathlib.Path(__file__).resolve().parents[1]
STUDY_FOLDER = REPO / "tuning" / "study"
STUDY_FILE = STUDY_FOLDER / "study.toml"
RESULTS = STUDY_FOLDER / "results"
STRESS_PHOTOS = REPO.parent / "shared" / "data" / "photos" / "val"  # CBSD68: never trained on

# name -> (registered model, model.args changed from the shipped recipe's)
VARIANTS = {
    "unet": ("unet", {}),
    "attention_unet": ("attention_unet", {}),
    "unet_gan": ("unet_gan", {"discriminator_width": 12}),
    "double_unet": ("double_unet", {"freeze_first": True}),
    "unet_deep": ("unet_deep", {"width": 8, "depth": 6}),
    "vae_gan": ("vae_gan", {"discriminator_width": 12}),
    "fast_unet": ("fast_unet", {"width": 24, "depth": 3}),
}
# The founding paper's table (SID Sony test set, sRGB output, its own training budget).
PAPER = {"unet": (27.251, 0.756), "attention_unet": (25.447, 0.727), "unet_gan": (27.178, 0.747)}
# The shipped model's options that only ``unet`` takes: left out, so every variant is the network alone.
DEMOSAIC_BASE = ("demosaic_residual", "demosaic_gate", "demosaic", "demosaic_trust")
TILE = 512  # packed pixels of the timing tile: a 1 MP output
CROP = 160  # output pixels of the crop figure's panels
FIRST_NETWORK = "unet.keras"  # beside the run folders: the trained unet the U-UNet starts from


def load_study(path: pathlib.Path = STUDY_FILE) -> dict:
    """The study file: ``budget`` (--set assignments for every run) and ``runs`` (name -> variant
    and its own assignments), checked."""
    from sid_keras.errors import SidError
    from sid_keras.runtime.io import read_toml

    study = read_toml(path, "study file")
    runs = study.get("runs", {})
    for name, run in runs.items():
        if run.get("variant") not in VARIANTS:
            raise SidError(f"{path}: run {name!r} has variant {run.get('variant')!r}; use one of {', '.join(VARIANTS)}")
    return {"budget": list(study.get("budget", [])), "runs": runs}


def variant_config(variant: str, out: pathlib.Path, overrides: list[str], first: pathlib.Path | None = None):
    """The shipped recipe with this variant's model in run folder ``out``, ``overrides`` applied;
    ``first``: the trained unet a double_unet starts from."""
    from sid_keras.training.config import load_config

    model, args = VARIANTS[variant]
    base = load_config("shipped")
    args = {**{k: v for k, v in base.model.args.items() if k not in DEMOSAIC_BASE}, **args}
    if variant == "double_unet":
        args["first"] = str(first)
    return load_config("shipped", overrides, settings={"model.name": model, "model.args": args,
                                                       "train.out_dir": str(out)})


def machine() -> dict:
    """What trained (and timed) a run: CPU model, cores, and whether it computes bfloat16 natively."""
    from sid_keras.training.task import cpu_has_bf16

    model = platform.processor() or platform.machine()
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": model, "cores": os.cpu_count(), "bf16": cpu_has_bf16()}


def seconds_per_step(out: pathlib.Path, only: list[str], overrides: list[str], steps: int) -> dict:
    """Each variant's training step, timed on this machine: two epochs of ``steps`` steps through
    the study's own recipe (data stream, precision, model), the second one timed (the first
    traces the graph). Nothing is written to a run folder."""
    import keras

    from sid_keras.models import build_model
    from sid_keras.training.task import Task

    class EpochTimer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds = time.perf_counter() - self.start

    timing = {}
    first = out / FIRST_NETWORK
    for name in only or list(VARIANTS):
        task = Task(variant_config(name, out / name, [*overrides, f"train.steps_per_epoch={steps}"], first))
        data = task.data()
        if name == "double_unet" and not first.is_file():  # a random U-Net of the shape stands in for the trained one
            args = {k: v for k, v in task.model_args(data.channels, data.scale).items()
                    if k in ("in_channels", "scale", "output", "width", "depth", "noise_input")}
            build_model("unet", **args).save(first)
        model = task.build_model(data.channels, data.scale)
        timer = EpochTimer()
        model.fit(task.train_dataset(data), epochs=2, steps_per_epoch=steps, callbacks=[timer], verbose=0)
        timing[name] = (timer.seconds / steps, task.precision.policy)
        print(f"{name}: {timing[name][0]:.2f} s a step ({timing[name][1]})", flush=True)
    return timing


def train(out: pathlib.Path, only: list[str], overrides: list[str], results: pathlib.Path, stress: str | None) -> int:
    """Train, measure and record every run of the study file without a record (module doc)."""
    from sid_keras.training.task import Task
    from sid_keras.training.task import train as run

    study = load_study()
    for name in only or list(study["runs"]):
        record = results / f"{name}.json"
        if record.is_file():
            print(f"{name}: done ({record})")
            continue
        spec = study["runs"][name]
        config = variant_config(spec["variant"], out / name, [*study["budget"], *spec.get("set", []), *overrides],
                                first=out / FIRST_NETWORK)
        if not (out / name / "final.keras").is_file():
            print(f"{name}: training into {out / name}", flush=True)
            done = epochs_done(out / name)
            start = time.perf_counter()
            run(config, verbose=2)
            write_epoch_seconds(out / name, (time.perf_counter() - start) / (config.train.epochs - done))
        entry = {"run": name, "variant": spec["variant"], "set": spec.get("set", []), "budget": study["budget"],
                 "precision": Task(config).precision.policy, "machine": machine(),
                 "wall_seconds": config.train.epochs * json.loads((out / name / "wall.json").read_text())["epoch"],
                 "curve": validation_curve(out / name / "log.csv"), "config": config.to_dict()}
        print(f"{name}: measuring", flush=True)
        entry.update(measure(out / name, stress or stress_set(out / "stress"), out / "work"))
        write_record(results, name, entry, out / name)
        print(f"{name}: recorded {record}: commit it (git add {results})", flush=True)
    return 0


def epochs_done(run: pathlib.Path) -> int:
    """Epochs a run folder's checkpoint holds (0 for a new run)."""
    record = run / "checkpoint" / "latest.json"
    return json.loads(record.read_text())["epoch"] if record.is_file() else 0


def write_epoch_seconds(run: pathlib.Path, seconds: float) -> None:
    """Seconds an epoch took in the process that finished the run (start, validation and saving
    included): the record's wall time is this times the epochs, whatever killed and resumed it."""
    (run / "wall.json").write_text(json.dumps({"epoch": seconds}))


def validation_curve(log: pathlib.Path) -> list:
    """[epoch, training loss, validation PSNR or None] of every epoch of a run's log.csv."""
    import csv

    with open(log) as f:
        rows = list(csv.DictReader(f))

    def number(text):  # Keras writes NA where an epoch did not validate
        try:
            value = float(text)
        except (TypeError, ValueError):
            return None
        return value if np.isfinite(value) else None

    return [[int(r["epoch"]), number(r.get("loss")), number(r.get("val_psnr"))] for r in rows]


def write_record(results: pathlib.Path, name: str, entry: dict, run: pathlib.Path) -> None:
    """``results/NAME.json`` and its crop; the unet run leaves its weights beside the runs
    (``OUT/unet.keras``, not committed) for the U-UNet."""
    from sid_keras.runtime.io import atomic_path, write_image

    results.mkdir(parents=True, exist_ok=True)
    crop, truth = entry.pop("crop")
    write_image(results / f"{name}.crop.png", crop)
    write_image(results / "truth.crop.png", truth)
    if name == "unet":  # the weights alone, in float32 (no optimizer state: a third of the size)
        import keras

        from sid_keras.models import inference_model, with_precision
        from sid_keras.runtime.io import save_model_atomic

        net = inference_model(keras.models.load_model(run / "best.keras", compile=False))
        save_model_atomic(with_precision(net, None), run.parent / FIRST_NETWORK)
    with atomic_path(results / f"{name}.json") as tmp:
        pathlib.Path(tmp).write_text(json.dumps(entry, indent=1) + "\n")


def stress_set(folder: pathlib.Path) -> str:
    """The stress grid the study scores on, made once from the validation photos."""
    from sid_keras.synth.synthetic import synthesize

    if not (folder / "Stress_val_list.txt").is_file():
        synthesize(STRESS_PHOTOS, folder, split="val", stress=True, camera_dir="Stress", workers=2)
    return str(folder)


def gradient_histogram_distance(truth: np.ndarray, image: np.ndarray) -> float:
    """GHD: 1-Wasserstein distance between the log gradient magnitude distributions (module doc)."""
    from scipy.stats import wasserstein_distance

    def log_gradients(rgb):
        y = rgb @ np.array([0.2126, 0.7152, 0.0722], np.float32)
        gy, gx = np.diff(y, axis=0)[:, :-1], np.diff(y, axis=1)[:-1]
        return np.log10(np.hypot(gx, gy).ravel() + 1e-3)

    return float(wasserstein_distance(log_gradients(truth), log_gradients(np.clip(image, 0, 1))))


def saturation(rgb: np.ndarray) -> float:
    """Mean chroma (max - min of the channels) of an sRGB image: what "washed out" lowers."""
    rgb = np.clip(rgb, 0, 1)
    return float(np.mean(rgb.max(axis=-1) - rgb.min(axis=-1)))


def score_stress(enhancer, pairs, *, baseline: bool) -> tuple[list, dict, tuple]:
    """Per pair, in order: (ISO band, PSNR, SSIM, GHD, saturation ratio to the truth) of the
    model; with ``baseline``, the per-band PSNR of scaled + non-local means; one crop of the first
    pair and its truth, for the figure."""
    from sid_keras.apps.evaluation import score_pair
    from sid_keras.synth.synthetic import stress_cell

    rows, nlm, crop = [], {}, None
    truths: dict = {}
    for i, pair in enumerate(pairs):
        scored = score_pair(enhancer, pair, truths, denoiser=baseline)  # the package's one per-pair scoring
        image, truth, scores = scored.outputs["model"], scored.truth, scored.result.scores
        band = stress_cell(scored.result.iso)
        rows.append((band, scores["model"]["psnr"], scores["model"]["ssim"], gradient_histogram_distance(truth, image),
                     saturation(image) / saturation(truth)))
        if baseline:
            nlm.setdefault(band, []).append(scores["scaled_nlm"]["psnr"])
        if i == 0:
            h, w = truth.shape[:2]
            window = np.s_[h // 4 : h // 4 + CROP, w // 4 : w // 4 + CROP]
            crop = (np.clip(image[window], 0, 1), truth[window])
    return rows, {band: float(np.mean(v)) for band, v in nlm.items()}, crop


def band_means(rows: list) -> dict:
    """Mean (PSNR, SSIM, GHD, saturation ratio) per ISO band and over all rows ("all")."""
    bands = {"all": [r[1:] for r in rows]}
    for band, *scores in rows:
        bands.setdefault(band, []).append(scores)
    return {band: [float(x) for x in np.mean(scores, axis=0)] for band, scores in bands.items()}


def timed_tile(net):
    """A function that runs the network once on a 1 MP tile and returns its seconds."""
    from sid_keras.runtime.runners import keras_predictor

    predict = keras_predictor(net)
    tile = np.random.default_rng(0).uniform(0, 1, (1, TILE, TILE, net.inputs[0].shape[-1])).astype(np.float32)
    predict(tile)  # traced and warmed

    def run() -> float:
        start = time.perf_counter()
        predict(tile)
        return time.perf_counter() - start

    return run


def per_12mp(tile_seconds: list) -> float:
    return float(np.median(tile_seconds)) * 12 / (TILE * TILE * 4 / 1e6)


def network_seconds_per_12mp(net) -> float:
    run = timed_tile(net)
    return per_12mp([run() for _ in range(3)])


def retime(out: pathlib.Path, results: pathlib.Path, rounds: int) -> int:
    """Time every recorded run's network again, side by side in one process (each round runs
    each network once), and write the figures into the records: training measured each network
    under whatever ran beside it then, so only figures timed together compare."""
    from sid_keras.models import inference_model, with_precision
    from sid_keras.runtime.io import atomic_path
    from sid_keras.runtime.runners import load_model

    records = load_records(results)
    missing = [name for name in records if not (out / name / "best.keras").is_file()]
    if missing or not records:
        print(f"no trained network in {out} for: {', '.join(missing) or 'any run'} (retime needs every run's folder)")
        return 1
    runs = {name: timed_tile(with_precision(inference_model(load_model(out / name / "best.keras")), None))
            for name in records}
    seconds = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            seconds[name].append(run())
    timed = {"how": f"side by side in one process, median of {rounds} rounds", "machine": machine(),
             "date": time.strftime("%Y-%m-%d")}
    for name, record in records.items():
        record.update(seconds_12mp=per_12mp(seconds[name]), seconds_12mp_timed=timed)
        with atomic_path(results / f"{name}.json") as tmp:
            pathlib.Path(tmp).write_text(json.dumps(record, indent=1) + "\n")
        print(f"{name}: {record['seconds_12mp']:.2f} s / 12 MP")
    return 0


def int8_weights_twin(net, folder: pathlib.Path) -> pathlib.Path:
    from sid_keras.apps.export import _convert

    path = folder / "int8w.tflite"
    path.write_bytes(_convert(net, [1, 256, 256, net.inputs[0].shape[-1]], int8_weights=True))
    return path


def measure(run: pathlib.Path, stress_dir: str, work: pathlib.Path) -> dict:
    """Every figure of the report's table for one trained run (its best validated model)."""
    import fidelity

    from sid_keras.data import read_sid_list
    from sid_keras.models import count_macs, inference_model, with_precision
    from sid_keras.runtime.inference import Enhancer
    from sid_keras.runtime.runners import load_model

    pairs = read_sid_list("Stress_val_list.txt", stress_dir)
    work.mkdir(parents=True, exist_ok=True)
    net = with_precision(inference_model(load_model(run / "best.keras")), None)
    enhancer = Enhancer(net)
    rows, nlm, crop = score_stress(enhancer, pairs, baseline=True)
    fid = fidelity.score_set(enhancer, fidelity.skimage_photos(work / "photos"), work / "fidelity", 3, 0)["scores"]
    lite, _, _ = score_stress(Enhancer(int8_weights_twin(net, work), tile=256, overlap=8), pairs[::4], baseline=False)
    return {
        "best": json.loads((run / "best.json").read_text()),
        "params": int(net.count_params()), "gmacs": count_macs(net, (256, 256)) / (512 * 512) * 1e6 / 1e9,
        "seconds_12mp": network_seconds_per_12mp(net),
        "stress": band_means(rows), "nlm": nlm,
        "fidelity": [float(fid["model"][:, 0].mean()), float(fid["model"][:, 0].min())],
        "ceiling": [float(fid["ceiling"][:, 0].mean()), float(fid["ceiling"][:, 0].min())],
        "int8w_delta": band_means(lite)["all"][0] - band_means(rows[::4])["all"][0],  # the same pairs
        "crop": crop,
    }


# -- report ------------------------------------------------------------------------------------
def load_records(results: pathlib.Path) -> dict:
    """The committed records, in the study file's order."""
    records = {}
    for name in load_study()["runs"]:
        path = results / f"{name}.json"
        if path.is_file():
            records[name] = json.loads(path.read_text())
    return records


def stress(index: int):
    """A record's stress-grid figure: 0 PSNR, 1 SSIM, 2 GHD, 3 saturation."""
    return lambda record: record["stress"]["all"][index]


def best_validation(record: dict) -> float:
    return record["best"]["val_psnr"]


def spread(records: dict, figure) -> float | None:
    """The run-to-run spread of one figure (a function of a record): the largest difference
    between a run and its second seed, None before any second seed ran."""
    gaps = [abs(figure(record) - figure(records[base]))
            for name, record in records.items() if (base := name.removesuffix("_seed2")) != name and base in records]
    return max(gaps) if gaps else None


def seed_mean(records: dict, variant: str, figure) -> float:
    """A variant's figure, the mean over its seeds that have a record."""
    return float(np.mean([figure(records[n]) for n in (variant, f"{variant}_seed2") if n in records]))


def verdicts(records: dict) -> list[str]:
    """One line per claim of the founding paper: holds / does not hold / cannot tell, with the
    numbers (each variant's mean over its seeds) and the spread that decide it."""
    psnr, ghd, sat = stress(0), stress(2), stress(3)
    psnr_spread, ghd_spread, sat_spread = spread(records, psnr), spread(records, ghd), spread(records, sat)

    def gap(variant, figure):
        return seed_mean(records, variant, figure) - seed_mean(records, "unet", figure)

    def verdict(difference, width, *, holds_if):
        """``holds_if``: "below" (difference < -width), "above" (> width) or "within" (|d| <= width)."""
        if width is None:
            return "cannot tell yet (no second-seed run for the spread)"
        if holds_if == "within":
            return "holds" if abs(difference) <= width else "does not hold"
        beyond = difference < -width if holds_if == "below" else difference > width
        opposite = difference > width if holds_if == "below" else difference < -width
        return "holds" if beyond else "does not hold" if opposite else "cannot tell at this budget"

    lines = []
    if {"unet", "attention_unet"} <= records.keys():
        d = gap("attention_unet", psnr)
        lines.append(f"- Attention U-Net numerically slightly worse than the U-Net (paper: -1.80 dB): "
                     f"**{verdict(d, psnr_spread, holds_if='below')}** ({d:+.2f} dB; spread {_fmt(psnr_spread)} dB).")
        g = gap("attention_unet", ghd)
        lines.append(f"- Attention U-Net visually better (lower GHD, the gradient-histogram distance): "
                     f"**{verdict(g, ghd_spread, holds_if='below')}** (GHD {g:+.3f}; spread {_fmt(ghd_spread, 3)}).")
    if {"unet", "unet_gan"} <= records.keys():
        d = gap("unet_gan", psnr)
        lines.append(f"- U-Net GAN about equal to the U-Net (paper: -0.07 dB): "
                     f"**{verdict(d, psnr_spread, holds_if='within')}** ({d:+.2f} dB; spread {_fmt(psnr_spread)} dB).")
    if {"unet", "unet_deep"} <= records.keys():
        d, width = gap("unet_deep", best_validation), spread(records, best_validation)
        lines.append(f"- The deeper U-Net struggles to converge (best validation PSNR below the U-Net's): "
                     f"**{verdict(d, width, holds_if='below')}** ({d:+.2f} dB; spread {_fmt(width)} dB).")
    if {"unet", "double_unet"} <= records.keys():
        before, after = seed_mean(records, "unet", sat), seed_mean(records, "double_unet", sat)
        lines.append(f"- The U-UNet fixes the U-Net's washed-out colour (saturation closer to the truth's): "
                     f"**{verdict(abs(1 - before) - abs(1 - after), sat_spread, holds_if='above')}** (saturation "
                     f"{before:.3f} -> {after:.3f} of the truth's; spread {_fmt(sat_spread, 3)}).")
    if {"unet", "vae_gan"} <= records.keys():
        before, after = seed_mean(records, "unet", sat), seed_mean(records, "vae_gan", sat)
        lines.append(f"- The VAE-GAN's colour is more saturated (\"artistic\") than the U-Net's: "
                     f"**{verdict(after - before, sat_spread, holds_if='above')}** (saturation {before:.3f} -> "
                     f"{after:.3f} of the truth's; spread {_fmt(sat_spread, 3)}).")
    return lines


def against_the_unet(records: dict) -> list[str]:
    """Each variant's gain over the U-Net beside its cost, and what follows for the shipped
    network (a U-Net of the same width and depth): a variant replaces it only if it gains beyond
    the spread at about the U-Net's cost (within 10% of its GMACs: a count no machine's load moves)."""
    if "unet" not in records:
        return []
    psnr, ssim = stress(0), stress(1)
    width = spread(records, psnr)
    unet_psnr, unet_ssim = seed_mean(records, "unet", psnr), seed_mean(records, "unet", ssim)
    lines = ["| variant (runs) | stress PSNR vs U-Net | SSIM vs U-Net | GMACs, x U-Net | beyond the spread |",
             "|---|---:|---:|---:|---|"]
    better = {}
    for variant in VARIANTS:
        if variant == "unet" or variant not in records:
            continue
        d = seed_mean(records, variant, psnr) - unet_psnr
        runs = sum(n in records for n in (variant, f"{variant}_seed2"))
        ratio = records[variant]["gmacs"] / records["unet"]["gmacs"]
        beyond = "?" if width is None else "better" if d > width else "worse" if d < -width else "no"
        if beyond == "better":
            better[variant] = ratio
        lines.append(f"| {variant} ({runs}) | {d:+.2f} dB | {seed_mean(records, variant, ssim) - unet_ssim:+.3f} | "
                     f"{ratio:.2f} | {beyond} |")
    cheap = [v for v, ratio in better.items() if ratio <= 1.1]
    dear = [f"{v} ({better[v]:.1f}x the U-Net's GMACs)" for v in better if v not in cheap]
    lines.append("")
    if width is None:
        lines.append("What follows for the shipped network needs the spread: no second-seed run yet.")
    elif cheap:
        lines.append(f"Beyond the spread ({width:.2f} dB) at about the U-Net's cost: {', '.join(cheap)}; a candidate "
                     "for the shipped network, to be trained with the shipped recipe's full budget and timed with "
                     "`python benchmarks/enhance.py --model ...` against the 1.5x-LibRaw target.")
    else:
        lines.append(f"No variant beats the U-Net beyond the spread ({width:.2f} dB) at about its cost, so the "
                     "shipped network (a U-Net of this width and depth) stays"
                     + (f"; better beyond the spread only at a higher cost: {', '.join(dear)}." if dear else "."))
    return lines


def _fmt(value, digits=2):
    return "?" if value is None else f"{value:.{digits}f}"


def format_table(records: dict) -> str:
    nlm = next(iter(records.values()))["nlm"]
    bands = sorted(nlm, key=lambda band: int(band.split()[1].split("-")[0]))
    lines = ["| run | params | GMACs/MP | s / 12 MP | stress PSNR / SSIM | "
             + " | ".join(f"{b} (vs NLM)" for b in bands)
             + " | GHD | saturation | fidelity mean / worst (ceiling) | int8w dB | best epoch | precision, wall "
               "| paper (SID Sony) |",
             "|---|" + "---:|" * (11 + len(bands)) + "---|"]
    for name, r in records.items():
        s = r["stress"]
        paper = "{:.3f} / {:.3f}".format(*PAPER[name]) if name in PAPER else ""
        cells = " | ".join(f"{s[b][0]:.2f} ({s[b][0] - nlm[b]:+.2f})" if b in s else "" for b in bands)
        lines.append(f"| {name} | {r['params']:,} | {r['gmacs']:.1f} | {r['seconds_12mp']:.1f} | "
                     f"{s['all'][0]:.2f} / {s['all'][1]:.3f} | {cells} | {s['all'][2]:.3f} | {s['all'][3]:.3f} | "
                     f"{r['fidelity'][0]:.2f} / {r['fidelity'][1]:.2f} ({r['ceiling'][0]:.2f} / {r['ceiling'][1]:.2f})"
                     f" | {r['int8w_delta']:+.2f} | {r['best']['epoch']} | {r['precision']}, "
                     f"{r['wall_seconds'] / 3600:.1f} h | {paper} |")
    lines += ["", "Scaled + non-local means per ISO band (dB): " + ", ".join(f"{b} {nlm[b]:.2f}" for b in bands)]
    timed = {json.dumps(r.get("seconds_12mp_timed"), sort_keys=True) for r in records.values()}
    if len(timed) == 1 and (how := json.loads(timed.pop())):
        lines += ["", f"s / 12 MP: the network alone (1 MP tiles, x12), every run's timed {how['how']} "
                      f"(`python benchmarks/study.py retime`, {how['date']}, {how['machine']['cpu']})."]
    else:
        lines += ["", "s / 12 MP: the network alone (1 MP tiles, x12), timed as each run's training ended, "
                      "beside whatever else ran then: compare GMACs (`python benchmarks/study.py retime` times "
                      "them together)."]
    return "\n".join(lines)


def report(results: pathlib.Path, page: pathlib.Path, figures: pathlib.Path) -> int:
    """tuning/study/README.md and its figures, from the committed records alone."""
    from sid_keras.runtime.io import atomic_path

    records = load_records(results)
    if not records:
        print(f"no record in {results}: run `python benchmarks/study.py train` first")
        return 1
    study = load_study()
    missing = [name for name in study["runs"] if name not in records]
    machines = sorted({f"{r['machine']['cpu']} ({r['machine']['cores']} cores"
                       f"{', AVX-512 BF16' if r['machine']['bf16'] else ', no bfloat16 instructions'})"
                       for r in records.values()})
    figures.mkdir(parents=True, exist_ok=True)
    write_figures(records, results, figures)
    rel = os.path.relpath(figures, page.parent)
    text = "\n".join([
        "# The founding paper's experiment, on CPUs",
        "",
        "Made by `python benchmarks/study.py report` from the records in `results/` "
        "(`benchmarks/study.py`'s docstring says what each column measures). Every run trains the "
        "shipped model's recipe with its own network, under one budget: "
        f"`{' '.join(study['budget'])}` (8 x 128x128 packed patches a step, "
        "pairs synthesised on the fly from BSDS/Urban100/Sun-Hays photos). "
        "Scored on the stress grid (CBSD68 photos, never trained on: four ISO bands x ratios 30/100/300, "
        "held-out cameras and illuminants) and at ratio 1 on scikit-image's photos.",
        "",
        f"Trained on: {'; '.join(machines)}.",
        *([f"Not trained yet: {', '.join(missing)} (`python benchmarks/study.py train` goes on with them)."]
          if missing else []),
        "",
        format_table(records),
        "",
        "The founding paper's table (SID Sony test set, real pairs, sRGB output, its own GPU budget): "
        + "; ".join(f"{name} {p[0]:.3f} dB / {p[1]:.3f}" for name, p in PAPER.items())
        + "; the deeper U-Net \"struggled to converge\"; the U-UNet aimed at the U-Net's washed-out colour; "
          "the VAE-GAN (no table figure) at \"artistic\" brightness and saturation.",
        "",
        "## The paper's claims at this budget",
        "",
        *(verdicts(records) or ["No claim can be judged yet: each needs the unet run and the variant it compares."]),
        "",
        "## Against the U-Net: gain beside cost",
        "",
        *(against_the_unet(records) or ["Needs the unet run."]),
        "",
        f"![stress PSNR against GMACs]({rel}/quality_vs_gmacs.png)",
        "",
        f"![the same stress crop through every run]({rel}/crops.png)",
        "",
    ])
    with atomic_path(page) as tmp:
        pathlib.Path(tmp).write_text(text)
    print(text)
    return 0


def write_figures(records: dict, results: pathlib.Path, folder: pathlib.Path) -> None:
    from PIL import Image, ImageDraw, ImageFont
    from PIL import Image as PILImage

    from sid_keras.apps.evaluation import side_by_side
    from sid_keras.runtime.io import write_image

    size, margin, right = (900, 500), 60, 260  # room on the right for the labels
    plot = Image.new("RGB", size, "white")
    draw, font = ImageDraw.Draw(plot), ImageFont.load_default(size=14)
    psnr = stress(0)
    variants = [v for v in VARIANTS if v in records]  # one point per variant: the mean of its seeds
    gmacs = {v: float(np.log10(records[v]["gmacs"])) for v in variants}
    psnrs = [psnr(r) for r in records.values()]
    gx = (min(gmacs.values()) - 0.15, max(gmacs.values()) + 0.15)
    gy = (np.floor(min(psnrs) * 2) / 2 - 0.25, np.ceil(max(psnrs) * 2) / 2 + 0.25)

    def at(x, y):
        return (margin + (x - gx[0]) / (gx[1] - gx[0]) * (size[0] - margin - right),
                size[1] - margin - (y - gy[0]) / (gy[1] - gy[0]) * (size[1] - 2 * margin))

    draw.rectangle([margin, margin, size[0] - right, size[1] - margin], outline="black")
    draw.text((margin, size[1] - margin + 22), "GMACs per output megapixel (log scale)", fill="black", font=font)
    draw.text((margin, 20), "stress-grid PSNR (dB) against cost: a variant's mean, each seed a ring",
              fill="black", font=font)
    for value in np.arange(gy[0] + 0.25, gy[1], 0.5):
        y = at(gx[0], value)[1]
        draw.line([margin - 4, y, margin, y], fill="black")
        draw.text((8, y - 7), f"{value:.1f}", fill="black", font=font)
    for value in (1, 2, 5, 10, 20, 50):
        if gx[0] <= np.log10(value) <= gx[1]:
            x = at(np.log10(value), gy[0])[0]
            draw.line([x, size[1] - margin, x, size[1] - margin + 4], fill="black")
            draw.text((x - 4, size[1] - margin + 6), str(value), fill="black", font=font)
    labels = []
    for v in variants:
        px, py = at(gmacs[v], seed_mean(records, v, psnr))
        for name in (v, f"{v}_seed2"):
            if name in records:
                rx, ry = at(gmacs[v], psnr(records[name]))
                draw.ellipse([rx - 4, ry - 4, rx + 4, ry + 4], outline=(31, 119, 180), width=2)
        draw.ellipse([px - 5, py - 5, px + 5, py + 5], fill=(31, 119, 180))
        labels.append([py, px, f"{v}: {seed_mean(records, v, psnr):.2f} dB, {records[v]['gmacs']:.1f} GMACs"])
    labels.sort()
    for above, below in zip(labels, labels[1:]):  # labels at least a line apart, top to bottom
        below[0] = max(below[0], above[0] + 17)
    for ly, lx, text in labels:
        draw.text((lx + 10, ly - 8), text, fill="black", font=font)
    plot.save(folder / "quality_vs_gmacs.png")
    panels = [np.asarray(PILImage.open(results / f"{name}.crop.png").convert("RGB")) / 255.0
              for name in [*records, "truth"]]
    write_image(folder / "crops.png", side_by_side(panels, [*records, "truth"]))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["time", "train", "retime", "report"])
    parser.add_argument("--out", default="runs/study", type=pathlib.Path, help="run folders (train, time)")
    parser.add_argument("--only", nargs="*", default=[], help="these runs (train) or variants (time)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                        help="change the recipe further (tests; a record states what it trained)")
    parser.add_argument("--steps", type=int, default=10, help="steps timed per variant, for time")
    parser.add_argument("--rounds", type=int, default=21, help="rounds of timing every network, for retime")
    parser.add_argument("--stress", help="a stress set folder to score on (default: made from the validation photos)")
    parser.add_argument("--results", type=pathlib.Path, default=RESULTS, help="the records' folder")
    parser.add_argument("--page", type=pathlib.Path, default=STUDY_FOLDER / "README.md", help="report's page")
    parser.add_argument("--figures", type=pathlib.Path, default=STUDY_FOLDER, help="report's figures")
    args = parser.parse_args(argv)
    if args.command == "time":
        unknown = [v for v in args.only if v not in VARIANTS]
        if unknown:
            parser.error(f"unknown variant {unknown[0]!r}; use one of {', '.join(VARIANTS)}")
        with tempfile.TemporaryDirectory(prefix="sid_study_time_") as folder:
            seconds_per_step(pathlib.Path(folder), args.only, [*load_study()["budget"], *args.overrides], args.steps)
        return 0
    if args.command == "train":
        unknown = [n for n in args.only if n not in load_study()["runs"]]
        if unknown:
            parser.error(f"unknown run {unknown[0]!r}; the study file's runs: {', '.join(load_study()['runs'])}")
        return train(args.out, args.only, args.overrides, args.results, args.stress)
    if args.command == "retime":
        return retime(args.out, args.results, args.rounds)
    return report(args.results, args.page, args.figures)


if __name__ == "__main__":
    sys.exit(main())
