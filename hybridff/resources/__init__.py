"""Data files shipped with hybridff (pretrained models, small reference sets)."""
