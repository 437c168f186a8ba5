"""hybridff.ml"""
