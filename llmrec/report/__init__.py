"""
The HTML report: Table 2/3 and Figure 2 of the paper, rendered from ``Results``.

``render_report`` returns the page as a string and ``report_assets`` the files it needs beside it
(plotly.js); writing them is the CLI's job.
"""

from llmrec.report.charts import figure2_html
from llmrec.report.render import render_report, report_assets

__all__ = ["figure2_html", "render_report", "report_assets"]
