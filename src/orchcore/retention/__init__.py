"""Retention of orch's history tables: old rows removed in batches by the daemons."""

from orchcore.retention.history import FINISHED, History, HistoryRetention, windows_of_days

__all__ = ["FINISHED", "History", "HistoryRetention", "windows_of_days"]
