"""hybridff.qm"""
