"""Callbacks of our own (Lightning's are configured directly in configs/callbacks/)."""

from src.callbacks.budget import TrainingBudget
from src.callbacks.checkpoint import BestCheckpoint
from src.callbacks.codec_report import CodecReport
from src.callbacks.filterbank_plot import FilterbankPlot
from src.callbacks.frontend_drift import FrontendDrift
from src.callbacks.grad_stats import GradientStats
from src.callbacks.head_table import HeadMetricsTable
from src.callbacks.predictions import PredictionReport
from src.callbacks.resume import ResumeState
from src.callbacks.resynthesis import ResynthesisReport
from src.callbacks.sequence_report import SequenceReport
from src.callbacks.speed import TrainingSpeed

__all__ = [
    "BestCheckpoint",
    "CodecReport",
    "FilterbankPlot",
    "FrontendDrift",
    "GradientStats",
    "HeadMetricsTable",
    "PredictionReport",
    "ResumeState",
    "ResynthesisReport",
    "SequenceReport",
    "TrainingBudget",
    "TrainingSpeed",
]
