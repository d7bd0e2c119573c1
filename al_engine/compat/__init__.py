"""Compatibility with small-text 1.4.1: which al_engine object stands for which small-text name.

Nothing here imports small-text (or anything heavy) at import time.
"""
