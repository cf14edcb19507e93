"""stereo-codec: a learned stereo image codec built on the BiSIC networks."""

__version__ = "0.1.0"
