"""`batch --report HTML`: one static page over a batch, a row per scene.

A person looks before they trust, and a folder of GeoTIFFs shows nothing by itself. The
page needs no server and no script: a table with each scene's status, its times, the
reference's coverage, what co-registration moved, the scene's blur, its quicklook
(where `--quicklook` drew one) and links to its outputs, all by paths relative to the
page, so the folder can move or be served as it is.
"""

import html
from pathlib import Path

from rrsgan_geo import __version__
from rrsgan_geo.files import write_text_atomically
from rrsgan_geo.geo.locations import display_name

_STYLE = """
body { font-family: sans-serif; margin: 1.5em; }
table { border-collapse: collapse; }
th, td { border: 1px solid #bbb; padding: 4px 8px; vertical-align: top; text-align: left; }
th { background: #eee; }
td.failed { color: #a00; }
img { max-width: 640px; }
"""


def write_report(path: Path, results: list) -> Path:
    """The page at `path` for `results` (`batch.SceneResult`s), written whole or not at
    all."""
    rows = "\n".join(_row(result, path.parent) for result in results)
    counts = {
        status: sum(r.status == status for r in results) for status in ("done", "skipped", "failed")
    }
    summary = ", ".join(f"{count} {status}" for status, count in counts.items())
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>rrsgan-geo batch: {html.escape(summary)}</title>
<style>{_STYLE}</style>
</head>
<body>
<h1>rrsgan-geo batch</h1>
<p>{html.escape(summary)}; rrsgan-geo {html.escape(__version__)}</p>
<table>
<thead><tr><th>scene</th><th>status</th><th>seconds (model)</th><th>reference coverage</th>
<th>co-registration</th><th>scene blur</th><th>quicklook</th><th>outputs</th></tr></thead>
<tbody>
{rows}
</tbody>
</table>
</body>
</html>
"""
    write_text_atomically(path, page)
    return path


def _row(result, folder: Path) -> str:
    report = result.report
    cells = [
        html.escape(display_name(result.scene)),
        html.escape(result.status + (f": {result.reason}" if result.reason else "")),
        f"{result.seconds:.1f} ({report.model_seconds:.1f})" if report else "",
        f"{report.pixel_coverage:.1%}" if report else "",
        html.escape(_offsets(report)) if report else "",
        html.escape(report.scene_blur.describe().removeprefix("scene blur: "))
        if report and report.scene_blur
        else "",
        _quicklook(result, folder),
        _links(result, folder),
    ]
    status = ' class="failed"' if result.status == "failed" else ""
    tds = "".join(
        f"<td{status if index == 1 else ''}>{cell}</td>" for index, cell in enumerate(cells)
    )
    return f"<tr>{tds}</tr>"


def _offsets(report) -> str:
    moves = [
        f"{o.reference}: {o.cols:+d}, {o.rows:+d} px"
        for o in report.reference_offsets
        if o.agreeing
    ]
    return "; ".join(moves) or "not moved"


def _relative(path: Path, folder: Path) -> str:
    try:
        return path.resolve().relative_to(folder.resolve()).as_posix()
    except ValueError:
        return path.resolve().as_uri()


def _quicklook(result, folder: Path) -> str:
    plan = result.plan
    picture = plan.options.quicklook if plan is not None else None
    if picture is None or not Path(picture).is_file():
        return ""
    href = html.escape(_relative(Path(picture), folder))
    return f'<a href="{href}"><img src="{href}" alt="quicklook of {html.escape(href)}"></a>'


def _links(result, folder: Path) -> str:
    if result.status not in ("done", "skipped") or not result.output.is_file():
        return ""
    files = [result.output]
    plan = result.plan
    if plan is not None:
        files += [
            Path(p)
            for p in (plan.options.relevance_map, plan.options.consistency_map)
            if p is not None
        ]
    links = []
    for file in files:
        href = html.escape(_relative(file, folder))
        links.append(f'<a href="{href}">{html.escape(file.name)}</a>')
    return "<br>".join(links)
