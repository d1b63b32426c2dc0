"""Metric names and, as tasks add them, metrics of our own (torchmetrics `Metric`s)."""

from src.metrics.keys import MetricKey, head_metrics, metric_key, parse_metric_key

__all__ = ["MetricKey", "head_metrics", "metric_key", "parse_metric_key"]
