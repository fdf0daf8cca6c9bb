"""Rendering only (terminal tables, JSON, HTML); computes nothing."""
