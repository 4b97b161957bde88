"""QC against an acquired image, and the derivatives writer."""

from __future__ import annotations

import os

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    traits,
)


class _CompareRealInputSpec(BaseInterfaceInputSpec):
    synth_file = File(exists=True, mandatory=True, desc="synthetic image (RAS+)")
    real_file = File(exists=True, mandatory=True, desc="acquired image of the target contrast")
    mask_file = File(exists=True, mandatory=True, desc="brain mask on the source grid")
    source_file = File(exists=True, mandatory=True, desc="conformed source image (registration target)")
    num_threads = traits.Int(1, usedefault=True, nohash=True, desc="antspyx threads")


class _CompareRealOutputSpec(TraitedSpec):
    qc = traits.Dict(desc="PSNR/SSIM/MAE and provenance")
    real_registered = File(exists=True, desc="acquired image on the synthetic grid, brain only")


class CompareReal(SimpleInterface):
    """Register the acquired target image to the synthetic one and score the synthesis."""

    input_spec = _CompareRealInputSpec
    output_spec = _CompareRealOutputSpec

    def _run_interface(self, runtime):
        from tumsyn_bids.anat.qc import compare_real

        os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = str(self.inputs.num_threads)
        out = os.path.join(runtime.cwd, "real_on_synth.nii.gz")
        self._results["qc"] = compare_real(self.inputs.synth_file, self.inputs.real_file,
                                           self.inputs.mask_file, self.inputs.source_file, out)
        self._results["real_registered"] = out
        return runtime


class _WriteDerivativesInputSpec(BaseInterfaceInputSpec):
    out_dir = traits.Str(mandatory=True, desc="derivatives root")
    bids_dir = traits.Str(mandatory=True, desc="raw dataset root")
    source_file = File(exists=True, mandatory=True, desc="raw source image")
    synth_file = File(exists=True, mandatory=True, desc="synthetic image (RAS+)")
    mask_file = File(exists=True, mandatory=True, desc="brain mask (RAS+ source grid)")
    target = traits.Str(mandatory=True, desc="target contrast name")
    prompt = traits.Str(mandatory=True, desc="prompt used")
    synthesis = traits.Dict(mandatory=True, desc="synthesis info")
    mask_info = traits.Dict(mandatory=True, desc="brain mask info")
    source_metadata = traits.Dict(desc="merged source sidecar")
    conditioning = traits.Dict(desc="prompt fields")
    mask_output = traits.Bool(False, usedefault=True, desc="zero the synthetic image outside the mask")
    qc = traits.Dict(desc="QC numbers (when an acquired target exists)")
    real_registered = File(exists=True, desc="registered acquired image for the QC figure")
    extra_sources = traits.List(traits.Dict, desc="further raw sources: path, contrast, prompt (multi-source)")
    extra_qc = traits.List(traits.Dict, desc="their registration QC records, same order")


class _WriteDerivativesOutputSpec(TraitedSpec):
    written = traits.Dict(desc="kind -> written path")


class WriteDerivatives(SimpleInterface):
    """Write image, mask, sidecars and figures of one synthetic output."""

    input_spec = _WriteDerivativesInputSpec
    output_spec = _WriteDerivativesOutputSpec
    _always_run = True  # outputs live outside the work dir: always check them

    def _run_interface(self, runtime):
        from tumsyn_bids.anat.outputs import write_synthetic

        inputs = self.inputs
        self._results["written"] = write_synthetic(
            out_dir=inputs.out_dir, bids_dir=inputs.bids_dir, source_file=inputs.source_file,
            synth_file=inputs.synth_file, mask_file=inputs.mask_file, target=inputs.target,
            prompt=inputs.prompt, synthesis=inputs.synthesis, mask_info=inputs.mask_info,
            source_metadata=inputs.source_metadata or {}, conditioning=inputs.conditioning or {},
            mask_output=inputs.mask_output, qc=inputs.qc or None,
            real_registered=inputs.real_registered or None,
            extra_sources=inputs.extra_sources or [], extra_qc=inputs.extra_qc or [],
        )
        return runtime


class _ToTemplateInputSpec(BaseInterfaceInputSpec):
    source_file = File(exists=True, mandatory=True, desc="conformed source image")
    mask_file = File(exists=True, mandatory=True, desc="its brain mask")
    synth_file = File(exists=True, mandatory=True, desc="synthetic image (RAS+)")
    res = traits.Int(0, usedefault=True, desc="template resolution in mm (0 = template's own)")
    num_threads = traits.Int(1, usedefault=True, nohash=True, desc="antspyx threads")


class _ToTemplateOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="synthetic image in template space")
    xfm = File(exists=True, desc="source-to-template composite transform (.h5)")
    info = traits.Dict(desc="template provenance")


class ToTemplate(SimpleInterface):
    """Register the masked source to MNI152NLin2009cAsym and carry the synthetic image along."""

    input_spec = _ToTemplateInputSpec
    output_spec = _ToTemplateOutputSpec

    def _run_interface(self, runtime):
        from tumsyn_bids.anat.template import to_template

        os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = str(self.inputs.num_threads)
        out = os.path.join(runtime.cwd, "synth_template.nii.gz")
        xfm = os.path.join(runtime.cwd, "source_to_template.h5")
        self._results["info"] = to_template(self.inputs.source_file, self.inputs.mask_file, self.inputs.synth_file,
                                            out, xfm, res=self.inputs.res or None)
        self._results["out_file"] = out
        self._results["xfm"] = xfm
        return runtime


class _WriteTemplateInputSpec(BaseInterfaceInputSpec):
    out_dir = traits.Str(mandatory=True, desc="derivatives root")
    bids_dir = traits.Str(mandatory=True, desc="raw dataset root")
    source_file = File(exists=True, mandatory=True, desc="raw source image")
    target = traits.Str(mandatory=True, desc="target contrast name")
    space = traits.Str(mandatory=True, desc="e.g. MNI152NLin2009cAsym:res-2")
    in_file = File(exists=True, mandatory=True, desc="template-space synthetic image")
    xfm = File(exists=True, mandatory=True, desc="transform")
    info = traits.Dict(desc="template provenance")
    written = traits.Dict(desc="native outputs (its sidecar is copied)")


class WriteTemplate(SimpleInterface):
    """Write the template-space copy, its sidecar and the transform into out_dir."""

    input_spec = _WriteTemplateInputSpec
    output_spec = _WriteDerivativesOutputSpec
    _always_run = True

    def _run_interface(self, runtime):
        import json

        from tumsyn_bids.anat.outputs import write_template_copy

        sidecar = None
        if self.inputs.written and self.inputs.written.get("sidecar"):
            with open(self.inputs.written["sidecar"], encoding="utf-8") as handle:
                sidecar = json.load(handle)
        self._results["written"] = write_template_copy(
            out_dir=self.inputs.out_dir, bids_dir=self.inputs.bids_dir, source_file=self.inputs.source_file,
            target=self.inputs.target, space=self.inputs.space, image=self.inputs.in_file, xfm=self.inputs.xfm,
            info=self.inputs.info or {}, synth_sidecar=sidecar)
        return runtime
