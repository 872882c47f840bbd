// The topology page: logs in with Keystone v3 password credentials, reads the caller's
// topology view (GET /v2.0/neutrino/topology, only what the caller may list) and draws it with
// Cytoscape.js and the fCoSE layout. It then waits for changes with If-None-Match (the server
// answers when the caller's view changed, or 304 after the wait) and updates the drawing in
// place, keeping the positions of what was already there.
"use strict";

const TOKEN_KEY = "neutrino-topology-session";
const WAIT_SECONDS = 25;
const ROUTER_OWNERS = [
  "network:router_interface",
  "network:router_interface_distributed",
  "network:ha_router_replicated_interface",
  "network:router_gateway",
  "network:router_ha_interface",
  "network:router_centralized_snat",
  "network:floatingip",
];
/** Above this many nodes the layout trades polish for speed (see draw). */
const LARGE_GRAPH_NODES = 400;
const CHAIN_COLOURS = ["#e31b54", "#0e9384", "#7a5af8", "#dc6803", "#1570ef", "#c11574"];

const page = {
  session: null, // {token, user, project, expires}
  cy: null,
  etag: null,
  generation: 0, // bumped on logout: a running wait loop stops
  lastRenderMs: null,
  lastPhasesMs: null, // {elements, apply, layout, paint} of the last render, in ms
  renders: 0,
};
// For tests and the curious: the graph and the figures of the last render.
window.neutrinoTopology = page;

const $ = (id) => document.getElementById(id);
const short = (id) => (id || "").slice(0, 8);

function setStatus(text, isError) {
  const el = $("status");
  el.textContent = text;
  el.classList.toggle("error", Boolean(isError));
}

// ---- session ----------------------------------------------------------------------------

async function login(event) {
  event.preventDefault();
  $("login-error").textContent = "";
  const domain = $("domain").value.trim() || "Default";
  const body = {
    auth: {
      identity: {
        methods: ["password"],
        password: {
          user: { name: $("username").value.trim(), password: $("password").value, domain: { name: domain } },
        },
      },
      scope: { project: { name: $("project").value.trim(), domain: { name: domain } } },
    },
  };
  let response;
  try {
    response = await fetch("/v3/auth/tokens", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
  } catch (err) {
    $("login-error").textContent = "The server cannot be reached.";
    return;
  }
  if (response.status !== 201) {
    $("login-error").textContent =
      response.status === 401 ? "Wrong user, password, project or domain." : `Login failed (${response.status}).`;
    return;
  }
  const doc = await response.json();
  page.session = {
    token: response.headers.get("X-Subject-Token"),
    user: doc.token.user.name,
    project: doc.token.project ? doc.token.project.name : "",
    expires: doc.token.expires_at,
  };
  sessionStorage.setItem(TOKEN_KEY, JSON.stringify(page.session));
  $("password").value = "";
  start();
}

function logout(message) {
  if (page.session) {
    // Revoke the token; the page forgets it either way.
    fetch("/v3/auth/tokens", {
      method: "DELETE",
      headers: { "X-Auth-Token": page.session.token, "X-Subject-Token": page.session.token },
    }).catch(() => {});
  }
  page.session = null;
  page.generation += 1;
  page.etag = null;
  sessionStorage.removeItem(TOKEN_KEY);
  if (page.cy) {
    page.cy.destroy();
    page.cy = null;
  }
  $("view").hidden = true;
  $("logout").hidden = true;
  $("fit").hidden = true;
  $("login").hidden = false;
  $("who").textContent = "";
  setStatus("");
  $("login-error").textContent = typeof message === "string" ? message : "";
}

function start() {
  $("login").hidden = true;
  $("view").hidden = false;
  $("logout").hidden = false;
  $("fit").hidden = false;
  $("who").textContent = `${page.session.user} · project ${page.session.project}`;
  page.cy = makeGraph();
  follow(page.generation);
}

// ---- following the view -----------------------------------------------------------------

async function follow(generation) {
  let failures = 0;
  while (generation === page.generation) {
    const headers = { "X-Auth-Token": page.session.token, Accept: "application/json" };
    let url = "/v2.0/neutrino/topology";
    if (page.etag) {
      headers["If-None-Match"] = page.etag;
      url += `?timeout=${WAIT_SECONDS}`;
    }
    let response;
    try {
      response = await fetch(url, { headers, cache: "no-store" });
    } catch (err) {
      failures += 1;
      setStatus("reconnecting…", true);
      await sleep(Math.min(1000 * failures, 10000));
      continue;
    }
    if (generation !== page.generation) return;
    if (response.status === 401) {
      logout("Your session ended; log in again.");
      return;
    }
    if (response.status === 304) {
      failures = 0;
      continue;
    }
    if (response.status !== 200) {
      failures += 1;
      setStatus(`server answered ${response.status}`, true);
      await sleep(Math.min(1000 * failures, 10000));
      continue;
    }
    failures = 0;
    const doc = await response.json();
    page.etag = response.headers.get("ETag");
    draw(doc.topology);
    setStatus(`live · updated ${new Date().toLocaleTimeString()}`);
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// ---- from the view to graph elements ----------------------------------------------------

/** A subnet's pill fits its longest label line (8 px text: about 5 px a character). */
function labelWidth(node) {
  const lines = String(node.data("label") || "").split("\n");
  return Math.max(64, 8 + 5 * Math.max(...lines.map((l) => l.length)));
}

function elementsOf(t) {
  const nodes = new Map();
  const edges = new Map();
  const node = (id, data, classes) => nodes.set(id, { group: "nodes", data: { id, ...data }, classes });
  const edge = (id, source, target, data, classes) => {
    if (nodes.has(source) && nodes.has(target)) {
      edges.set(id, { group: "edges", data: { id, source, target, ...data }, classes });
    }
  };
  const byId = (items) => new Map((items || []).map((item) => [item.id, item]));
  const networks = byId(t.networks);
  const subnets = byId(t.subnets);
  const ports = byId(t.ports);

  for (const n of t.networks || []) {
    const flags = [n["router:external"] ? "external" : "", n.shared ? "shared" : ""].filter(Boolean);
    node(`network:${n.id}`, { label: `${n.name || short(n.id)}${flags.length ? ` (${flags.join(", ")})` : ""}`, kind: "network", doc: n },
      `network${n["router:external"] ? " external" : ""}`);
  }
  for (const s of t.subnets || []) {
    const parent = networks.has(s.network_id) ? `network:${s.network_id}` : undefined;
    node(`subnet:${s.id}`, { label: `${s.name || short(s.id)}\n${s.cidr}`, kind: "subnet", doc: s, parent }, "subnet");
  }

  // Hosts (visible to admins) and instances (the ports' device) as groups.
  const groupOf = (p) => {
    const host = p["binding:host_id"];
    const hostGroup = host ? `host:${host}` : undefined;
    if (hostGroup && !nodes.has(hostGroup)) node(hostGroup, { label: `host ${host}`, kind: "host" }, "host");
    if (p.device_id && !(p.device_owner || "").startsWith("network:")) {
      const device = `device:${p.device_id}`;
      if (!nodes.has(device)) {
        node(device, { label: `${(p.device_owner || "device").replace(/^compute:.*/, "instance")} ${short(p.device_id)}`, kind: "device", parent: hostGroup }, "device");
      }
      return device;
    }
    return hostGroup;
  };
  const routerPorts = [];
  for (const p of t.ports || []) {
    if (ROUTER_OWNERS.includes(p.device_owner)) {
      routerPorts.push(p);
      continue;
    }
    const ip = (p.fixed_ips || []).map((f) => f.ip_address)[0];
    const status = (p.status || "DOWN").toLowerCase();
    node(`port:${p.id}`, { label: p.name || ip || short(p.id), kind: "port", doc: p, parent: groupOf(p) }, `port ${status}`);
  }
  for (const p of t.ports || []) {
    if (!nodes.has(`port:${p.id}`)) continue;
    const attached = (p.fixed_ips || []).filter((f) => subnets.has(f.subnet_id));
    if (attached.length) {
      for (const f of attached) edge(`attach:${p.id}:${f.subnet_id}`, `port:${p.id}`, `subnet:${f.subnet_id}`, { label: f.ip_address, doc: p }, "attach");
    } else {
      edge(`attach:${p.id}`, `port:${p.id}`, `network:${p.network_id}`, { doc: p }, "attach");
    }
  }

  for (const r of t.routers || []) {
    const flags = [r.ha ? "HA" : "", r.distributed ? "DVR" : ""].filter(Boolean);
    node(`router:${r.id}`, { label: `${r.name || short(r.id)}${flags.length ? ` (${flags.join(", ")})` : ""}`, kind: "router", doc: r }, `router ${(r.status || "").toLowerCase()}`);
    const gw = r.external_gateway_info;
    if (gw && gw.network_id) {
      const ips = gw.external_fixed_ips || [];
      const snat = gw.enable_snat === false ? "" : " SNAT";
      const visible = ips.filter((f) => subnets.has(f.subnet_id));
      if (visible.length) {
        for (const f of visible) edge(`gateway:${r.id}:${f.subnet_id}`, `router:${r.id}`, `subnet:${f.subnet_id}`, { label: `gw ${f.ip_address}${snat}`, doc: r }, "gateway");
      } else {
        edge(`gateway:${r.id}`, `router:${r.id}`, `network:${gw.network_id}`, { label: `gw${snat}`, doc: r }, "gateway");
      }
    }
  }
  for (const p of routerPorts) {
    if (p.device_owner === "network:router_gateway" || p.device_owner === "network:floatingip" || p.device_owner === "network:router_ha_interface") continue;
    if (p.device_owner === "network:router_centralized_snat") continue;
    for (const f of p.fixed_ips || []) {
      edge(`interface:${p.id}:${f.subnet_id}`, `router:${p.device_id}`, `subnet:${f.subnet_id}`, { label: f.ip_address, doc: p }, "interface");
    }
  }

  for (const f of t.floatingips || []) {
    node(`fip:${f.id}`, { label: f.floating_ip_address, kind: "floating IP", doc: f }, `fip ${(f.status || "").toLowerCase()}`);
    if (f.port_id) edge(`fip-port:${f.id}`, `fip:${f.id}`, `port:${f.port_id}`, { label: f.fixed_ip_address || "", doc: f }, "fip-port");
    edge(`fip-net:${f.id}`, `fip:${f.id}`, `network:${f.floating_network_id}`, { doc: f }, "fip-net");
  }

  for (const tr of t.trunks || []) {
    const parentPort = ports.get(tr.port_id);
    const parent = parentPort ? nodes.get(`port:${tr.port_id}`)?.data.parent : undefined;
    node(`trunk:${tr.id}`, { label: `trunk ${tr.name || short(tr.id)}`, kind: "trunk", doc: tr, parent }, "trunk");
    edge(`trunk-parent:${tr.id}`, `trunk:${tr.id}`, `port:${tr.port_id}`, { label: "parent", doc: tr }, "trunk-parent");
    for (const sp of tr.sub_ports || []) {
      edge(`subport:${tr.id}:${sp.port_id}`, `trunk:${tr.id}`, `port:${sp.port_id}`,
        { label: `${sp.segmentation_type} ${sp.segmentation_id}`, doc: tr }, "subport");
    }
  }

  // Service chains: port pair groups hold their pairs; each chain is a path from its
  // classifiers' source ports through its groups to their destination ports.
  const pairCounters = new Map();
  const groupCounters = new Map();
  for (const stats of t.port_chain_statistics || []) {
    for (const hop of stats.hops || []) {
      if (hop.direction !== "forward") continue;
      if (hop.port_pair_id) pairCounters.set(hop.port_pair_id, (pairCounters.get(hop.port_pair_id) || 0) + hop.packets);
      const key = `${stats.port_chain_id}:${hop.port_pair_group_id}`;
      groupCounters.set(key, (groupCounters.get(key) || 0) + hop.packets);
    }
  }
  for (const g of t.port_pair_groups || []) {
    node(`ppg:${g.id}`, { label: g.name || `group ${short(g.id)}`, kind: "port pair group", doc: g }, "ppg");
  }
  const groupOfPair = new Map();
  for (const g of t.port_pair_groups || []) for (const pp of g.port_pairs || []) groupOfPair.set(pp, g.id);
  for (const pp of t.port_pairs || []) {
    const health = (pp["neutrino:health"] || "UNKNOWN").toLowerCase();
    const packets = pairCounters.get(pp.id);
    const group = groupOfPair.get(pp.id);
    node(`pp:${pp.id}`, {
      label: `${pp.name || short(pp.id)}${packets !== undefined ? ` · ${packets} pkts` : ""}`,
      kind: "port pair", doc: pp, parent: group ? `ppg:${group}` : undefined,
    }, `pp health-${health}`);
    edge(`pp-in:${pp.id}`, `pp:${pp.id}`, `port:${pp.ingress}`, { label: "in", doc: pp }, "pp-link");
    if (pp.egress !== pp.ingress) edge(`pp-out:${pp.id}`, `pp:${pp.id}`, `port:${pp.egress}`, { label: "out", doc: pp }, "pp-link");
  }
  const classifiers = byId(t.flow_classifiers);
  (t.port_chains || []).forEach((c, index) => {
    const colour = CHAIN_COLOURS[index % CHAIN_COLOURS.length];
    const groups = (c.port_pair_groups || []).map((g) => `ppg:${g}`);
    const sources = [];
    const destinations = [];
    for (const fcId of c.flow_classifiers || []) {
      const fc = classifiers.get(fcId);
      if (!fc) continue;
      if (fc.logical_source_port && nodes.has(`port:${fc.logical_source_port}`)) sources.push(`port:${fc.logical_source_port}`);
      else {
        node(`fc:${fc.id}`, { label: `classifier ${fc.name || short(fc.id)}`, kind: "flow classifier", doc: fc }, "fc");
        sources.push(`fc:${fc.id}`);
      }
      if (fc.logical_destination_port) destinations.push(`port:${fc.logical_destination_port}`);
    }
    const label = (group) => {
      const packets = groupCounters.get(`${c.id}:${group.slice(4)}`);
      return packets !== undefined ? `${packets} pkts` : "";
    };
    const data = (extra) => ({ doc: c, colour, chain: c.name || short(c.id), ...extra });
    if (groups.length) {
      for (const s of new Set(sources)) edge(`chain:${c.id}:from:${s}`, s, groups[0], data({ label: `${c.name || short(c.id)} ${label(groups[0])}`.trim() }), "chain");
      for (let i = 0; i + 1 < groups.length; i += 1) {
        edge(`chain:${c.id}:${i}`, groups[i], groups[i + 1], data({ label: label(groups[i + 1]) }), "chain");
      }
      for (const d of new Set(destinations)) edge(`chain:${c.id}:to:${d}`, groups[groups.length - 1], d, data({ label: "" }), "chain");
    }
  });

  for (const conn of t.l2_gateway_connections || []) {
    node(`l2gw:${conn.l2_gateway_id}`, { label: `L2 gateway ${short(conn.l2_gateway_id)}`, kind: "L2 gateway", doc: conn }, "l2gw");
    edge(`l2gw-conn:${conn.id}`, `l2gw:${conn.l2_gateway_id}`, `network:${conn.network_id}`,
      { label: conn.segmentation_id != null ? `seg ${conn.segmentation_id}` : "", doc: conn }, "l2gw-conn");
  }
  // A group whose parent is gone (not visible) is drawn at the top level.
  for (const n of nodes.values()) if (n.data.parent && !nodes.has(n.data.parent)) delete n.data.parent;
  if (nodes.size > LARGE_GRAPH_NODES) collapsePlainPorts(nodes, edges);
  return [...nodes.values(), ...edges.values()];
}

// ---- level of detail --------------------------------------------------------------------
//
// A large project is drawn with less detail, so that it stays readable and draws in well under
// a second: the ports nothing else points at (no floating IP, trunk, port pair or chain) fold
// into their instance, which shows how many ports it has and the worst of their states; if
// that is still too many nodes, such instances fold into one node per host and attachment.
// Clicking a folded node lists its ports.

const STATUS_RANK = ["active", "down", "build", "error"];

function worstStatus(docs) {
  let worst = 0;
  for (const d of docs) worst = Math.max(worst, STATUS_RANK.indexOf((d.status || "DOWN").toLowerCase()));
  return STATUS_RANK[worst];
}

function portSummary(p) {
  const ips = (p.fixed_ips || []).map((f) => f.ip_address).join(" ");
  return `${p.name || short(p.id)} ${ips} ${p.status || ""}`.replace(/\s+/g, " ").trim();
}

function collapsePlainPorts(nodes, edges) {
  const pointedAt = new Set();
  const attachments = new Map(); // port node id -> [edge]
  for (const e of edges.values()) {
    if (e.classes === "attach") {
      if (!attachments.has(e.data.source)) attachments.set(e.data.source, []);
      attachments.get(e.data.source).push(e);
    } else {
      pointedAt.add(e.data.source);
      pointedAt.add(e.data.target);
    }
  }
  const children = new Map(); // device node id -> [child node]
  for (const n of nodes.values()) {
    if (n.data.parent && n.data.parent.startsWith("device:")) {
      if (!children.has(n.data.parent)) children.set(n.data.parent, []);
      children.get(n.data.parent).push(n);
    }
  }
  const folded = [];
  for (const [deviceId, kids] of children) {
    const plain = kids.every((k) => k.classes.startsWith("port ") && !pointedAt.has(k.data.id));
    if (!plain) continue;
    const device = nodes.get(deviceId);
    const docs = kids.map((k) => k.data.doc);
    const targets = new Map(); // target node id -> [ip]
    for (const k of kids) {
      for (const e of attachments.get(k.data.id) || []) {
        edges.delete(e.data.id);
        if (!targets.has(e.data.target)) targets.set(e.data.target, []);
        if (e.data.label) targets.get(e.data.target).push(e.data.label);
      }
      nodes.delete(k.data.id);
    }
    const status = worstStatus(docs);
    device.classes = `device folded ${status}`;
    device.data.ports = docs.length;
    device.data.label = `${device.data.label} · ${docs.length} port${docs.length === 1 ? "" : "s"}`;
    device.data.doc = { id: deviceId.slice("device:".length), device_owner: docs[0].device_owner, ports: docs.map(portSummary) };
    for (const [target, ips] of targets) {
      edges.set(`attach:${deviceId}:${target}`, { group: "edges", data: { id: `attach:${deviceId}:${target}`, source: deviceId, target, label: ips.length === 1 ? ips[0] : "", doc: device.data.doc }, classes: "attach" });
    }
    folded.push({ device, targets: [...targets.keys()].sort(), docs });
  }
  if (nodes.size <= LARGE_GRAPH_NODES) return;
  // Still too many: fold the folded instances sharing a host and the same attachments.
  const crowds = new Map();
  for (const f of folded) {
    const key = `${f.device.data.parent || ""}|${f.targets.join(",")}`;
    if (!crowds.has(key)) crowds.set(key, []);
    crowds.get(key).push(f);
  }
  for (const [key, members] of crowds) {
    if (members.length < 2) continue;
    const id = `crowd:${key}`;
    const docs = members.flatMap((m) => m.docs);
    for (const m of members) {
      nodes.delete(m.device.data.id);
      for (const t of m.targets) edges.delete(`attach:${m.device.data.id}:${t}`);
    }
    const doc = { id: `${members.length} instances`, ports: docs.map(portSummary) };
    nodes.set(id, { group: "nodes", data: { id, label: `${members.length} instances · ${docs.length} ports`, kind: "instances", doc, ports: docs.length, parent: members[0].device.data.parent }, classes: `device folded ${worstStatus(docs)}` });
    for (const t of members[0].targets) {
      edges.set(`attach:${id}:${t}`, { group: "edges", data: { id: `attach:${id}:${t}`, source: id, target: t, label: "", doc }, classes: "attach" });
    }
  }
}

// ---- drawing ----------------------------------------------------------------------------

function makeGraph() {
  const cy = cytoscape({
    container: $("graph"),
    minZoom: 0.05,
    maxZoom: 3,
    wheelSensitivity: 0.3,
    style: [
      { selector: "node", style: { label: "data(label)", "font-size": 10, "min-zoomed-font-size": 6, "text-wrap": "wrap", "text-valign": "bottom", "text-margin-y": 3, width: 18, height: 18, color: "#1d2330" } },
      { selector: ":parent", style: { "text-valign": "top", "text-margin-y": -3, padding: 10, "background-opacity": 0.35 } },
      { selector: ".network", style: { shape: "round-rectangle", "background-color": "#dbe8fd", "border-color": "#2f6fde", "border-width": 1.5, "font-weight": "bold" } },
      { selector: ".network.external", style: { "border-style": "double", "border-width": 4 } },
      { selector: ".subnet", style: { shape: "round-rectangle", width: labelWidth, height: 22, "background-color": "#2f6fde", "text-valign": "center", "text-margin-y": 0, color: "#fff", "font-size": 8 } },
      { selector: ".host", style: { shape: "round-rectangle", "background-color": "#eaecf0", "border-color": "#98a2b3", "border-width": 1 } },
      { selector: ".device", style: { shape: "round-rectangle", "background-color": "#f2f4f7", "border-color": "#d0d5dd", "border-style": "dashed", "border-width": 1, "font-size": 9 } },
      { selector: ".device.folded", style: { "border-style": "solid", "background-opacity": 1, "background-color": "#12b76a", width: 28, height: 20 } },
      { selector: ".device.folded.down", style: { "background-color": "#98a2b3" } },
      { selector: ".device.folded.build", style: { "background-color": "#fdb022" } },
      { selector: ".device.folded.error", style: { "background-color": "#f04438" } },
      { selector: ".router", style: { shape: "ellipse", width: 30, height: 30, "background-color": "#f79009", "font-weight": "bold" } },
      { selector: ".port", style: { "background-color": "#12b76a" } },
      { selector: ".port.down", style: { "background-color": "#98a2b3" } },
      { selector: ".port.build", style: { "background-color": "#fdb022" } },
      { selector: ".port.error", style: { "background-color": "#f04438" } },
      { selector: ".fip", style: { shape: "diamond", "background-color": "#7a5af8" } },
      { selector: ".trunk", style: { shape: "hexagon", "background-color": "#475467" } },
      { selector: ".ppg", style: { shape: "round-rectangle", "background-color": "#fef0c7", "border-color": "#b54708", "border-style": "dashed", "border-width": 1.5 } },
      { selector: ".pp", style: { shape: "round-rectangle", width: 26, height: 14, "background-color": "#fdb022" } },
      { selector: ".pp.health-up", style: { "background-color": "#12b76a" } },
      { selector: ".pp.health-down", style: { "background-color": "#f04438" } },
      { selector: ".fc", style: { shape: "tag", "background-color": "#e31b54" } },
      { selector: ".l2gw", style: { shape: "barrel", "background-color": "#0e9384" } },
      { selector: "edge", style: { width: 1.5, "line-color": "#98a2b3", "curve-style": "bezier", label: "data(label)", "font-size": 8, "min-zoomed-font-size": 6, color: "#475467", "text-background-color": "#f7f8fa", "text-background-opacity": 0.8 } },
      { selector: ".interface", style: { width: 3, "line-color": "#f79009" } },
      { selector: ".gateway", style: { width: 3, "line-color": "#f79009", "line-style": "dashed" } },
      { selector: ".fip-port", style: { "line-color": "#7a5af8", "line-style": "dotted", width: 2 } },
      { selector: ".fip-net", style: { "line-color": "#c4b5fd", width: 1 } },
      { selector: ".subport", style: { "line-style": "dashed", "line-color": "#475467" } },
      { selector: ".pp-link", style: { "line-color": "#fdb022", width: 1 } },
      { selector: ".chain", style: { width: 4, "line-color": "data(colour)", "target-arrow-color": "data(colour)", "target-arrow-shape": "triangle", "curve-style": "bezier", "font-weight": "bold", color: "data(colour)" } },
      { selector: ".l2gw-conn", style: { "line-color": "#0e9384", width: 2 } },
      { selector: ":selected", style: { "border-color": "#101828", "border-width": 3, "line-color": "#101828" } },
    ],
  });
  cy.on("tap", "node, edge", (event) => showDetails(event.target));
  cy.on("tap", (event) => { if (event.target === cy) $("details").hidden = true; });
  return cy;
}

function draw(topology) {
  const cy = page.cy;
  if (!cy) return;
  const started = performance.now();
  const wanted = elementsOf(topology);
  const built = performance.now();
  const wantedIds = new Set(wanted.map((e) => e.data.id));
  let changedShape = false;
  cy.batch(() => {
    cy.elements().forEach((e) => {
      if (!wantedIds.has(e.id())) { e.remove(); changedShape = true; }
    });
    for (const e of wanted) {
      const existing = cy.getElementById(e.data.id);
      if (existing.nonempty()) {
        const sameParent = e.group !== "nodes" || (existing.data("parent") || undefined) === e.data.parent;
        if (sameParent) {
          // Identity, parent and ends are fixed; the rest follows the view.
          const { id, parent, source, target, ...rest } = e.data;
          existing.data(rest);
          existing.classes(e.classes);
          continue;
        }
        existing.remove();
      }
      cy.add(e);
      changedShape = true;
    }
  });
  const applied = performance.now();
  // The figures count until the frame that shows the result has been painted.
  let laidOut = null;
  const finish = () => {
    laidOut = performance.now();
    requestAnimationFrame(() => requestAnimationFrame(record));
  };
  const record = () => {
    const done = performance.now();
    page.lastRenderMs = Math.round(done - started);
    page.lastPhasesMs = {
      elements: Math.round(built - started),
      apply: Math.round(applied - built),
      layout: Math.round(laidOut - applied),
      paint: Math.round(done - laidOut),
    };
    page.renders += 1;
    const selected = cy.$(":selected");
    if (selected.nonempty()) showDetails(selected[0]);
  };
  if (!changedShape) { finish(); return; }
  const first = page.renders === 0;
  // A graph still large after folding (see collapsePlainPorts) gets fCoSE's spectral draft
  // alone, without measuring labels or packing components.
  const large = cy.nodes().length > LARGE_GRAPH_NODES;
  const layout = cy.layout({
    name: "fcose",
    quality: large ? "draft" : "default",
    randomize: first || large,
    animate: !first && !large,
    animationDuration: 300,
    fit: first,
    padding: 40,
    nodeDimensionsIncludeLabels: !large,
    idealEdgeLength: 70,
    nodeRepulsion: 6000,
    packComponents: !large,
    tile: !large,
  });
  layout.one("layoutstop", finish);
  layout.run();
}

function showDetails(element) {
  const doc = element.data("doc");
  if (!doc) { $("details").hidden = true; return; }
  element.select();
  $("details-title").textContent = `${element.data("kind") || kindOfEdge(element)} ${doc.name || doc.id}`;
  const body = $("details-body");
  body.replaceChildren();
  for (const key of Object.keys(doc).sort()) {
    const row = document.createElement("tr");
    const name = document.createElement("td");
    const value = document.createElement("td");
    name.textContent = key;
    const v = doc[key];
    value.textContent = typeof v === "string" ? v : JSON.stringify(v);
    row.append(name, value);
    body.append(row);
  }
  $("details").hidden = false;
}

function kindOfEdge(element) {
  const classes = element.classes();
  if (classes.includes("chain")) return "port chain";
  if (classes.includes("interface") || classes.includes("attach")) return "port";
  if (classes.includes("gateway")) return "router";
  if (classes.includes("subport") || classes.includes("trunk-parent")) return "trunk";
  if (classes.includes("fip-port") || classes.includes("fip-net")) return "floating IP";
  if (classes.includes("pp-link")) return "port pair";
  return "";
}

// ---- start ------------------------------------------------------------------------------

$("login").addEventListener("submit", login);
$("logout").addEventListener("click", () => logout());
$("fit").addEventListener("click", () => page.cy && page.cy.fit(undefined, 40));
$("close-details").addEventListener("click", () => { $("details").hidden = true; });
if (window.cytoscapeFcose) cytoscape.use(window.cytoscapeFcose);
try {
  const saved = JSON.parse(sessionStorage.getItem(TOKEN_KEY) || "null");
  if (saved && saved.token && new Date(saved.expires) > new Date()) {
    page.session = saved;
    start();
  }
} catch (err) {
  sessionStorage.removeItem(TOKEN_KEY);
}
