"""Hearing and measuring predictions: audio files in and out, resynthesis with baselines, the
report files (used by the resynthesis callback and by src/predict.py)."""
