"""Reporting: tables, paired tests and plots over a study's run folders (``tmc-report``)."""
