"""
The HTML report: Table 2/3 and Figure 2 of the paper, rendered from ``Results``.

``render_report`` returns the page as a string, ``report_files`` every file of a report folder (the
page, plotly.js, the explorer's data, the tables as CSV and LaTeX) and ``render_index`` the page
listing many runs; writing them is the CLI's job.
"""

from llmrec.report.charts import figure2_html
from llmrec.report.render import RunSummary, render_index, render_report, report_assets, report_files

__all__ = ["RunSummary", "figure2_html", "render_index", "render_report", "report_assets", "report_files"]
