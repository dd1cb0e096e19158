"""Reads sweep results (Parquet only) and builds tables, figures and report pages."""
