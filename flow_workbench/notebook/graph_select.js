// Front end of flow_workbench.notebook.graph_select.GraphSelect (an anywidget ES module).
//
// The model holds `value` (the picture: SVG markup built and escaped by Python), `node_names`
// (element id -> node name), `selected` (node names), `active` (the node last clicked, whose
// details Python shows), `highlighted` (nodes a preview would change) and `status_styles` (status -> [fill, glyph], for the count chips).
// Clicking a node, or Enter/Space on a focused node, toggles its name in `selected` and makes it
// `active`. Above the picture: one chip per status with its count (click: show only those nodes,
// the rest dimmed), a search box (type a name: matches are outlined and the view centres on the
// first; Enter goes to the next) and zoom buttons. Ctrl+wheel or a pinch zooms around the
// pointer, dragging pans, "fit" shows the whole picture and "100%" its natural size.
//
// Node names are user data: they only ever travel through model values, dataset, setAttribute,
// textContent, Map keys and Set lookups, never through innerHTML or selectors. The only markup
// inserted is `value`, which Python renders with every stored string escaped.

const SVG_NS = "http://www.w3.org/2000/svg";
const SHAPES = "polygon, path, ellipse, polyline, rect";
const MIN_SCALE = 0.02;
const MAX_SCALE = 4;
/** Pointer travel (px) after which a press is a pan, not a click. */
const DRAG_SLOP = 4;

/** The node name of a graphviz node group, or null when it is not a selectable node. */
function nodeName(group, names) {
  if (Object.keys(names).length > 0) {
    return Object.prototype.hasOwnProperty.call(names, group.id) ? names[group.id] : null;
  }
  // An SVG without a name map (plain graphviz output): graphviz puts the node name in <title>.
  const title = group.querySelector(":scope > title");
  return title ? title.textContent : null;
}

/** The status of a node group, from the `status-...` class the picture gives every node. */
function nodeStatus(group) {
  for (const name of group.classList) if (name.startsWith("status-")) return name.slice(7);
  return "pending";
}

/** A copy of the node's outline, drawn behind the node as a thick dashed band (see the CSS). */
function halo(group) {
  const shape = group.querySelector(SHAPES);
  if (!shape) return null;
  const copy = document.createElementNS(SVG_NS, shape.localName);
  for (const attribute of ["d", "points", "cx", "cy", "rx", "ry", "x", "y", "width", "height", "transform"]) {
    if (shape.hasAttribute(attribute)) copy.setAttribute(attribute, shape.getAttribute(attribute));
  }
  copy.setAttribute("class", "fw-halo");
  copy.setAttribute("aria-hidden", "true");
  return copy;
}

function button(text, title, className) {
  const element = document.createElement("button");
  element.type = "button";
  element.textContent = text;
  element.title = title;
  element.className = `fw-tool ${className}`;
  return element;
}

function render({ model, el }) {
  el.classList.add("fw-graph-select");
  const toolbar = document.createElement("div");
  toolbar.className = "fw-toolbar";
  const counts = document.createElement("div");
  counts.className = "fw-counts";
  counts.setAttribute("role", "group");
  counts.setAttribute("aria-label", "nodes by status (click to show only those)");
  const search = document.createElement("input");
  search.type = "search";
  search.className = "fw-search";
  search.placeholder = "find a node";
  search.setAttribute("aria-label", "find a node by name");
  const matchCount = document.createElement("span");
  matchCount.className = "fw-match-count";
  matchCount.setAttribute("aria-live", "polite");
  const zoomOut = button("\u2212", "zoom out", "fw-zoom-out");
  const zoomIn = button("+", "zoom in", "fw-zoom-in");
  const fit = button("fit", "show the whole picture", "fw-fit");
  const actual = button("100%", "natural size (readable labels)", "fw-actual");
  const zoomLabel = document.createElement("span");
  zoomLabel.className = "fw-zoom-label";
  toolbar.append(counts, search, matchCount, zoomOut, zoomIn, fit, actual, zoomLabel);
  const viewport = document.createElement("div");
  viewport.className = "fw-viewport";
  const canvas = document.createElement("div");
  canvas.className = "fw-graph-select-canvas";
  viewport.appendChild(canvas);
  const hint = document.createElement("div");
  hint.className = "fw-hint";
  hint.textContent = "click a node: select it and see its details \u00b7 drag: move \u00b7 ctrl + wheel or pinch: zoom";
  el.append(toolbar, viewport, hint);

  /** node name -> its <g class="node"> in the current picture */
  let groups = new Map();
  let halos = null;
  let svg = null;
  /** natural size of the picture in px */
  let natural = { width: 0, height: 0 };
  const view = { scale: 1, x: 0, y: 0, placed: false };
  const filter = new Set();
  let matches = [];
  let matchIndex = -1;

  // --- view: zoom and pan -------------------------------------------------------------------

  function apply() {
    canvas.style.transform = `translate(${view.x}px, ${view.y}px) scale(${view.scale})`;
    zoomLabel.textContent = `${Math.round(view.scale * 100)}%`;
    actual.setAttribute("aria-pressed", view.scale === 1 ? "true" : "false");
  }

  function fitScale() {
    const width = viewport.clientWidth;
    const height = viewport.clientHeight;
    if (!natural.width || !natural.height || !width || !height) return 1;
    return Math.min(width / natural.width, height / natural.height, 1);
  }

  function zoomAt(scale, cx, cy) {
    const next = Math.min(MAX_SCALE, Math.max(MIN_SCALE, scale));
    // keep the picture point under (cx, cy) where it is
    view.x = cx - ((cx - view.x) * next) / view.scale;
    view.y = cy - ((cy - view.y) * next) / view.scale;
    view.scale = next;
    apply();
  }

  function showAll() {
    view.scale = fitScale();
    view.x = Math.max(0, (viewport.clientWidth - natural.width * view.scale) / 2);
    view.y = 0;
    apply();
  }

  /** Centre the view on a node group (at the current scale). */
  function centreOn(group) {
    const box = group.getBoundingClientRect();
    const frame = canvas.getBoundingClientRect();
    if (!box.width && !box.height) return;
    const nodeX = (box.left + box.width / 2 - frame.left) / view.scale;
    const nodeY = (box.top + box.height / 2 - frame.top) / view.scale;
    view.x = viewport.clientWidth / 2 - nodeX * view.scale;
    view.y = viewport.clientHeight / 2 - nodeY * view.scale;
    apply();
  }

  /** The first view of a picture: whole when it fits at a readable size, else natural size
   *  centred on the node needing attention (failed first), so it is never off-screen. */
  function place() {
    if (view.placed || !svg || !viewport.clientWidth) return;
    view.placed = true;
    const scale = fitScale();
    if (scale >= 0.5) {
      showAll();
      return;
    }
    view.scale = 1;
    view.x = 0;
    view.y = 0;
    apply();
    const order = ["failed", "compensation_failed", "running", "waiting"];
    for (const status of order) {
      for (const group of groups.values()) {
        if (nodeStatus(group) === status) {
          centreOn(group);
          return;
        }
      }
    }
  }

  // --- drawing --------------------------------------------------------------------------------

  function draw() {
    // `value` is trusted markup: Python builds it with every stored string escaped.
    canvas.innerHTML = model.get("value");
    groups = new Map();
    halos = null;
    svg = canvas.querySelector("svg");
    if (!svg) {
      natural = { width: 0, height: 0 };
      viewport.style.height = "";
      counts.replaceChildren();
      return;
    }
    const before = natural;
    natural = {
      width: svg.width.baseVal.value || svg.getBoundingClientRect().width,
      height: svg.height.baseVal.value || svg.getBoundingClientRect().height,
    };
    // The viewport is as tall as the picture, up to a cap: a small DAG needs no scrolling.
    viewport.style.height = `${Math.min(natural.height + 8, model.get("max_height") || 600)}px`;
    if (before.width !== natural.width || before.height !== natural.height) view.placed = false;
    const names = model.get("node_names") || {};
    for (const group of svg.querySelectorAll("g.node")) {
      const name = nodeName(group, names);
      if (name === null || groups.has(name)) continue;
      groups.set(name, group);
      group.dataset.fwNode = name;
      group.classList.add("fw-selectable");
      group.setAttribute("tabindex", "0");
      group.setAttribute("role", "checkbox");
      group.setAttribute("aria-label", name);
    }
    // Halos live in their own layer at the bottom of the drawing, so they sit behind nodes and
    // edges and the node groups keep exactly the shapes graphviz drew.
    const root = svg.querySelector("g.graph") || svg;
    halos = document.createElementNS(SVG_NS, "g");
    halos.setAttribute("class", "fw-halos");
    const title = root.querySelector(":scope > title");
    const background = root.querySelector(":scope > polygon");
    const anchor = background || title;
    root.insertBefore(halos, anchor ? anchor.nextSibling : root.firstChild);
    drawCounts();
    applyFilter();
    findMatches(false);
    mark();
    apply();
    place();
  }

  function mark() {
    const selected = new Set(model.get("selected"));
    const affected = new Set(model.get("highlighted") || []);
    const active = model.get("active");
    if (halos) halos.replaceChildren();
    for (const [name, group] of groups) {
      const on = selected.has(name);
      group.classList.toggle("fw-selected", on);
      group.classList.toggle("fw-active", name === active);
      group.classList.toggle("fw-affected", affected.has(name));
      group.setAttribute("aria-checked", on ? "true" : "false");
      if (on && halos) {
        const band = halo(group);
        if (band) {
          band.dataset.fwNode = name;
          halos.appendChild(band);
        }
      }
    }
  }

  // --- status counts and filter ---------------------------------------------------------------

  function drawCounts() {
    const tally = new Map();
    for (const group of groups.values()) {
      const status = nodeStatus(group);
      tally.set(status, (tally.get(status) || 0) + 1);
    }
    const styles = model.get("status_styles") || {};
    const order = Object.keys(styles);
    const statuses = [...tally.keys()].sort((a, b) => {
      const ia = order.indexOf(a);
      const ib = order.indexOf(b);
      return (ia < 0 ? 99 : ia) - (ib < 0 ? 99 : ib);
    });
    for (const status of [...filter]) if (!tally.has(status)) filter.delete(status);
    const chips = [];
    const total = document.createElement("span");
    total.className = "fw-total";
    total.textContent = `${groups.size} node${groups.size === 1 ? "" : "s"}:`;
    chips.push(total);
    for (const status of statuses) {
      const [fill, glyph, ink] = styles[status] || ["#ffffff", "", "#000000"];
      const chip = document.createElement("button");
      chip.type = "button";
      chip.className = "fw-chip";
      chip.dataset.fwStatus = status;
      chip.title = `show only ${status} nodes (click again to show all)`;
      chip.setAttribute("aria-pressed", filter.has(status) ? "true" : "false");
      const swatch = document.createElement("span");
      swatch.className = "fw-swatch";
      swatch.style.background = fill;
      swatch.style.color = ink;
      swatch.textContent = glyph;
      const label = document.createElement("span");
      label.textContent = ` ${status} ${tally.get(status)}`;
      chip.append(swatch, label);
      chips.push(chip);
    }
    counts.replaceChildren(...chips);
  }

  function applyFilter() {
    if (svg) svg.classList.toggle("fw-filtering", filter.size > 0);
    for (const group of groups.values()) {
      group.classList.toggle("fw-dimmed", filter.size > 0 && !filter.has(nodeStatus(group)));
    }
    for (const chip of counts.querySelectorAll(".fw-chip")) {
      chip.setAttribute("aria-pressed", filter.has(chip.dataset.fwStatus) ? "true" : "false");
    }
  }

  function onChip(event) {
    const chip = event.target instanceof Element ? event.target.closest(".fw-chip") : null;
    if (!chip) return;
    const status = chip.dataset.fwStatus;
    if (filter.has(status)) filter.delete(status);
    else filter.add(status);
    applyFilter();
    if (!filter.has(status)) return;
    // bring the first node now shown into view (a single failed node among 1,000 may be far off)
    for (const group of groups.values()) {
      if (nodeStatus(group) === status) {
        if (view.scale < 0.5) view.scale = 1;
        centreOn(group);
        return;
      }
    }
  }

  // --- search ---------------------------------------------------------------------------------

  function findMatches(centre) {
    const query = search.value.trim().toLowerCase();
    matches = [];
    for (const [name, group] of groups) {
      const hit = query !== "" && name.toLowerCase().includes(query);
      group.classList.toggle("fw-match", hit);
      if (hit) matches.push(group);
    }
    // an exact name first, then the shortest: typing "join" finds join before rejoin_orders
    matches.sort((a, b) => {
      const an = a.dataset.fwNode.toLowerCase();
      const bn = b.dataset.fwNode.toLowerCase();
      return (an !== query) - (bn !== query) || an.length - bn.length;
    });
    matchCount.textContent = query === "" ? "" : `${matches.length} match${matches.length === 1 ? "" : "es"}`;
    matchIndex = -1;
    if (centre) nextMatch();
  }

  function nextMatch() {
    if (!matches.length) return;
    matchIndex = (matchIndex + 1) % matches.length;
    for (const group of matches) group.classList.remove("fw-current-match");
    const group = matches[matchIndex];
    group.classList.add("fw-current-match");
    if (view.scale < 0.5) view.scale = 1; // a found node must be readable
    centreOn(group);
  }

  function onSearchKey(event) {
    event.stopPropagation(); // keep JupyterLab's command shortcuts out of the text box
    if (event.key === "Enter") {
      event.preventDefault();
      nextMatch();
    } else if (event.key === "Escape") {
      search.value = "";
      findMatches(false);
    }
  }

  // --- selection ------------------------------------------------------------------------------

  function toggle(name) {
    const selected = [...model.get("selected")];
    const index = selected.indexOf(name);
    if (index >= 0) selected.splice(index, 1);
    else selected.push(name);
    model.set("selected", selected);
    model.set("active", name);
    model.save_changes();
  }

  function target(event) {
    const group = event.target instanceof Element ? event.target.closest("g.fw-selectable") : null;
    return group && canvas.contains(group) ? group : null;
  }

  let press = null;
  let dragged = false;

  function onClick(event) {
    if (dragged) {
      dragged = false;
      return; // the end of a pan, not a click
    }
    const group = target(event);
    if (!group) return;
    event.preventDefault();
    toggle(group.dataset.fwNode);
  }

  function onKey(event) {
    if (event.key !== "Enter" && event.key !== " ") return;
    const group = target(event);
    if (!group) return;
    // Keep JupyterLab's notebook shortcuts (Enter: edit the cell) out of it.
    event.preventDefault();
    event.stopPropagation();
    toggle(group.dataset.fwNode);
  }

  function onPointerDown(event) {
    if (event.button !== 0) return;
    // A mouse press neither focuses the node (its focus ring would look like a selection cue)
    // nor starts selecting the label's text; the click toggles it.
    event.preventDefault();
    press = { x: event.clientX, y: event.clientY, viewX: view.x, viewY: view.y, id: event.pointerId };
    dragged = false;
  }

  function onPointerMove(event) {
    if (!press || event.pointerId !== press.id) return;
    const dx = event.clientX - press.x;
    const dy = event.clientY - press.y;
    if (!dragged && Math.hypot(dx, dy) < DRAG_SLOP) return;
    if (!dragged) viewport.setPointerCapture(event.pointerId);
    dragged = true;
    viewport.classList.add("fw-panning");
    view.x = press.viewX + dx;
    view.y = press.viewY + dy;
    apply();
  }

  function onPointerUp() {
    press = null;
    viewport.classList.remove("fw-panning");
  }

  function onWheel(event) {
    // Plain wheel scrolls the notebook; ctrl+wheel (a pinch on a touchpad sends it too) zooms.
    if (!event.ctrlKey && !event.metaKey) return;
    event.preventDefault();
    const frame = viewport.getBoundingClientRect();
    zoomAt(view.scale * Math.exp(-event.deltaY * 0.002), event.clientX - frame.left, event.clientY - frame.top);
  }

  const centreX = () => viewport.clientWidth / 2;
  const centreY = () => viewport.clientHeight / 2;
  const onZoomIn = () => zoomAt(view.scale * 1.25, centreX(), centreY());
  const onZoomOut = () => zoomAt(view.scale / 1.25, centreX(), centreY());
  const onFit = () => showAll();
  const onActual = () => zoomAt(1, centreX(), centreY());
  const onSearch = () => findMatches(true);
  const resize = new ResizeObserver(() => place());
  resize.observe(viewport);

  const listeners = [
    [viewport, "pointerdown", onPointerDown],
    [viewport, "pointermove", onPointerMove],
    [viewport, "pointerup", onPointerUp],
    [viewport, "pointercancel", onPointerUp],
    [viewport, "wheel", onWheel, { passive: false }],
    [canvas, "click", onClick],
    [canvas, "keydown", onKey],
    [counts, "click", onChip],
    [search, "input", onSearch],
    [search, "keydown", onSearchKey],
    [zoomIn, "click", onZoomIn],
    [zoomOut, "click", onZoomOut],
    [fit, "click", onFit],
    [actual, "click", onActual],
  ];
  for (const [element, kind, handler, options] of listeners) element.addEventListener(kind, handler, options);
  model.on("change:value", draw);
  model.on("change:node_names", draw);
  model.on("change:status_styles", draw);
  model.on("change:selected", mark);
  model.on("change:active", mark);
  model.on("change:highlighted", mark);
  draw();
  return () => {
    model.off("change:value", draw);
    model.off("change:node_names", draw);
    model.off("change:status_styles", draw);
    model.off("change:selected", mark);
    model.off("change:active", mark);
    model.off("change:highlighted", mark);
    resize.disconnect();
    for (const [element, kind, handler, options] of listeners) element.removeEventListener(kind, handler, options);
  };
}

export default { render };
