"""The synthesis interface: declares GPU use so nipype's MultiProc schedules it as a GPU task."""

from __future__ import annotations

import os

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    traits,
)


class _SynthesizeInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="conformed source image")
    mask_file = File(exists=True, mandatory=True, desc="brain mask of in_file")
    prompt = traits.Str(mandatory=True, desc="TUMSyn prompt of the image to generate")
    source_prompt = traits.Str("", usedefault=True, desc="the source image's own prompt ('' = unknown)")
    model = traits.Str("tumsyn-small", usedefault=True, desc="model name")
    weights = traits.Str("", usedefault=True, desc="weights location ('' = default search)")
    device = traits.Str("auto", usedefault=True, desc="auto, cpu, cuda or cuda:N")
    voxel_size = traits.List(traits.Float, minlen=3, maxlen=3, desc="output voxel size (mm)")
    mode = traits.Enum("fast", "faithful", usedefault=True, desc="inference mode")
    tissue_maps = traits.List(traits.Str, desc="also save these predicted tissue maps (PD, T1, T2, T2star, ...)")
    refine = traits.Bool(True, usedefault=True, desc="physics-consistency refinement against the source")
    extra_sources = traits.List(File(exists=True), desc="further sources registered onto in_file's grid")
    extra_prompts = traits.List(traits.Str, desc="their source prompts ('' = unknown), same order")
    extra_qc = traits.List(traits.Dict, desc="their registration QC records (only Kept ones are used)")
    num_threads = traits.Int(1, usedefault=True, nohash=True, desc="torch CPU threads")
    use_gpu = traits.Bool(False, usedefault=True, nohash=True, desc="node runs on a GPU (nipype MultiProc GPU slots)")


class _SynthesizeOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="synthetic image (RAS+, output grid)")
    info = traits.Dict(desc="device, seconds, windows, model_name, sha256, voxel_size, maps (name -> file)")


class Synthesize(SimpleInterface):
    """Run the patch engine on one masked source image."""

    input_spec = _SynthesizeInputSpec
    output_spec = _SynthesizeOutputSpec

    def _run_interface(self, runtime):
        from dataclasses import asdict

        from tumsyn_bids.anat.registration import kept_sources
        from tumsyn_bids.anat.synthesis import synthesize_file

        out = os.path.join(runtime.cwd, "synthetic.nii.gz")
        voxel = tuple(self.inputs.voxel_size) if self.inputs.voxel_size else None
        info = synthesize_file(self.inputs.in_file, self.inputs.mask_file, self.inputs.prompt, out,
                               model=self.inputs.model, weights=self.inputs.weights or None,
                               device=self.inputs.device, voxel_size=voxel, mode=self.inputs.mode,
                               num_threads=self.inputs.num_threads,
                               tissue_maps=tuple(self.inputs.tissue_maps or ()),
                               source_prompt=self.inputs.source_prompt or None,
                               refine=bool(self.inputs.refine),
                               extra_sources=kept_sources(self.inputs.extra_sources or [],
                                                          self.inputs.extra_prompts or [],
                                                          self.inputs.extra_qc or []))
        self._results["out_file"] = out
        self._results["info"] = asdict(info)
        return runtime
