"""QR codes of otpauth URIs, drawn here as SVG: the secret never goes to a third-party service."""

from __future__ import annotations

import io

import segno


def qr_svg(uri: str) -> str:
    """A standalone SVG document (with its namespace, no XML declaration) showing `uri`.

    Error correction M survives a smudged screen; four pixels a module and the standard
    four-module quiet zone scan well at the size a page usually shows.
    """
    out = io.BytesIO()
    segno.make_qr(uri, error="m").save(
        out, kind="svg", xmldecl=False, svgns=True, nl=False, scale=4, border=4, light="#fff"
    )
    return out.getvalue().decode()
