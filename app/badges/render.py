"""A readiness badge: a small flat SVG in the style of the badges open-source projects show."""

from html import escape

from app.readiness.scoring import Level

COLOURS = {
    Level.production_ready: "#2e7d32",
    Level.pilot_ready: "#b08400",
    Level.not_ready: "#c62828",
}
LABEL = "readiness"
# Verdana 11px averages about 6.5 px a character; padding on both sides of each half.
CHAR_WIDTH = 6.5
PADDING = 10


def _width(text: str) -> int:
    return round(len(text) * CHAR_WIDTH) + PADDING


def badge_svg(level: Level, score: float) -> str:
    message = f"{level.value.replace('_', ' ')} {score:g}"
    left, right = _width(LABEL), _width(message)
    total = left + right
    title = escape(f"{LABEL}: {message}")
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{total}" height="20" role="img"'
        f' aria-label="{title}">'
        f"<title>{title}</title>"
        f'<rect width="{left}" height="20" fill="#555"/>'
        f'<rect x="{left}" width="{right}" height="20" fill="{COLOURS[level]}"/>'
        '<g fill="#fff" text-anchor="middle" font-family="Verdana,DejaVu Sans,sans-serif"'
        ' font-size="11">'
        f'<text x="{left / 2:g}" y="14">{escape(LABEL)}</text>'
        f'<text x="{left + right / 2:g}" y="14">{escape(message)}</text>'
        "</g></svg>"
    )
