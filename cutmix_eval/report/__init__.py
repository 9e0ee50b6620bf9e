"""Figures and reports built from evaluation results."""
