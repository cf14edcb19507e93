"""Latent coding: spatial orders over the networks' probability models, range coding, symbol checksum."""
