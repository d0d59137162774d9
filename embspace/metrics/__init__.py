"""Metric families: each module turns prepared rows into numbers with a named convention."""
