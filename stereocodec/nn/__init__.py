"""Networks: layers, entropy models and the BiSIC / BiSIC-Fast architectures (torch only)."""
