// Front end of flow_workbench.notebook.graph_select.GraphSelect (an anywidget ES module).
//
// The model holds `value` (the picture: SVG markup built and escaped by Python), `node_names`
// (element id -> node name) and `selected` (node names). Clicking a node, or Enter/Space on a
// focused node, toggles its name in `selected`; Python keeps that list in sync with the panel.
//
// Node names are user data: they only ever travel through model values, dataset, setAttribute,
// Map keys and Set lookups, never through innerHTML or selectors. The only markup inserted is
// `value`, which Python renders with every stored string escaped.

const SVG_NS = "http://www.w3.org/2000/svg";
const SHAPES = "polygon, path, ellipse, polyline, rect";

/** The node name of a graphviz node group, or null when it is not a selectable node. */
function nodeName(group, names) {
  if (Object.keys(names).length > 0) {
    return Object.prototype.hasOwnProperty.call(names, group.id) ? names[group.id] : null;
  }
  // An SVG without a name map (plain graphviz output): graphviz puts the node name in <title>.
  const title = group.querySelector(":scope > title");
  return title ? title.textContent : null;
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

function render({ model, el }) {
  el.classList.add("fw-graph-select");
  const canvas = document.createElement("div");
  canvas.className = "fw-graph-select-canvas";
  el.appendChild(canvas);
  /** node name -> its <g class="node"> in the current picture */
  let groups = new Map();
  let halos = null;

  function draw() {
    // `value` is trusted markup: Python builds it with every stored string escaped.
    canvas.innerHTML = model.get("value");
    groups = new Map();
    halos = null;
    const svg = canvas.querySelector("svg");
    if (!svg) return;
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
    mark();
  }

  function mark() {
    const selected = new Set(model.get("selected"));
    if (halos) halos.replaceChildren();
    for (const [name, group] of groups) {
      const on = selected.has(name);
      group.classList.toggle("fw-selected", on);
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

  function toggle(name) {
    const selected = [...model.get("selected")];
    const index = selected.indexOf(name);
    if (index >= 0) selected.splice(index, 1);
    else selected.push(name);
    model.set("selected", selected);
    model.save_changes();
  }

  function target(event) {
    const group = event.target instanceof Element ? event.target.closest("g.fw-selectable") : null;
    return group && canvas.contains(group) ? group : null;
  }

  function onClick(event) {
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

  function onMouseDown(event) {
    // A mouse press neither focuses the node (its focus ring would look like a selection cue)
    // nor starts selecting the label's text; the click toggles it.
    if (target(event)) event.preventDefault();
  }

  canvas.addEventListener("mousedown", onMouseDown);
  canvas.addEventListener("click", onClick);
  canvas.addEventListener("keydown", onKey);
  model.on("change:value", draw);
  model.on("change:node_names", draw);
  model.on("change:selected", mark);
  draw();
  return () => {
    model.off("change:value", draw);
    model.off("change:node_names", draw);
    model.off("change:selected", mark);
    canvas.removeEventListener("mousedown", onMouseDown);
    canvas.removeEventListener("click", onClick);
    canvas.removeEventListener("keydown", onKey);
  };
}

export default { render };
