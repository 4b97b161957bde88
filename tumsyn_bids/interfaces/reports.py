"""The reportlets node: nipreps-style SVG figures of one synthetic output, into ``sub-X/figures``."""

from __future__ import annotations

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    traits,
)


class _ReportletsInputSpec(BaseInterfaceInputSpec):
    out_dir = traits.Str(mandatory=True, desc="derivatives root")
    source_file = File(exists=True, mandatory=True, desc="raw source image")
    target = traits.Str(mandatory=True, desc="target contrast name")
    written = traits.Dict(mandatory=True, desc="what the derivatives writer wrote (image, mask, maps)")
    synth_file = File(exists=True, desc="synthetic image on the synthesis grid (RAS+)")
    real_registered = File(exists=True, desc="acquired target image after the QC registration, brain only")
    extra_registered = traits.List(File(exists=True), desc="further sources after their registration")
    extra_names = traits.List(traits.Str, desc="their raw file names, same order")


class _ReportletsOutputSpec(TraitedSpec):
    reportlets = traits.Dict(desc="kind -> SVG path")


class Reportlets(SimpleInterface):
    """Draw the brain-mask, source/synthetic, acquired/synthetic and tissue-map reportlets."""

    input_spec = _ReportletsInputSpec
    output_spec = _ReportletsOutputSpec
    _always_run = True  # the figures live outside the work dir: always check them

    def _run_interface(self, runtime):
        from tumsyn_bids.reports.reportlets import write_reportlets

        inputs = self.inputs
        self._results["reportlets"] = write_reportlets(
            out_dir=inputs.out_dir, source_file=inputs.source_file, target=inputs.target,
            written=inputs.written, synth_file=inputs.synth_file or None,
            real_registered=inputs.real_registered or None,
            extra_registered=inputs.extra_registered or [], extra_names=inputs.extra_names or [],
        )
        return runtime
