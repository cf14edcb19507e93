"""Evaluation tooling: metrics, BD-rate, baseline codecs, rate-distortion reports."""
