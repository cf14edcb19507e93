"""Images in and out: reading views, stereo photo formats (MPO, side-by-side), finding pairs."""
