import multiprocessing
import os
import pathlib

import numpy as np
import pytest

from sid_keras.data import (
    MISALIGNED_SCENES,
    PackedCache,
    build_cache,
    frame_dataset,
    read_sid_list,
    training_dataset,
)
from sid_keras.errors import SidError
from sid_keras.runtime import model_input, raw
from sid_keras.runtime.render import UINT16_SCALE
from sid_keras.synth.synthetic import synthesize


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory, photo_folder):
    """A 3-photo synthetic dataset."""
    photos = photo_folder
    root = tmp_path_factory.mktemp("synth")
    synthesize(photos, root, split="val", limit=3, seed=7)
    return root


def test_list_parsing_filters_and_missing_files(tmp_path):
    lines = [
        "./Sony/short/10034_00_0.04s.ARW ./Sony/long/10034_00_10s.ARW ISO200 F8",
        "./Sony/short/10003_00_0.1s.ARW ./Sony/long/10003_00_10s.ARW ISO400 F9",
        "./Sony/short/10003_01_0.1s.ARW ./Sony/long/10003_00_10s.ARW ISO400 F9",
    ]
    (tmp_path / "Sony_test_list.txt").write_text("\n".join(lines) + "\n")
    pairs = read_sid_list("Sony_test_list.txt", tmp_path, check_files=False)
    assert len(pairs) == 3 and pairs[1].iso == 400 and pairs[1].aperture == "F9"
    assert pairs[2].scene == 10003 and pairs[2].burst == 1
    assert pairs[0].short == tmp_path / "Sony/short/10034_00_0.04s.ARW"
    kept = read_sid_list(tmp_path / "Sony_test_list.txt", first_burst_only=True,
                         exclude_scenes=MISALIGNED_SCENES, check_files=False)
    assert [p.short.name for p in kept] == ["10003_00_0.1s.ARW"]
    with pytest.raises(SidError, match="5 listed files are missing") as err:
        read_sid_list(tmp_path / "Sony_test_list.txt")
    assert "10034_00_0.04s.ARW" in str(err.value)
    with pytest.raises(SidError, match="no such list file"):
        read_sid_list("Sony_train_list.txt", tmp_path)


def test_synthetic_dataset_is_read_by_the_sid_loader_and_is_reproducible(synth_root, tmp_path, photo_folder):
    pairs = read_sid_list(synth_root / "Sony_val_list.txt")
    assert len(pairs) == 9  # 3 photos x ratios 100, 250, 300
    entries = build_cache(pairs, tmp_path / "cache")
    assert sorted({round(e.ratio) for e in entries}) == [100, 250, 300]
    again = synthesize(photo_folder, tmp_path / "again", split="val", limit=3, seed=7)
    a = raw.read_raw(pairs[0].short).mosaic
    b = raw.read_raw(again.parent / "Sony/short" / pairs[0].short.name).mosaic
    np.testing.assert_array_equal(a, b)


def test_short_exposure_is_dark_and_noisy_and_long_is_clean(synth_root):
    pairs = read_sid_list(synth_root / "Sony_val_list.txt")
    long = model_input.pack(raw.read_raw(pairs[0].long))
    by_ratio = {}
    for pair in pairs[:3]:
        frame = raw.read_raw(pair.short)
        ratio = raw.exposure_ratio(str(pair.short), str(pair.long), short_exposure=frame.exposure_time)
        by_ratio[round(ratio)] = model_input.pack(frame)
    noise = {}
    for ratio, short in by_ratio.items():
        # mean brightness scales with the exposure (within noise and clipping at black)
        assert short.mean() * ratio == pytest.approx(long.mean(), rel=0.15)
        noise[ratio] = np.std(short * ratio - long)
    # amplified shorts are visibly noisy, and noisier the darker they were
    assert 0.01 < noise[100] < noise[250] < noise[300]


def test_cache_is_reused_rebuilt_on_change_and_safe_across_processes(synth_root, tmp_path):
    pairs = read_sid_list(synth_root / "Sony_val_list.txt")
    cache = PackedCache(tmp_path / "c")
    first, _ = cache.short(pairs[0].short)
    mtime = first.stat().st_mtime_ns
    again, _ = cache.short(pairs[0].short)
    assert again == first and again.stat().st_mtime_ns == mtime
    packed = np.load(first, mmap_mode="r")
    assert isinstance(packed, np.memmap) and packed.dtype == np.uint16
    np.testing.assert_allclose(packed / UINT16_SCALE, model_input.pack(raw.read_raw(pairs[0].short)), atol=1e-5)
    os.utime(pairs[0].short, ns=(mtime + 10**9, mtime + 10**9))
    changed, _ = cache.short(pairs[0].short)
    assert changed != first
    # two processes filling the same cache produce complete, identical files
    folder = tmp_path / "shared"
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        results = pool.starmap(build_cache, [(pairs, folder), (pairs, folder)])
    assert [e.short for e in results[0]] == [e.short for e in results[1]]
    assert not [p for p in folder.iterdir() if p.name.startswith(".tmp-")]
    for entry in results[0]:
        entry.load()


def test_training_batches_are_aligned_amplified_seeded(synth_root, tmp_path):
    entries = build_cache(read_sid_list(synth_root / "Sony_val_list.txt"), tmp_path / "cache")
    ds = training_dataset(entries, patch_size=32, batch_size=3, seed=5, augment=False)
    x, y = next(iter(ds))
    assert x.shape == (3, 32, 32, 4) and y.shape == (3, 64, 64, 3)
    assert float(np.max(x)) <= 1.0 and float(np.min(x)) >= 0.0
    first = [b[0].numpy() for b in training_dataset(entries, patch_size=32, batch_size=3, seed=5).take(3)]
    second = [b[0].numpy() for b in training_dataset(entries, patch_size=32, batch_size=3, seed=5).take(3)]
    other = [b[0].numpy() for b in training_dataset(entries, patch_size=32, batch_size=3, seed=6).take(3)]
    assert all(np.array_equal(a, b) for a, b in zip(first, second))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))
    with pytest.raises(SidError, match="patch size 4096 is larger"):
        training_dataset(entries, patch_size=4096, batch_size=1)


def test_crop_and_augmentation_keep_input_and_target_aligned(tmp_path):
    """A frame whose target is the packed input upsampled: alignment survives crop and flips."""
    from sid_keras.data.cache import CachedPair
    from sid_keras.runtime.io import save_npy_atomic

    rng = np.random.default_rng(0)
    packed = rng.integers(0, 65535, (40, 56, 4)).astype(np.uint16)
    target = np.repeat(np.repeat(packed[..., :3], 2, axis=0), 2, axis=1)
    save_npy_atomic(tmp_path / "s.npy", packed)
    save_npy_atomic(tmp_path / "l.npy", target)
    entry = CachedPair(str(tmp_path / "s.npy"), str(tmp_path / "l.npy"), 1.0, 4, 2)
    for x, y in training_dataset([entry], patch_size=16, batch_size=1, seed=3).take(12):
        x, y = x.numpy()[0], y.numpy()[0]
        np.testing.assert_allclose(y[::2, ::2], x[..., :3], rtol=1e-6)


def test_frame_dataset_crops_to_the_model_stride(synth_root, tmp_path):
    entries = build_cache(read_sid_list(synth_root / "Sony_val_list.txt"), tmp_path / "cache")
    shapes = [tuple(x.shape) for x, _ in frame_dataset(entries, multiple=32)]
    assert len(shapes) == 9 and all(s[1] % 32 == 0 and s[2] % 32 == 0 for s in shapes)


def test_the_cache_command_shows_and_clears_only_the_packages_files(tmp_path, photo_folder, capsys):
    from sid_keras.apps.cli import main
    from sid_keras.data import cache_photos

    folder = tmp_path / "cache"
    cached = cache_photos([photo_folder], folder)  # a folder of photos is read as sid-keras synth reads it
    assert len(cached) == 3 and all(pathlib.Path(p).parent == folder for p in cached)
    (folder / "notes.txt").write_text("the user's own file")
    assert main(["cache", "--folder", str(folder)]) == 0
    assert f"cache folder: {folder} (3 files" in capsys.readouterr().out
    assert main(["cache", "--folder", str(folder), "--clear"]) == 0
    assert "removed 3 cached files" in capsys.readouterr().out
    assert [p.name for p in folder.iterdir()] == ["notes.txt"]


def test_the_python_data_api_takes_photos_without_a_cli_made_cache(photo_folder):
    from sid_keras.data import synthetic_dataset

    photos = sorted(str(p) for p in photo_folder.iterdir())
    x, y = next(iter(synthetic_dataset(photos, patch_size=16, batch_size=2)))
    assert x.shape == (2, 16, 16, 4) and y.shape == (2, 32, 32, 3)
