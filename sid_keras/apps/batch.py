"""`sid-keras enhance`'s batch: inputs expanded (folders, patterns), outputs planned and checked
before any work, files read, enhanced and written side by side on lanes, a bad file one line.
"""

from __future__ import annotations

import os
import pathlib
from typing import Callable, Sequence

import numpy as np

from sid_keras.errors import SidError, describe, unexpected
from sid_keras.runtime import raw, tags
from sid_keras.runtime.inference import Enhancer


def expand_inputs(inputs: Sequence[str]) -> list[pathlib.Path]:
    """Files, folders (their raw files) and globs, in order, without duplicates.

    An existing file is taken as it is even when its name has glob characters (``shot[1].dng``).
    """
    import glob

    found: list[pathlib.Path] = []
    for item in inputs:
        path = pathlib.Path(item)
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if p.suffix.lower() in raw.RAW_SUFFIXES)
        elif not path.exists() and any(c in item for c in "*?["):
            found += sorted(pathlib.Path(p) for p in glob.glob(item) if pathlib.Path(p).is_file())
        else:
            found.append(path)
    seen, unique = set(), []
    for p in found:
        real = os.path.realpath(p)  # unlike Path.resolve, no error on a symlink loop: read_raw reports it
        if real not in seen:
            seen.add(real)
            unique.append(p)
    return unique


def plan_outputs(inputs: Sequence[pathlib.Path], out: str | os.PathLike, fmt: str | None) -> tuple[str, list]:
    """The output format and ``[(input, output file)]`` of an enhance command, checked up front.

    ``out`` is a file name for one input (its extension picks the format) or a folder (an
    existing one, a name ending in a slash, or a name without extension); a ``fmt`` that
    contradicts the extension, an unknown extension, two inputs that would write the same file
    and an output that is an input are refused before any work.
    """
    from sid_keras.runtime.io import EXTENSION_FORMATS, OUTPUT_FORMATS, format_for, refuse_writing_over_inputs

    named_folder = str(out).endswith(("/", os.sep))
    out = pathlib.Path(out)
    is_file_name = not named_folder and not out.is_dir() and out.suffix != ""
    if is_file_name and out.suffix.lower() not in EXTENSION_FORMATS:
        raise SidError(f"{out}: unknown output extension {out.suffix!r}; use "
                       f"{', '.join(sorted(EXTENSION_FORMATS))} or a folder name")
    if is_file_name and len(inputs) > 1:
        raise SidError(f"{out}: {len(inputs)} inputs need an output folder, not a file name")
    if is_file_name:
        named = EXTENSION_FORMATS[out.suffix.lower()]
        if fmt is not None and OUTPUT_FORMATS[format_for(out, fmt)] != OUTPUT_FORMATS[named]:
            raise SidError(f"{out}: the name says {named} but --format is {fmt}; make them agree")
        chosen = format_for(out, fmt) if fmt else named
        refuse_writing_over_inputs(inputs, [out])
        return chosen, [(inputs[0], out)]
    chosen = format_for(out, fmt) if fmt else "png"
    plan = [(source, out / f"{source.stem}{OUTPUT_FORMATS[chosen]}") for source in inputs]
    seen: dict[pathlib.Path, pathlib.Path] = {}
    for source, target in plan:
        if target in seen:
            raise SidError(f"{seen[target]} and {source} would both write {target}; "
                           "enhance them into separate folders")
        seen[target] = source
    refuse_writing_over_inputs(inputs, [target for _, target in plan])
    return chosen, plan


def write_pixels(target: pathlib.Path, pixels: np.ndarray, frame: raw.RawFrame, fmt: str, *,
                 overwrite: bool = False, **encoding) -> None:
    """Write the pixels of :meth:`Enhancer.enhance_to_pixels` in format ``fmt``, atomically.

    ``encoding``: ``quality`` (JPEG) and ``compression`` (PNG) of :func:`sid_keras.runtime.io.write_image`.
    """
    if fmt == "dng":
        from sid_keras.runtime.dng import write_linear_dng

        names = tags.camera_identity(frame.path) if os.path.isfile(frame.path) else {}
        write_linear_dng(target, pixels, white_balance=frame.white_balance, color_matrix=frame.color_matrix,
                         orientation=frame.orientation, crop=frame.crop, overwrite=overwrite,
                         make=names.get("Make"), model=names.get("Model"),
                         unique_model=names.get("UniqueCameraModel"))
    else:
        from sid_keras.runtime.io import write_image

        write_image(target, pixels, fmt=fmt, overwrite=overwrite, **encoding)


def enhance_files(enhancer: Enhancer, plan: Sequence[tuple[pathlib.Path, pathlib.Path]], *,
                  ratio: float | str | None = "auto", fmt: str = "png", overwrite: bool = False,
                  progress: bool = False, log: Callable[[str], None] = print, verbose: bool = False,
                  **encoding) -> list[tuple[str, str]]:
    """Enhance ``[(input, output)]`` (:func:`plan_outputs`), going on past bad files and failed
    writes; returns ``[(file, message)]`` for the failures.

    A small pipeline overlaps the stages of consecutive files: threads decode the next raws, the
    network runs in the lanes of :meth:`Enhancer.lanes` (two files at once on a 2-core machine),
    and threads encode finished images; LibRaw, the network runtimes, numpy and zlib release the
    GIL. A few files are in flight at a time and messages come in the plan's order.
    ``encoding``: ``quality`` and ``compression`` of :func:`sid_keras.runtime.io.write_image`.
    ``verbose``: each file's line also says where a noise-aware model's noise level came from.
    """
    import collections
    import queue
    from concurrent.futures import ThreadPoolExecutor

    from sid_keras.runtime.io import check_encoding

    check_encoding(**encoding)
    from sid_keras.runtime.progress import Progress

    failures: list[tuple[str, str]] = []
    bar = Progress(len(plan), "enhance", "file", enabled=progress)
    log = bar.above(log)
    lanes = enhancer.lanes(len(plan))
    idle_lanes: queue.SimpleQueue = queue.SimpleQueue()
    for lane in lanes:
        idle_lanes.put(lane)

    def read(source: pathlib.Path, target: pathlib.Path) -> raw.RawFrame:
        if target.exists() and not overwrite:
            raise SidError(f"{target}: already exists; pass --overwrite to replace it")
        return enhancer.prepare(raw.read_raw(source))

    def enhance(reading):
        frame = reading.result()
        lane = idle_lanes.get()
        try:
            noise = lane.noise_law(frame)
            return frame, noise, *lane.enhance_to_pixels(frame, ratio, fmt, noise)
        finally:
            idle_lanes.put(lane)

    def write(source: pathlib.Path, target: pathlib.Path, enhancing) -> list[str]:
        frame, noise, pixels, value, how = enhancing.result()
        write_pixels(target, pixels, frame, fmt, overwrite=overwrite, **encoding)
        if verbose and noise is not None:
            how += f"; noise level: {noise.source}"
        return [*frame.notices, f"{source} -> {target} (ratio x{value:.1f} {how})"]

    def finish(source: pathlib.Path, writing) -> None:
        """Report a finished file: its lines, or the error of whichever stage failed."""
        try:
            lines = writing.result()
        except Exception as err:  # noqa: BLE001 - a bad file, a full disk, a bug: report it, go on with the next
            message = describe(err)
            if message is None and verbose:
                raise  # the traceback, for the report
            message = message or unexpected(err)  # a bug that one file meets does not cost the others
            if str(source) not in message and str(target_of[source]) not in message:
                message = f"{source}: {message}"  # out of memory, say: the line names the file too
            failures.append((str(source), message))
            lines = []
        for line in lines:  # outside the try: a file written is a success whatever happens to its line
            log(line)
        bar.update()

    target_of = dict(plan)
    in_flight = collections.deque()
    # As many readers and writers as lanes, so that the lanes start together and the last files'
    # images are encoded side by side instead of one after another on one core.
    with ThreadPoolExecutor(len(lanes), "sid-read") as reader, \
            ThreadPoolExecutor(len(lanes), "sid-enhance") as network, \
            ThreadPoolExecutor(len(lanes), "sid-write") as writer:
        try:
            for source, target in plan:
                enhancing = network.submit(enhance, reader.submit(read, source, target))
                in_flight.append((source, writer.submit(write, source, target, enhancing)))
                if len(in_flight) > len(lanes) + 1:
                    finish(*in_flight.popleft())
            while in_flight:
                finish(*in_flight.popleft())
        except BaseException:  # Ctrl-C or a bug: drop the files not started; running writes stay atomic
            for pool in (reader, network, writer):
                pool.shutdown(wait=False, cancel_futures=True)
            raise
        finally:
            bar.close()
    return failures
