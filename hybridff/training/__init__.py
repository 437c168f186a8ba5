"""hybridff.training"""
