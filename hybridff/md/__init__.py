"""Analysis of molecular dynamics runs (run folders of ``hybridff simulate``)."""
