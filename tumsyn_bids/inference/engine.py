"""The patch inference engine: ``synthesize(image, affine, prompt, model, ...)``.

Pipeline: check input -> normalise intensities (p0.01/p99.9, as published) -> output grid for the
target voxel size (:mod:`.geometry`) -> reorder axes for the network (a bundle with
``axis_order == "zyx"``, i.e. the official weights trained on SimpleITK arrays, sees the nibabel
(x, y, z) array transposed (2, 1, 0); coordinates and scale factors follow, and the result is
transposed back) -> window plan (:mod:`.tiling`) -> per batch of windows: encoder + fusion once,
then each window's output sub-grid decoded in query chunks sized to a memory budget -> weighted
average of overlapping windows -> float32 volume on the output grid, in the normalised range.

Modes:

* ``faithful``: the published demo's tiling: windows of the model's size (60), stride W/2,
  uniform averaging, batch 1, float32 (unless ``amp=True`` is passed explicitly).
* ``fast``: stride about 3/4 W with evenly spread windows; each window decodes only the output
  voxels nearest its centre plus a narrow band blended with a cosine ramp (a partition of unity,
  :mod:`.tiling`), several windows per batch on CUDA, bf16/fp16 autocast where supported.

Exact accelerations used in both modes: channels-last convolutions; all-zero windows share one
encoding; for the published decoder (``imnet`` over [trilinear sample, coordinates]) and for
decoders of sampled features alone (``decode_sampled``, the physics-structured models, which
also receive the prompt's condition vector) the trilinear sampling of the window's separable
query grid is done with three small matrix products (:mod:`.sampling`) instead of
``grid_sample``, after a run-time check against ``net.decode`` on the first window (any other
network is decoded through ``net.decode``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from tumsyn_bids.errors import DataError, TumsynError, UsageError
from tumsyn_bids.inference.geometry import output_grid
from tumsyn_bids.inference.normalize import normalize_intensity
from tumsyn_bids.inference.sampling import interpolation_matrix, separable_sample
from tumsyn_bids.inference.tiling import WindowPlan, plan_windows

if TYPE_CHECKING:  # pragma: no cover
    import torch

log = logging.getLogger(__name__)

DEFAULT_WINDOW = 60
MODES = ("fast", "faithful")
_ZYX = (2, 1, 0)


@dataclass
class SynthesisResult:
    """A synthesized volume on its output grid."""

    data: np.ndarray  # float32 (X', Y', Z'), normalised intensity scale
    affine: np.ndarray  # (4, 4) output affine
    seconds: float  # wall time of the whole call
    device: str
    windows: int  # windows decoded (both passes with flip averaging)
    mode: str = "fast"
    voxel_size: tuple[float, float, float] = (1.0, 1.0, 1.0)  # effective output voxel size (mm)
    window: int = DEFAULT_WINDOW
    batch_size: int = 1
    query_chunk: int = 0
    dtype: str = "float32"  # compute precision (autocast dtype or float32)
    encoded: int = 0  # encoder runs (all-zero windows share one)
    timings: dict[str, float] = field(default_factory=dict)


def model_window(model: Any, default: int = DEFAULT_WINDOW) -> int:
    """The input window edge the model was built for, else 60 (the published patch size).

    Looked up as ``model.window``, then ``spec[key]``, ``spec["inference"][key]`` and
    ``spec["synthesis"]["args"][key]`` for key in window, window_size, patch_size.
    """
    spec = getattr(model, "spec", None)
    holders: list[Any] = [model]
    if isinstance(spec, dict):
        synth = spec.get("synthesis")
        holders += [spec, spec.get("inference"), synth.get("args") if isinstance(synth, dict) else None]
    for holder in holders:
        for key in ("window", "window_size", "patch_size"):
            value = holder.get(key) if isinstance(holder, dict) else getattr(holder, key, None)
            if isinstance(value, (tuple, list)) and value and all(v == value[0] for v in value):
                value = value[0]
            if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value > 0:
                return int(value)
    return default


def lr_axis(affine: np.ndarray) -> int:
    """The array axis closest to the world left-right (x) direction."""
    direction = np.asarray(affine, float)[:3, :3]
    return int(np.argmax(np.abs(direction[0]) / np.linalg.norm(direction, axis=0)))


def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3:
        raise DataError(f"expected a 3D image, got {image.ndim}D with shape {tuple(image.shape)}")
    if min(image.shape) < 1:
        raise DataError(f"image has an empty axis (shape {tuple(image.shape)})")
    if not np.issubdtype(image.dtype, np.number) or np.iscomplexobj(image):
        raise DataError(f"image data type {image.dtype} is not real-valued")
    if not np.all(np.isfinite(image)):
        raise DataError(f"image contains {int(np.sum(~np.isfinite(image)))} NaN or infinite voxels")
    return image


def _linear_width(net: "torch.nn.Module") -> int:
    """Widest decoder layer (in + out features), to size query chunks."""
    import torch

    widths = [m.in_features + m.out_features for m in net.modules() if isinstance(m, torch.nn.Linear)]
    return max(widths) if widths else 4096


def _max_channels(net: "torch.nn.Module") -> int:
    import torch

    chans = [m.out_channels for m in net.modules() if isinstance(m, torch.nn.Conv3d)]
    return max(chans) if chans else 256


def _free_bytes(device: "torch.device") -> int:
    import torch

    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 << 30


def query_chunk_size(net: "torch.nn.Module", feat_channels: int, device: "torch.device", budget: int | None) -> int:
    """Queries per decoder call that fit ``budget`` bytes.

    Default budget: a quarter of free GPU memory capped at 4 GiB (so a 2x super-resolution of the
    official model stays far below 40 GB), or an eighth of available RAM capped at 512 MiB.
    """
    if budget is None:
        free = _free_bytes(device)
        budget = min(free // 4, 4 << 30) if device.type == "cuda" else min(free // 8, 512 << 20)
    per_query = 4 * 2 * (2 * _linear_width(net) + feat_channels + 16)  # fp32, 2x slack
    return int(np.clip(budget // per_query, 1024, 1 << 22))


def _auto_batch(net: "torch.nn.Module", window: int, device: "torch.device", mode: str, amp: bool) -> int:
    """Windows per encoder call: 1 on CPU and in faithful mode; on CUDA what fits min(free/2, 24 GiB)."""
    if mode == "faithful" or device.type != "cuda":
        return 1
    per_window = window**3 * _max_channels(net) * (2 if amp else 4) * 4  # widest block's activations, slack
    budget = min(_free_bytes(device) // 2, 24 << 30)
    return int(np.clip(budget // per_window, 1, 8))


def synthesize(
    image: np.ndarray,
    affine: np.ndarray,
    prompt: Any,
    model: Any,
    *,
    voxel_size: float | Sequence[float] | None = None,
    device: "str | torch.device" = "auto",
    mode: str = "fast",
    batch_size: int | None = None,
    amp: bool | None = None,
    flip_average: bool = False,
    progress: bool = True,
    window: int | None = None,
    stride: int | None = None,
    query_chunk: int | None = None,
    memory_budget: int | None = None,
    normalize: bool = True,
    share_empty_windows: bool = True,
    tissue_map: str | None = None,
    source_prompt: Any = None,
) -> SynthesisResult:
    """Synthesize the contrast described by ``prompt`` from ``image`` on the grid of ``voxel_size``.

    ``image`` is a 3D array in nibabel (x, y, z) order with ``affine``; ``model`` a ModelBundle
    (``.net``, ``.encode_prompt``, ``.axis_order``, ``.spec``). ``voxel_size`` (mm, scalar or 3)
    None keeps the input grid. ``amp`` None means on in fast mode, off in faithful mode.
    ``window``/``stride`` override the tiling; ``query_chunk`` fixes the queries per decoder call
    (default: sized to ``memory_budget`` bytes or a share of free memory). The model's networks
    are moved to the chosen device. ``share_empty_windows`` encodes all-zero windows once (exact).
    ``tissue_map`` (physics-structured models: PD, T1, T2, T2star, GdR1, Susceptibility) returns that
    predicted map in physical units instead of the image. ``source_prompt`` (the source image's own
    prompt) tells physics-structured models how the input was acquired; other models ignore it.
    Returns float32 data in the normalised intensity range.
    """
    import torch

    from tumsyn_bids.inference.device import autocast_dtype, resolve_device

    t_start = time.perf_counter()
    if mode not in MODES:
        raise UsageError(f"unknown inference mode {mode!r}: use fast or faithful")
    if batch_size is not None and batch_size < 1:
        raise UsageError(f"batch size must be at least 1, got {batch_size}")
    image = _check_image(image)
    grid = output_grid(image.shape, affine, voxel_size, published=(mode == "faithful"))
    dev = resolve_device(device)
    win = int(window or model_window(model))
    if win < 2:
        raise UsageError(f"window must be at least 2 voxels, got {win}")
    if stride is None:
        stride = win // 2 if mode == "faithful" else max(1, (3 * win) // 4)
    if stride < 1 or stride > win:
        raise UsageError(f"stride must be between 1 and the window ({win}), got {stride}")
    use_amp = (mode == "fast") if amp is None else bool(amp)
    dtype = autocast_dtype(dev, use_amp)

    text = prompt.text() if hasattr(prompt, "text") and callable(prompt.text) else str(prompt)
    if hasattr(model, "to"):
        model.to(dev)  # both networks and the cached prompt features
    net = model.net.to(dev).eval()
    # channels-last: oneDNN / cuDNN convolutions skip layout reorders (same results to float rounding)
    channels_last = True
    net.to(memory_format=torch.channels_last_3d)
    with torch.inference_mode():
        text_feat = (model.encode_prompt(text, source=source_prompt) if source_prompt is not None
                     else model.encode_prompt(text)).to(dev, torch.float32)
    if tissue_map is not None:  # physics-structured models: a tissue-parameter map instead of the image
        from tumsyn_bids.models.physics_net import map_condition

        if not getattr(net, "conditions_decoder", False):
            raise UsageError(f"model {getattr(model, 'name', '?')} does not predict tissue maps")
        text_feat = map_condition(text_feat, tissue_map)

    vol = normalize_intensity(image) if normalize else image.astype(np.float32)
    order = _ZYX if getattr(model, "axis_order", "xyz") == "zyx" else (0, 1, 2)
    net_grid = grid.permuted(order) if order != (0, 1, 2) else grid
    plan = plan_windows(vol.shape if order == (0, 1, 2) else tuple(vol.shape[i] for i in order),
                        net_grid.out_shape, win, stride, spread=(mode == "fast"),
                        scheme="partition" if mode == "fast" else "published", scales=net_grid.scale)
    batch = batch_size or _auto_batch(net, win, dev, mode, dtype is not None)
    passes = [None, lr_axis(affine)] if flip_average else [None]
    log.info(
        "synthesize: device=%s mode=%s dtype=%s window=%d stride=%d windows=%d x %d pass(es) batch=%d "
        "in=%s out=%s voxel=%s",
        dev, mode, dtype or "float32", win, stride, len(plan.windows), len(passes), batch,
        image.shape, grid.out_shape, np.round(grid.voxel_size, 4).tolist(),
    )
    runner = _Runner(net, text_feat, dev, dtype, batch, query_chunk, memory_budget, channels_last,
                     share_empty_windows)
    total: np.ndarray | None = None
    with _progress_bar(progress, len(plan.windows) * len(passes)) as advance:
        for flip in passes:
            x = vol if flip is None else np.flip(vol, axis=flip)
            x = np.ascontiguousarray(np.transpose(x, order))
            out = runner.run(x, plan, advance)
            out = np.transpose(out, tuple(np.argsort(order)) + tuple(range(3, out.ndim)))
            out = out if flip is None else np.flip(out, axis=flip)
            total = out.copy() if total is None else total + out
    if len(passes) > 1:
        total /= len(passes)
    if not np.all(np.isfinite(total)):
        raise TumsynError("synthesis produced non-finite values (numerical overflow in the network?)")
    seconds = time.perf_counter() - t_start
    timings = dict(runner.timings, total=seconds)
    log.info("synthesize: %d windows (%d encoded) in %.2f s (encode %.2f s, decode %.2f s)",
             runner.windows, runner.encoded, seconds, timings.get("encode", 0.0), timings.get("decode", 0.0))
    return SynthesisResult(
        data=total,
        affine=grid.affine.copy(),
        seconds=seconds,
        device=str(dev),
        windows=runner.windows,
        encoded=runner.encoded,
        mode=mode,
        voxel_size=tuple(float(v) for v in grid.voxel_size),  # type: ignore[arg-type]
        window=win,
        batch_size=batch,
        query_chunk=runner.chunk,
        dtype=str(dtype).replace("torch.", "") if dtype is not None else "float32",
        timings=timings,
    )


class _progress_bar:
    """A rich progress bar over windows (or nothing); yields an ``advance(n)`` callable."""

    def __init__(self, enabled: bool, total: int):
        self.enabled, self.total, self._bar = enabled, total, None

    def __enter__(self):
        if not self.enabled:
            return lambda n=1: None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._bar = Progress(TextColumn("synthesis"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                             transient=True)
        self._bar.__enter__()
        task = self._bar.add_task("windows", total=self.total)
        return lambda n=1: self._bar.advance(task, n)

    def __exit__(self, *exc):
        if self._bar is not None:
            self._bar.__exit__(*exc)
        return False


class _Runner:
    """Runs one window plan through the network and blends the windows' outputs."""

    def __init__(self, net, text_feat, device, dtype, batch, query_chunk, memory_budget, channels_last, share_empty):
        self.net, self.text_feat, self.device, self.dtype = net, text_feat, device, dtype
        self.channels_last = channels_last
        self.share_empty = share_empty
        self.separable: bool | None = None  # decided on the first window (see _separable_matches)
        self.batch, self.query_chunk, self.memory_budget = batch, query_chunk, memory_budget
        self.windows = 0
        self.encoded = 0
        self.chunk = 0
        self.timings: dict[str, float] = {"encode": 0.0, "decode": 0.0}
        from tumsyn_bids.models.physics_net import requested_channels

        self.channels = requested_channels(text_feat) if getattr(net, "conditions_decoder", False) else 1

    def _autocast(self):
        import contextlib

        import torch

        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def _sync(self) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def run(self, vol: np.ndarray, plan: WindowPlan, advance) -> np.ndarray:
        """Blend all windows of ``plan`` over ``vol`` (network array order) into the output grid.

        Windows whose input is all zero (background of a skull-stripped image, padding) share one
        encoding of a zero window: the same input gives the same features, so this is exact.
        """
        import torch

        dev, w = self.device, plan.window
        padded = torch.from_numpy(np.pad(vol, plan.pad)).to(dev)
        extra = (self.channels,) if self.channels > 1 else ()
        out = torch.zeros(tuple(plan.out_shape) + extra, dtype=torch.float32, device=dev)
        wsum = torch.zeros(plan.out_shape, dtype=torch.float32, device=dev)

        def crop(win):
            a0, a1, a2 = win.start
            return padded[a0 : a0 + w, a1 : a1 + w, a2 : a2 + w]

        flags = [not self.share_empty or bool(crop(win).any()) for win in plan.windows]
        busy = [win for win, f in zip(plan.windows, flags, strict=False) if f]
        empty = [win for win, f in zip(plan.windows, flags, strict=False) if not f]
        groups = [busy[i : i + self.batch] for i in range(0, len(busy), self.batch)]
        if empty:
            groups.append(empty)
        with torch.inference_mode():
            for group in groups:
                is_empty = group is empty
                x = (torch.zeros((1, 1, w, w, w), device=dev) if is_empty
                     else torch.stack([crop(g) for g in group])[:, None])
                if self.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last_3d)
                t0 = time.perf_counter()
                with self._autocast():
                    feat = self.net.encode(x, self.text_feat.expand(x.shape[0], -1))
                self._sync()
                t1 = time.perf_counter()
                self.timings["encode"] += t1 - t0
                if not self.chunk:
                    self.chunk = self.query_chunk or query_chunk_size(
                        self.net, int(feat.shape[1]), dev, self.memory_budget)
                for i, win in enumerate(group):
                    k = 0 if is_empty else i
                    pred = self._decode(feat[k : k + 1], win)
                    weights = [torch.as_tensor(a.weights, dtype=torch.float32, device=dev) for a in win.axes]
                    wgt = weights[0][:, None, None] * weights[1][None, :, None] * weights[2][None, None, :]
                    sl = win.out_slices
                    out[sl] += pred * (wgt[..., None] if extra else wgt)
                    wsum[sl] += wgt
                    advance(1)
                del feat
                self._sync()
                self.timings["decode"] += time.perf_counter() - t1
                self.windows += len(group)
                self.encoded += x.shape[0]
        if not bool((wsum > 0).all()):
            raise TumsynError(f"internal error: {int((wsum <= 0).sum())} output voxels not covered by any window")
        return (out / (wsum[..., None] if extra else wsum)).cpu().numpy()

    def _decode(self, feat, win) -> "torch.Tensor":
        """Predictions on the window's output sub-grid, decoded in chunks of about ``self.chunk`` queries."""
        if self.separable is None:
            self.separable = self._separable_matches(feat, win)
        if self.separable:
            return self._decode_separable(feat, win)
        return self._decode_generic(feat, win)

    def _decode_generic(self, feat, win) -> "torch.Tensor":
        """Any network: ``net.decode(feat, coords)`` on flat chunks of the window's queries."""
        import torch

        dev = self.device
        axes = [torch.as_tensor(a.coords, dtype=torch.float32, device=dev) for a in win.axes]
        coords = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 3)
        c = self.channels
        pred = torch.empty((coords.shape[0], c), dtype=torch.float32, device=dev)
        with self._autocast():
            for q0 in range(0, coords.shape[0], self.chunk):
                q1 = min(q0 + self.chunk, coords.shape[0])
                pred[q0:q1] = self._net_decode(feat, coords[None, q0:q1]).reshape(q1 - q0, c).float()
        return pred.reshape(tuple(win.out_shape) + ((c,) if c > 1 else ()))

    def _net_decode(self, feat, coords) -> "torch.Tensor":
        """``net.decode``; networks that render the target themselves (``conditions_decoder``)
        also get the prompt's condition vector."""
        if getattr(self.net, "conditions_decoder", False):
            return self.net.decode(feat, coords, self.text_feat)
        return self.net.decode(feat, coords)

    def _separable_parts(self, feat, win):
        import torch

        dev = self.device
        mats = [torch.as_tensor(interpolation_matrix(a.coords, n), dtype=torch.float32, device=dev)
                for a, n in zip(win.axes, feat.shape[2:], strict=False)]
        axes = [torch.as_tensor(a.coords, dtype=torch.float32, device=dev) for a in win.axes]
        return mats, axes

    def _decode_separable(self, feat, win) -> "torch.Tensor":
        """The published decoder (``imnet`` on [trilinear sample, coords]) with separable sampling,
        in slabs along the first axis of about ``self.chunk`` queries each."""
        import torch

        mats, axes = self._separable_parts(feat, win)
        m0, m1, m2 = win.out_shape
        rows = max(1, self.chunk // max(1, m1 * m2))
        feat32 = feat.float()
        c = self.channels
        pred = torch.empty((m0, m1 * m2, c), dtype=torch.float32, device=self.device)
        for i0 in range(0, m0, rows):
            i1 = min(i0 + rows, m0)
            samples = separable_sample(feat32, [mats[0][i0:i1], mats[1], mats[2]])
            with self._autocast():
                if self._sampled_decoder():
                    out = self.net.decode_sampled(samples[None], self.text_feat)
                else:
                    coords = torch.stack(torch.meshgrid(axes[0][i0:i1], axes[1], axes[2], indexing="ij"),
                                         -1).reshape(-1, 3)
                    out = self.net.imnet(torch.cat([samples, coords], dim=-1)[None])
            pred[i0:i1] = out.reshape(i1 - i0, m1 * m2, c).float()
        return pred.reshape(tuple(win.out_shape) + ((c,) if c > 1 else ()))

    def _sampled_decoder(self) -> bool:
        """The network decodes from sampled features alone (``decode_sampled``, physics models)."""
        return callable(getattr(self.net, "decode_sampled", None))

    def _separable_matches(self, feat, win) -> bool:
        """Use separable sampling only if the network decodes as ``imnet([sample, coords])``:
        checked once against ``net.decode`` in float32 on up to 512 queries of the first window."""
        import torch

        sampled = self._sampled_decoder()
        if not sampled and not callable(getattr(self.net, "imnet", None)):
            return False
        mats, axes = self._separable_parts(feat, win)
        feat32 = feat[:1].float()
        samples = separable_sample(feat32, [mats[0][:1], mats[1], mats[2]])[:512]
        coords = torch.stack(torch.meshgrid(axes[0][:1], axes[1], axes[2], indexing="ij"), -1).reshape(-1, 3)[:512]
        try:
            if sampled:
                mine = self.net.decode_sampled(samples[None], self.text_feat).float()
            else:
                mine = self.net.imnet(torch.cat([samples, coords], dim=-1)[None]).float()
        except (RuntimeError, TypeError, ValueError):
            return False
        ref = self._net_decode(feat32, coords[None]).float()
        ok = mine.shape == ref.shape and bool(
            torch.allclose(mine, ref, rtol=1e-4, atol=1e-4 * (1 + float(ref.abs().max()))))
        log.debug("separable sampling %s", "enabled" if ok else "disabled: network decodes differently")
        return ok
