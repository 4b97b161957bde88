"""nipype workflow factories (``init_*_wf``): they only wire interfaces together."""
