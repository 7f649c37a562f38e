"""`kgen graph --format html`: one self-contained page (no network, no files beside it).

The page holds Graphviz's SVG inline, the details of every element as JSON,
and a few lines of script: hovering a pod, service, node device or client
shows its details in a panel; `graph.html#pod_pod-0` opens with that
element's details shown (a link to a pod).
"""

from __future__ import annotations

import html
import json
import re

from generator.graph.details import details
from generator.graph.overlay import Overlay
from generator.graph.picture import Picture

STYLE = """
body { font-family: "DejaVu Sans", Verdana, sans-serif; margin: 0; background: #fff; color: #222; }
header { padding: 8px 16px; border-bottom: 1px solid #ddd; font-size: 14px; }
header small { color: #666; }
main { display: flex; align-items: flex-start; }
#picture { flex: 1; overflow: auto; padding: 8px; }
#picture svg { max-width: 100%; height: auto; }
#details { width: 320px; min-height: 120px; margin: 8px; padding: 10px; border: 1px solid #ccc;
           border-radius: 6px; background: #fafafa; font-size: 13px; position: sticky; top: 8px; }
#details h2 { font-size: 15px; margin: 0 0 6px 0; }
#details table { border-collapse: collapse; }
#details td { padding: 2px 6px 2px 0; vertical-align: top; }
#details td.key { color: #666; white-space: nowrap; }
g.kgen-hover > path, g.kgen-hover > polygon { stroke-width: 3px; }
g[data-kgen] { cursor: pointer; }
"""

SCRIPT = """
(function () {
  var info = JSON.parse(document.getElementById('kgen-details').textContent);
  var panel = document.getElementById('details');
  var current = null;
  function show(id) {
    var rows = info[id];
    if (!rows) { return; }
    var title = document.createElement('h2');
    var keys = Object.keys(rows);
    title.textContent = rows[keys[0]];
    var table = document.createElement('table');
    keys.forEach(function (key) {
      var tr = table.insertRow();
      var k = tr.insertCell(); k.className = 'key'; k.textContent = key;
      var v = tr.insertCell(); v.textContent = rows[key];
    });
    panel.replaceChildren(title, table);
    panel.dataset.shown = id;
    if (current) { current.classList.remove('kgen-hover'); }
    current = document.getElementById(id);
    if (current) { current.classList.add('kgen-hover'); }
  }
  var found = 0;
  Object.keys(info).forEach(function (id) {
    var el = document.getElementById(id);
    if (!el) { return; }
    found += 1;
    el.setAttribute('data-kgen', id);
    el.addEventListener('mouseenter', function () { show(id); });
  });
  document.body.dataset.hoverable = String(found);
  function fromHash() {
    var id = decodeURIComponent(location.hash.slice(1));
    if (id) { show(id); }
  }
  window.addEventListener('hashchange', fromHash);
  fromHash();
})();
"""


def _inline_svg(svg: bytes) -> str:
    """Graphviz's SVG without its XML prolog and doctype, ready to sit in HTML."""
    text = svg.decode()
    return re.sub(r"^.*?(?=<svg)", "", text, count=1, flags=re.S)


def page(picture: Picture, svg: bytes, overlay: Overlay | None = None) -> str:
    info = details(picture)
    title = f"kgen lab {picture.name}"
    subtitle = f"drawn from the {picture.source}"
    if overlay is not None:
        subtitle += f" · {overlay.title()}"
        if overlay.dns is not None:
            subtitle += f" · first: {overlay.dns}"
    # JSON inside <script>: '</' must not appear literally.
    data = json.dumps(info, indent=1).replace("</", "<\\/")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        f"<header><b>{html.escape(title)}</b> <small>{html.escape(subtitle)}; hover a pod, "
        "service, device or client for its details</small></header>\n"
        f"<main><div id=\"picture\">{_inline_svg(svg)}</div>\n"
        "<aside id=\"details\"><i>Hover an element of the picture.</i></aside></main>\n"
        f"<script type=\"application/json\" id=\"kgen-details\">{data}</script>\n"
        f"<script>{SCRIPT}</script>\n</body>\n</html>\n")
