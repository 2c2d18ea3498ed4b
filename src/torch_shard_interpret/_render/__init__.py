"""Rendering primitives for every offline view: SVG charts, PNG images, escaping and the page.

A leaf: it imports nothing else of ours, so any technique can render its own result with it.
Techniques build their sections from these; ``report/`` only assembles sections into pages.
"""

from ._charts import PALETTE as PALETTE
from ._charts import line_chart as line_chart
from ._page import CSS as CSS
from ._page import standalone as standalone
from ._png import img_tag as img_tag
from ._png import png_bytes as png_bytes
from ._png import png_data_uri as png_data_uri
from ._svg import colorbar as colorbar
from ._svg import colored_tokens as colored_tokens
from ._svg import diverging as diverging
from ._svg import esc as esc
from ._svg import fmt as fmt
from ._svg import grouped_bars as grouped_bars
from ._svg import hbar_rows as hbar_rows
from ._svg import heatmap as heatmap
from ._svg import key_values as key_values
from ._svg import nice_ticks as nice_ticks
from ._svg import quoted as quoted
from ._svg import sequential as sequential
from ._svg import sequential_tokens as sequential_tokens
from ._svg import show_token as show_token
from ._svg import signed_rows as signed_rows
from ._svg import text_on as text_on
from ._svg import text_width as text_width
