"""Building blocks of the self-contained report: sections, tables and figures embedded as base64 PNG.

Every figure is also written to figures/<name>.png and .pdf so it can go straight into a manuscript.
"""

from __future__ import annotations

import base64
import html
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from radfuse.artifacts import atomic_path

STYLE = """
body{font-family:Helvetica,Arial,sans-serif;margin:2em auto;max-width:1200px;color:#222}
h1{border-bottom:2px solid #333}h2{border-bottom:1px solid #aaa;margin-top:2em}
table{border-collapse:collapse;font-size:12px;margin:0.8em 0}td,th{border:1px solid #ccc;padding:3px 6px}
th{background:#f0f0f0}.na{color:#a33;font-style:italic}figcaption{font-size:11px;color:#555}
.figs{display:flex;flex-wrap:wrap;align-items:flex-start}
.fig{flex:0 0 380px;margin:4px}.fig.wide{flex-basis:760px}.fig img{width:100%}
pre{background:#f7f7f7;
padding:0.8em;overflow-x:auto;font-size:11px}nav a{margin-right:1em}
"""


@dataclass
class Section:
    anchor: str
    title: str
    blocks: list[str] = field(default_factory=list)

    def text(self, message: str) -> None:
        self.blocks.append(f"<p>{html.escape(message)}</p>")

    def unavailable(self, why: str) -> None:
        self.blocks.append(f'<p class="na">not available: {html.escape(why)}</p>')

    def table(self, frame: pd.DataFrame, caption: str = "", float_format: str = "{:.3f}") -> None:
        body = frame.to_html(index=False, na_rep="", float_format=lambda v: float_format.format(v), border=0)
        cap = f"<h4>{html.escape(caption)}</h4>" if caption else ""
        self.blocks.append(cap + body)

    def pre(self, text: str) -> None:
        self.blocks.append(f"<pre>{html.escape(text)}</pre>")

    def render(self) -> str:
        return f'<section id="{self.anchor}"><h2>{html.escape(self.title)}</h2>\n' + "\n".join(self.blocks) + \
            "</section>"


def format_p(p) -> str:
    """p-values for display: three decimals, '<0.001' below that, blank when undefined."""
    return "" if p is None or pd.isna(p) else ("<0.001" if p < 0.001 else f"{p:.3f}")


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")


# no timestamp or version in the files: a rerun on one machine gives byte-identical figures
FIGURE_METADATA = {"png": {"Software": None}, "pdf": {"Creator": None, "Producer": None, "CreationDate": None}}


class FigureSink:
    """Saves figures as 300-dpi PNG + PDF under `folder` and returns the embedded <img> tag (screen resolution)."""

    def __init__(self, folder: Path, dpi: int = 110, file_dpi: int = 300):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.dpi = dpi
        self.file_dpi = file_dpi
        self.saved: list[Path] = []

    def embed(self, fig, name: str, caption: str = "", wide: bool = False) -> str:
        name = slug(name)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=self.dpi, bbox_inches="tight", metadata=FIGURE_METADATA["png"])
        for ext in ("png", "pdf"):
            with atomic_path(self.folder / f"{name}.{ext}") as tmp:
                if ext == "png":
                    fig.savefig(tmp, format="png", dpi=self.file_dpi, bbox_inches="tight",
                                metadata=FIGURE_METADATA["png"])
                else:
                    fig.savefig(tmp, format="pdf", bbox_inches="tight", metadata=FIGURE_METADATA["pdf"])
            self.saved.append(self.folder / f"{name}.{ext}")
        if fig.canvas.manager is not None:  # a figure made with pyplot: free it there (radfuse's own are not)
            import matplotlib.pyplot as plt

            plt.close(fig)
        data = base64.b64encode(buffer.getvalue()).decode()
        cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
        css = "fig wide" if wide else "fig"
        return f'<figure class="{css}"><img alt="{name}" src="data:image/png;base64,{data}">{cap}</figure>'

    def embed_file(self, path: Path, caption: str = "") -> str:
        """Embed an existing PNG (e.g. a Grad-CAM overlay)."""
        data = base64.b64encode(Path(path).read_bytes()).decode()
        cap = html.escape(caption or Path(path).name)
        return f'<figure class="fig"><img alt="{cap}" src="data:image/png;base64,{data}"><figcaption>{cap}' \
               "</figcaption></figure>"


def figure_row(tags: list[str]) -> str:
    return '<div class="figs">' + "".join(tags) + "</div>"


def page(title: str, sections: list[Section]) -> str:
    nav = " ".join(f'<a href="#{s.anchor}">{html.escape(s.title)}</a>' for s in sections)
    body = "\n".join(s.render() for s in sections)
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1><nav>{nav}</nav>\n{body}"
            "</body></html>\n")
