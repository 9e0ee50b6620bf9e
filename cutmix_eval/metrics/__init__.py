"""Pure metric functions: arrays in, numbers out, no torch modules, no I/O.

Every function states its convention (positive class, threshold rule, units) in
its docstring; these are the functions whose exactness the tests check.
"""
