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
    num_threads = traits.Int(1, usedefault=True, desc="antspyx threads")


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
        )
        return runtime
