"""Conform and brain-mask interfaces."""

from __future__ import annotations

import os

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    traits,
)


class _ConformInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="raw source image")


class _ConformOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="checked, RAS+-reoriented float32 image")
    report = traits.Dict(desc="shape, zooms, orientation and repairs")


class Conform(SimpleInterface):
    """Check a source image and reorient it for the engine."""

    input_spec = _ConformInputSpec
    output_spec = _ConformOutputSpec

    def _run_interface(self, runtime):
        from dataclasses import asdict

        from tumsyn_bids.anat.conform import conform

        out = os.path.join(runtime.cwd, "conformed.nii.gz")
        self._results["report"] = asdict(conform(self.inputs.in_file, out))
        self._results["out_file"] = out
        return runtime


class _BrainMaskInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="conformed source image")
    mode = traits.Enum("auto", "on", "off", usedefault=True, desc="--skull-strip")
    suffix = traits.Str("T1w", usedefault=True, desc="contrast of the source")
    t1w_file = File(exists=True, desc="conformed T1w of the same session")
    t1w_mask = File(exists=True, desc="brain mask of t1w_file")
    num_threads = traits.Int(1, usedefault=True, nohash=True, desc="threads for deepbet/antspyx")


class _BrainMaskOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="uint8 brain mask on the input grid")
    info = traits.Dict(desc="method, detail, volume_ml")


class BrainMask(SimpleInterface):
    """Brain mask by detection, deepbet, T1w-mask transfer or template registration."""

    input_spec = _BrainMaskInputSpec
    output_spec = _BrainMaskOutputSpec

    def _run_interface(self, runtime):
        from dataclasses import asdict

        from tumsyn_bids.anat.brainmask import compute_mask

        os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = str(self.inputs.num_threads)
        os.environ["OMP_NUM_THREADS"] = str(self.inputs.num_threads)
        out = os.path.join(runtime.cwd, "brain_mask.nii.gz")
        t1w = self.inputs.t1w_file if self.inputs.t1w_file else None
        t1w_mask = self.inputs.t1w_mask if self.inputs.t1w_mask else None
        result = compute_mask(self.inputs.in_file, out, mode=self.inputs.mode, suffix=self.inputs.suffix,
                              t1w_file=t1w, t1w_mask=t1w_mask)
        self._results["out_file"] = out
        self._results["info"] = asdict(result)
        return runtime


class _CoregisterSourceInputSpec(BaseInterfaceInputSpec):
    reference = File(exists=True, mandatory=True, desc="conformed reference source (defines the grid)")
    mask_file = File(exists=True, mandatory=True, desc="brain mask of the reference")
    in_file = File(exists=True, mandatory=True, desc="conformed further source of the same session")
    num_threads = traits.Int(1, usedefault=True, nohash=True, desc="antspyx threads")


class _CoregisterSourceOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="the further source registered rigidly onto the reference grid")
    qc = traits.Dict(desc="registration QC: Metric, Value, Threshold, ShiftMm, RotationDeg, Kept, Warning")


class CoregisterSource(SimpleInterface):
    """Register a further source rigidly to the reference source and check the registration."""

    input_spec = _CoregisterSourceInputSpec
    output_spec = _CoregisterSourceOutputSpec

    def _run_interface(self, runtime):
        from tumsyn_bids.anat.registration import coregister_source

        os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = str(self.inputs.num_threads)
        out = os.path.join(runtime.cwd, "registered.nii.gz")
        self._results["qc"] = coregister_source(self.inputs.reference, self.inputs.mask_file, self.inputs.in_file,
                                                out)
        self._results["out_file"] = out
        return runtime
