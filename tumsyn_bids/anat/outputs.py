"""Write one synthetic image, its brain mask and sidecars into out_dir (atomically; the report figures
are the SVG reportlets of :mod:`tumsyn_bids.reports.reportlets`, drawn by their own node)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from tumsyn_bids.anat.conform import geometry_of, to_source_orientation
from tumsyn_bids.bids import derivatives as bd

LOGGER = logging.getLogger("tumsyn.outputs")


def _relative_to(path: str | Path, root: str | Path) -> str:
    return bd.dataset_relpath(path, root)  # the path in the dataset, never a symlink's target


def write_mask(out_dir: str | Path, bids_dir: str | Path, source_file: str | Path, mask_file: str | Path,
               mask_info: dict[str, Any]) -> Path:
    """Write the brain mask (in the source's own grid and orientation) and its sidecar."""
    out_dir = Path(out_dir)
    rel_source = _relative_to(source_file, bids_dir)
    rel = bd.mask_relpath(rel_source)  # = output_paths(...).mask of every target of this source
    mask = to_source_orientation(nib.load(str(mask_file)), source_file)
    img = nib.Nifti1Image(np.asarray(mask.dataobj).astype(np.uint8), mask.affine)
    img.header.set_xyzt_units("mm", "sec")
    bd.atomic_save_nifti(img, out_dir / rel)
    extra = {"SkullStripDetail": mask_info.get("detail"), "BrainVolumeMl": mask_info.get("volume_ml")}
    if mask_info.get("qc"):
        extra["MaskQC"] = dict(mask_info["qc"])  # Method, VolumeML, SupportDice, Warning (+ InsideSupport, Rejected)
    extra.update(source_geometry(source_file))
    sidecar = bd.mask_sidecar(source_relpath=rel_source, method=mask_info.get("method", "unknown"), extra=extra)
    bd.atomic_write_json(bd.sidecar_path(out_dir / rel), sidecar)
    return out_dir / rel


def mask_qc_warnings(out_dir: str | Path, bids_dir: str | Path, source_files) -> list[str]:
    """``<mask file>: <warning>`` for each written brain mask whose MaskQC holds a warning (once per mask)."""
    lines: list[str] = []
    for source in dict.fromkeys(str(s) for s in source_files):
        mask = Path(out_dir) / bd.mask_relpath(_relative_to(source, bids_dir))
        sidecar = bd.read_json(bd.sidecar_path(mask)) or {}
        warning = (sidecar.get("MaskQC") or {}).get("Warning")
        if warning and mask.is_file():
            line = f"{mask}: {warning} (source {Path(source).name}; synthesis used it)"
            if line not in lines:
                lines.append(line)
    return lines


def source_geometry(source_file: str | Path) -> dict[str, Any]:
    """``{"SourceGeometry": {...}}`` when the source's sform/qform had to be repaired, else ``{}``."""
    record = geometry_of(source_file).record()
    return {"SourceGeometry": record} if record else {}


def write_synthetic(
    *,
    out_dir: str | Path,
    bids_dir: str | Path,
    source_file: str | Path,
    synth_file: str | Path,
    mask_file: str | Path,
    target: str,
    prompt: str,
    synthesis: dict[str, Any],
    mask_info: dict[str, Any],
    source_metadata: dict[str, Any],
    conditioning: dict[str, Any],
    mask_output: bool = False,
    qc: dict[str, Any] | None = None,
    real_registered: str | Path | None = None,
    extra_sources: list[dict[str, Any]] | None = None,
    extra_qc: list[dict[str, Any]] | None = None,
) -> dict[str, str]:
    """Write the synthetic image + sidecar (+ mask, tissue maps); return {kind: path}.

    ``extra_sources`` (multi-source synthesis): ``{"path", "contrast", "prompt"}`` of each further raw
    source, ``extra_qc`` their registration QC records (same order): see :func:`sources_record`.
    """
    out_dir = Path(out_dir)
    rel_source = _relative_to(source_file, bids_dir)
    paths = bd.output_paths(rel_source, target)
    mask_path = write_mask(out_dir, bids_dir, source_file, mask_file, mask_info)

    image = _output_image(synth_file, mask_file, source_file, mask_output)
    image_path = bd.atomic_save_nifti(image, out_dir / paths.image)

    if qc:
        qc = dict(qc)
        real = qc.get("RealImage")
        if real:
            qc["RealImage"] = bd.raw_uri(_relative_to(real, bids_dir))
    record = sources_record(bids_dir, source_file, synthesis, extra_sources, extra_qc or []) if extra_sources else []
    maps = write_maps(out_dir=out_dir, rel_source=rel_source, source_file=source_file, mask_file=mask_file,
                      mask_path=mask_path, target=target, prompt=prompt, synthesis=synthesis,
                      mask_output=mask_output, paths=paths)
    sidecar = bd.synthetic_sidecar(
        target=target,
        source_relpath=rel_source,
        source_suffix=bd.parse_entities(rel_source)[1],
        mask_relpath=mask_path.relative_to(out_dir),
        prompt=prompt,
        conditioning=conditioning,
        model_name=synthesis["model_name"],
        weights_sha256=synthesis["sha256"],
        device=synthesis["device"],
        voxel_size=synthesis["voxel_size"],
        skull_strip_method=mask_info.get("method", "unknown"),
        masked_output=mask_output,
        source_metadata=source_metadata,
        seconds=synthesis.get("seconds"),
        qc=qc,
        extra={**(source_geometry(source_file) or {}),
               **({"Refinement": _refinement_record(synthesis["refinement"])} if synthesis.get("refinement") else {})}
        or None,
        further_contrasts=[str(e.get("Contrast")) for e in record[1:] if e["Used"]],
    )
    if record:
        sidecar["Sources"] = ([sidecar["Sources"][0]] + [e["Source"] for e in record[1:] if e["Used"]]
                              + sidecar["Sources"][1:])
        sidecar["SynthesisSources"] = record
    # The sidecar goes last: its presence with this prompt/model marks the output as complete.
    sidecar_file = bd.atomic_write_json(bd.sidecar_path(image_path), sidecar)
    return {"image": str(image_path), "sidecar": str(sidecar_file), "mask": str(mask_path), **maps}


def sources_record(bids_dir: str | Path, source_file: str | Path, synthesis: dict[str, Any],
                   extra_sources: list[dict[str, Any]], extra_qc: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The sidecar's ``SynthesisSources``: every planned source (BIDS URI), how it was used, its registration QC.

    A further source is used when its registration passed the QC and the refinement read it (the
    refinement's ``sources`` count); a dropped one carries the QC's ``Warning``.
    """
    refinement = synthesis.get("refinement") or {}
    n_read = int(refinement.get("sources", 1) or 1) if refinement.get("refined") else 1
    entries: list[dict[str, Any]] = [{
        "Source": bd.raw_uri(_relative_to(source_file, bids_dir)), "Used": True,
        "Role": "reference: network input, output grid and brain mask",
    }]
    n_kept = sum(1 for qc in extra_qc if qc.get("Kept"))
    for extra, qc in zip(extra_sources, extra_qc, strict=True):
        entry: dict[str, Any] = {"Source": bd.raw_uri(_relative_to(extra["path"], bids_dir)),
                                 "Contrast": extra.get("contrast"), "SourcePrompt": extra.get("prompt")}
        if not qc.get("Kept"):
            entry.update(Used=False, Role="dropped: its registration to the reference failed the check",
                         Warning=qc.get("Warning"))
        elif n_read < 1 + n_kept:
            entry.update(Used=False, Role="not used: only the physics refinement reads further sources, and it "
                                          "did not read them all (refinement off, or an acquisition unknown)")
        else:
            entry.update(Used=True, Role="registered rigidly to the reference; evidence in the physics refinement")
        entry["RegistrationQC"] = {key: qc.get(key) for key in
                                   ("Registration", "Metric", "Value", "Threshold", "ShiftMm", "RotationDeg", "Kept")}
        entries.append(entry)
    return entries


def source_qc_warnings(sidecar_files) -> list[str]:
    """``<synthetic image>: <source>: <warning>`` for each further source a multi-source output dropped."""
    lines: list[str] = []
    for path in sidecar_files:
        sidecar = bd.read_json(Path(path)) or {}
        for entry in sidecar.get("SynthesisSources") or []:
            if entry.get("Warning"):
                lines.append(f"{path}: {entry.get('Source')}: {entry['Warning']}")
    return lines


def _refinement_record(info: dict) -> dict:
    """The sidecar's ``Refinement`` entry (inference.refine): what the source was read as, and how much moved."""
    if not info.get("refined"):
        return {"Applied": False, "Reason": "the source's contrast is unknown"}
    return {"Applied": True, "SourceAcquisition": info.get("source_protocol"), "Assumed": info.get("assumed") or None,
            "MeanShift": round(float(info.get("mean_shift", 0.0)), 4),
            "SourceMismatchBefore": round(float(info.get("mismatch_before", 0.0)), 4),
            "SourceMismatchAfter": round(float(info.get("mismatch_after", 0.0)), 4),
            "Seconds": info.get("seconds")}


def _output_image(ras_file: str | Path, mask_file: str | Path, source_file: str | Path,
                  mask_output: bool) -> nib.Nifti1Image:
    """A synthesis-grid (RAS+) image as written: float32, optionally zeroed outside the mask, source orientation."""
    ras = nib.load(str(ras_file))
    data = np.asarray(ras.dataobj, dtype=np.float32)
    if mask_output:
        from tumsyn_bids.anat.registration import resample_to

        mask_on_grid = resample_to(ras_file, mask_file, interpolator="nearestNeighbor") > 0.5
        data = np.where(mask_on_grid, data, 0.0).astype(np.float32)
    img = to_source_orientation(nib.Nifti1Image(data, ras.affine), source_file)
    out_img = nib.Nifti1Image(np.asarray(img.dataobj, dtype=np.float32), img.affine)
    out_img.header.set_xyzt_units("mm", "sec")
    out_img.header.set_data_dtype(np.float32)
    return out_img


def write_maps(*, out_dir: str | Path, rel_source: str, source_file: str | Path, mask_file: str | Path,
               mask_path: Path, target: str, prompt: str, synthesis: dict[str, Any],
               mask_output: bool = False, paths: bd.OutputPaths | None = None) -> dict[str, str]:
    """Write the predicted tissue maps of ``synthesis["maps"]`` that have a BIDS name, with sidecars.

    Same grid, orientation and masking as the synthetic image; ``bd.TISSUE_MAPS`` gives names and
    units (GdR1 and Susceptibility have no BIDS suffix and are skipped). Returns
    ``{"map_T1": path, "map_T1_sidecar": path, ...}``.
    """
    out_dir = Path(out_dir)
    paths = paths or bd.output_paths(rel_source, target)
    written: dict[str, str] = {}
    for name, ras_file in sorted((synthesis.get("maps") or {}).items()):
        if name not in paths.maps:
            LOGGER.info("tissue map %s has no BIDS suffix: not written", name)
            continue
        rel = paths.maps[name]
        path = bd.atomic_save_nifti(_output_image(ras_file, mask_file, source_file, mask_output), out_dir / rel)
        sidecar = bd.map_sidecar(
            tissue_map=name, target=target, source_relpath=rel_source,
            source_suffix=bd.parse_entities(rel_source)[1], mask_relpath=mask_path.relative_to(out_dir),
            prompt=prompt, model_name=synthesis["model_name"], weights_sha256=synthesis["sha256"],
            device=synthesis["device"], voxel_size=synthesis["voxel_size"], masked_output=mask_output,
        )
        written[f"map_{name}"] = str(path)
        written[f"map_{name}_sidecar"] = str(bd.atomic_write_json(bd.sidecar_path(path), sidecar))
    return written


def write_template_copy(*, out_dir: str | Path, bids_dir: str | Path, source_file: str | Path, target: str,
                        space: str, image: str | Path, xfm: str | Path, info: dict[str, Any],
                        synth_sidecar: dict[str, Any] | None = None) -> dict[str, str]:
    """Copy a template-space synthetic image + sidecar and the source-to-template transform."""
    out_dir = Path(out_dir)
    rel_source = _relative_to(source_file, bids_dir)
    paths = bd.output_paths(rel_source, target, template_spaces=(space,))
    rel, xfm_rel = paths.templates[space], paths.xfms[space]
    res = bd.split_space(space)[1]
    bd.atomic_write(out_dir / xfm_rel, lambda tmp: tmp.write_bytes(Path(xfm).read_bytes()))
    img = nib.load(str(image))
    data = np.asarray(img.dataobj, dtype=np.float32)
    if (synth_sidecar or {}).get("MaskedOutput") and info.get("MaskFile"):  # --mask-output holds here too
        data = np.where(np.asarray(nib.load(str(info["MaskFile"])).dataobj) > 0, data, 0.0).astype(np.float32)
    out = nib.Nifti1Image(data, img.affine, img.header)
    out.set_data_dtype(np.float32)
    image_path = bd.atomic_save_nifti(out, out_dir / rel)
    sidecar = {key: value for key, value in (synth_sidecar or {}).items() if key not in {"QC", "Sources"}}
    sidecar.update({
        "SkullStripped": True,
        "Sources": [bd.local_uri(paths.image), bd.local_uri(xfm_rel)],
        "TemplateSource": info.get("TemplateSource"),
        "TemplateRegistration": info.get("Registration"),
    })
    if res:
        sidecar["Resolution"] = info.get("Resolution")
    sidecar_file = bd.atomic_write_json(bd.sidecar_path(image_path), sidecar)
    return {"image": str(image_path), "sidecar": str(sidecar_file), "xfm": str(out_dir / xfm_rel)}


def dumps(value: Any) -> str:
    """JSON text for passing dicts through nipype string traits."""
    return json.dumps(value, default=str, sort_keys=True)
