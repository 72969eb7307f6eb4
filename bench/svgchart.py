"""A small SVG writer for the benchmark charts: grouped bars on a log2 scale.

Our own code, standard library only, so the chart can be drawn on any machine that runs
the benchmarks. Only what bench/run.py needs: panels of grouped bars, one group per
benchmark, one bar per allocator, drawn from the 1.0 line (the baseline) to the ratio, so
a bar going up means "more than the baseline" and going down "less".
"""
import math
from xml.sax.saxutils import escape

# Colour-blind-friendly palette (Okabe-Ito); my_alloc gets the strongest colour.
COLOURS = {"jemalloc": "#0072B2", "tcmalloc": "#E69F00", "mimalloc": "#009E73", "my_alloc": "#D55E00"}
PALETTE = ["#CC79A7", "#56B4E9", "#F0E442", "#999999"]    # for any other series


class Svg:
    """Collects elements and serialises them. Coordinates are in pixels, origin top-left."""

    def __init__(self, width, height):
        self.width = width
        self.height = height
        self.items = []

    def rect(self, x, y, w, h, fill, stroke="none", title=None):
        body = '<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s" stroke="%s"' % (
            x, y, max(w, 0.0), max(h, 0.0), fill, stroke)
        if title:
            # A <title> child shows as a tooltip in browsers: exact values without clutter.
            self.items.append(body + "><title>%s</title></rect>" % escape(title))
        else:
            self.items.append(body + "/>")

    def line(self, x1, y1, x2, y2, stroke="#000", width=1.0, dash=None):
        extra = ' stroke-dasharray="%s"' % dash if dash else ""
        self.items.append('<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="%.1f"%s/>'
                          % (x1, y1, x2, y2, stroke, width, extra))

    def text(self, x, y, s, size=12, anchor="start", fill="#000", weight="normal", rotate=None):
        transform = ' transform="rotate(%d %.1f %.1f)"' % (rotate, x, y) if rotate else ""
        self.items.append('<text x="%.1f" y="%.1f" font-size="%d" text-anchor="%s" fill="%s" '
                          'font-weight="%s"%s>%s</text>'
                          % (x, y, size, anchor, fill, weight, transform, escape(str(s))))

    def to_string(self):
        head = ('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" '
                'viewBox="0 0 %d %d" font-family="DejaVu Sans, Arial, Helvetica, sans-serif">\n'
                % (self.width, self.height, self.width, self.height))
        return (head + '<rect width="100%" height="100%" fill="#fff"/>\n'
                + "\n".join(self.items) + "\n</svg>\n")


def _log_range(values):
    """Powers of two that enclose every value and 1.0, at least [1/2, 2]."""
    vals = [v for v in values if v is not None and v > 0] + [1.0]
    lo = min(0.5, 2.0 ** math.floor(math.log2(min(vals))))
    hi = max(2.0, 2.0 ** math.ceil(math.log2(max(vals))))
    if max(vals) >= hi * 0.93:           # leave room for the label above the tallest bar
        hi *= 2
    return lo, hi


def _fmt_ratio(v):
    return "%.2f" % v if v < 10 else "%.1f" % v if v < 100 else "%.0f" % v


def _short_reason(status):
    """'SIGSEGV 2/5' -> 'SEGV', 'TIMEOUT 1/1' -> 'T/O', 'EXIT3 5/5' -> 'EX3': fits over a bar."""
    word = status.split()[0]
    if word.startswith("SIG"):
        return word[3:7]
    if word == "TIMEOUT":
        return "T/O"
    if word.startswith("EXIT"):
        return "EX" + word[4:]
    return word[:4]


def bar_panel(svg, x, y, w, h, title, groups, series, values, colours, ylabel):
    """Draw one panel.

    groups:  group labels (benchmarks), left to right
    series:  series labels (allocators), the bars inside each group
    values:  values[g][s] = ratio (float), or a string for a failed run ("FAILED",
             "TIMEOUT", ...), or None for nothing to draw (not installed)
    """
    lo, hi = _log_range([v for row in values for v in row if isinstance(v, (int, float))])
    left, right, top, bottom = 60, 10, 28, 58       # margins inside the panel
    px, py, pw, ph = x + left, y + top, w - left - right, h - top - bottom

    def ypos(v):
        return py + ph * (math.log2(hi) - math.log2(v)) / (math.log2(hi) - math.log2(lo))

    svg.text(x + w / 2, y + 16, title, size=15, anchor="middle", weight="bold")
    svg.text(x + 14, py + ph / 2, ylabel, size=12, anchor="middle", rotate=-90)

    # Grid and ticks at powers of two; the 1.0 line is the baseline, drawn last, darker.
    t = lo
    while t <= hi * 1.0001:
        yy = ypos(t)
        svg.line(px, yy, px + pw, yy, stroke="#ddd")
        svg.text(px - 6, yy + 4, ("%gx" % t), size=11, anchor="end",
                 weight="bold" if t == 1.0 else "normal")
        t *= 2
    svg.rect(px, py, pw, ph, fill="none", stroke="#888")

    ngroups = len(groups)
    gw = pw / max(ngroups, 1)
    bw = min(26.0, gw * 0.8 / max(len(series), 1))
    y1 = ypos(1.0)
    for g, label in enumerate(groups):
        gx = px + g * gw + (gw - bw * len(series)) / 2
        if g > 0:
            svg.line(px + g * gw, py, px + g * gw, py + ph, stroke="#f0f0f0")
        for s, name in enumerate(series):
            v = values[g][s]
            bx = gx + s * bw
            if v is None:
                continue
            if isinstance(v, str):
                # A failed run: a red mark on the baseline, with the reason in the tooltip.
                svg.rect(bx + 1, y1 - 9, bw - 2, 18, fill="#fff", stroke="#c00", title="%s: %s" % (name, v))
                svg.text(bx + bw / 2, y1 + 4, "X", size=11, anchor="middle", fill="#c00", weight="bold")
                svg.text(bx + bw / 2, y1 - 12, _short_reason(v), size=8, anchor="middle", fill="#c00")
                continue
            yv = ypos(max(min(v, hi), lo))
            svg.rect(bx + 1, min(yv, y1), bw - 2, abs(y1 - yv), fill=colours[s],
                     title="%s, %s: %.3f" % (label, name, v))
            ty = yv - 3 if v >= 1.0 else yv + 10
            svg.text(bx + bw / 2, ty, _fmt_ratio(v), size=8, anchor="middle")
        svg.text(px + g * gw + gw / 2, py + ph + 16, label, size=12, anchor="middle",
                 weight="bold" if label.startswith("geomean") else "normal")
    svg.line(px, y1, px + pw, y1, stroke="#000", width=1.5)


def legend(svg, x, y, series, colours, notes=()):
    """One row of coloured boxes with labels, then free-form notes."""
    for name, col in zip(series, colours):
        svg.rect(x, y - 10, 12, 12, fill=col)
        svg.text(x + 16, y, name, size=12)
        x += 24 + 8 * len(name)
    for note in notes:
        svg.text(x + 10, y, note, size=11, fill="#444")
        x += 20 + 6 * len(note)
