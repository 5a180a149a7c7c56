"""Reports with pictures: one self-contained HTML file (inline CSS and SVG, no script, no external
reference) from the trade journal, a backtest's trades or the analyzer's results.

The only package that imports matplotlib (an import-linter contract): the daemon never loads it.
"""
