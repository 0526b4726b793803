// The live page's script (docs/operations.md, "The live page"): polls
// api/history for the selected model every POLL_MS, asking only for points
// newer than the last it has, and draws each series group with dygraphs.
// No network access beyond this server; no framework.
'use strict';

const POLL_MS = 1500;
const MODELS_EVERY = 10;        // Refresh the model list every 10 polls.
const MAX_POINTS = 20000;       // Per series kept in the browser.
const OVERLAP_MS = 5000;        // Ask again for the last 5 s: late points.

// Known series, grouped into charts in this order; client/* series and any
// other series get a chart each (client ones first).
const GROUPS = [
  {id: 'loss', title: 'surrogate loss', series: ['loss']},
  {id: 'grad_norm', title: 'gradient norm (before / after clipping)',
   series: ['grad_norm', 'grad_norm_clipped']},
  {id: 'noise_scale', title: 'noise scale', series: ['noise_scale']},
  {id: 'learning_rate', title: 'learning rate', series: ['learning_rate']},
  {id: 'versions_per_second', title: 'versions / s', series: ['versions_per_second']},
  {id: 'staleness', title: 'staleness (versions)', series: ['staleness_mean', 'staleness_max']},
  {id: 'update_norm', title: 'update norm', series: ['update_norm']},
  {id: 'rows', title: 'rows per step', series: ['rows']},
  {id: 'clients', title: 'simulators, watchers, parameter waiters',
   series: ['simulators', 'watchers', 'parameter_waiters']},
];

const token = new URLSearchParams(window.location.search).get('token');
const headers = token ? {'Authorization': 'Bearer ' + token} : {};
const body = document.body;

let model = new URLSearchParams(window.location.search).get('model') || '';
let series = {};      // name -> [[Date, value], ...], oldest first
let charts = {};      // chart id -> {group, section, plot, graph, dirty}
let since = -1;       // Ask for points newer than this (unix ms).
let polls = 0;
let generation = 0;   // Bumped on a model switch: drops answers for the old one.

window.addEventListener('error', () => {
  body.dataset.errors = String(Number(body.dataset.errors) + 1);
});
window.addEventListener('unhandledrejection', () => {
  body.dataset.errors = String(Number(body.dataset.errors) + 1);
});

function setStatus(text, failing) {
  document.getElementById('status').textContent = text;
  body.dataset.status = failing ? 'error: ' + text : 'ok';
  body.classList.toggle('failing', failing);
}

async function getJson(path) {
  const response = await fetch(path, {headers: headers, cache: 'no-store'});
  if (!response.ok) {
    const text = (await response.text()).trim();
    throw new Error(response.status + ' ' + text);
  }
  return response.json();
}

function formatValue(v) {
  if (v === null || !isFinite(v)) return '-';
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e5)) return Number(v.toPrecision(4)).toExponential();
  return String(Number(v.toPrecision(4)));
}

function groupOf(name) {
  for (const group of GROUPS) {
    if (group.series.includes(name)) return group;
  }
  const title = name.startsWith('client/') ? 'client: ' + name.slice(7) : name;
  return {id: 'series:' + name, title: title, series: [name], client: name.startsWith('client/')};
}

function chartFor(group) {
  let chart = charts[group.id];
  if (chart) return chart;
  const section = document.createElement('section');
  section.className = 'chart';
  section.dataset.chart = group.id;
  section.dataset.series = group.series.join(',');
  section.dataset.points = '0';
  const title = document.createElement('h2');
  const name = document.createElement('span');
  name.textContent = group.title;
  const last = document.createElement('span');
  last.className = 'last';
  title.append(name, last);
  // The series' names and colours (dygraphs' legend; values on hover).
  const key = document.createElement('div');
  key.className = 'key';
  const plot = document.createElement('div');
  plot.className = 'empty';
  plot.textContent = 'no points yet';
  section.append(title, key, plot);
  chart = {group: group, section: section, plot: plot, last: last, key: key, graph: null,
           dirty: false};
  charts[group.id] = chart;
  placeChart(chart);
  return chart;
}

// Client metrics first (in name order), then the fixed groups in GROUPS
// order, then anything else by name.
function rank(chart) {
  const i = GROUPS.indexOf(chart.group);
  if (chart.group.client) return [0, chart.group.title];
  if (i >= 0) return [1, String(i).padStart(3, '0')];
  return [2, chart.group.title];
}

function placeChart(chart) {
  const main = document.getElementById('charts');
  const key = rank(chart);
  for (const other of main.children) {
    const o = rank(charts[other.dataset.chart]);
    if (o[0] > key[0] || (o[0] === key[0] && o[1] > key[1])) {
      main.insertBefore(chart.section, other);
      return;
    }
  }
  main.append(chart.section);
}

// One dygraphs row per distinct time across the group's series; a series
// without a point at that time gets null (connectSeparatedPoints joins them).
function rowsOf(group) {
  const byTime = new Map();
  group.series.forEach((name, column) => {
    for (const [time, value] of series[name] || []) {
      const t = time.getTime();
      let row = byTime.get(t);
      if (!row) {
        row = [time].concat(group.series.map(() => null));
        byTime.set(t, row);
      }
      row[column + 1] = value;
    }
  });
  return Array.from(byTime.values()).sort((a, b) => a[0] - b[0]);
}

function draw(chart) {
  const group = chart.group;
  const rows = rowsOf(group);
  let points = 0;
  for (const name of group.series) points += (series[name] || []).length;
  chart.section.dataset.points = String(points);
  const first = series[group.series[0]] || [];
  chart.last.textContent = first.length ? formatValue(first[first.length - 1][1]) : '';
  if (rows.length === 0) return;
  if (!chart.graph) {
    const plot = document.createElement('div');
    plot.className = 'plot';
    chart.section.replaceChild(plot, chart.plot);
    chart.plot = plot;
    // Series after the first are dashed, so one that equals the first
    // (the gradient norm with clipping off) still shows.
    const perSeries = {};
    group.series.slice(1).forEach((name) => {
      perSeries[name] = {strokePattern: [6, 3]};
    });
    chart.graph = new Dygraph(plot, rows, {
      labels: ['time'].concat(group.series),
      labelsDiv: chart.key,
      legend: 'always',
      connectSeparatedPoints: true,
      strokeWidth: 1.5,
      drawPoints: rows.length < 40,
      pointSize: 2,
      series: perSeries,
      axes: {y: {axisLabelWidth: 60, axisLabelFormatter: formatValue}},
      colors: ['#1f6fb4', '#e0761a', '#2a9d4b', '#b8336a'],
    });
  } else {
    chart.graph.updateOptions({file: rows, drawPoints: rows.length < 40});
  }
}

function absorb(answer) {
  for (const [name, points] of Object.entries(answer.series)) {
    if (!points.length) continue;
    const kept = series[name] || (series[name] = []);
    const lastTime = kept.length ? kept[kept.length - 1][0].getTime() : -Infinity;
    let added = false;
    for (const [time, value] of points) {
      since = Math.max(since, time);
      if (time <= lastTime) continue;  // Already have it (the overlap).
      kept.push([new Date(time), value]);
      added = true;
    }
    if (kept.length > MAX_POINTS) kept.splice(0, kept.length - MAX_POINTS);
    if (added) chartFor(groupOf(name)).dirty = true;
  }
  for (const chart of Object.values(charts)) {
    if (chart.dirty) {
      chart.dirty = false;
      draw(chart);
    }
  }
}

function selectModel(name) {
  model = name;
  generation += 1;
  series = {};
  charts = {};
  since = -1;
  document.getElementById('charts').replaceChildren();
  body.dataset.model = name;
  document.getElementById('csv').href = 'api/history.csv?model=' + encodeURIComponent(name);
  // The fixed groups show from the start, empty until their first point.
  for (const group of GROUPS) chartFor(group);
}

async function refreshModels() {
  const answer = await getJson('api/models');
  const select = document.getElementById('model');
  const names = answer.models;
  if (select.options.length !== names.length ||
      names.some((name, i) => select.options[i].value !== name)) {
    select.replaceChildren(...names.map((name) => new Option(name, name)));
  }
  if (!names.includes(model)) model = names.length ? names[0] : '';
  if (model && body.dataset.model !== model) selectModel(model);
  select.value = model;
}

async function poll() {
  try {
    if (polls % MODELS_EVERY === 0 || !model) await refreshModels();
    if (model) {
      const asked = generation;
      const from = since < 0 ? -1 : since - OVERLAP_MS;
      const answer = await getJson('api/history?model=' + encodeURIComponent(model) +
                                   '&since=' + from);
      if (asked === generation) absorb(answer);
    }
    polls += 1;
    body.dataset.polls = String(polls);
    setStatus(model ? 'updated ' + new Date().toLocaleTimeString() : 'no models yet', false);
  } catch (error) {
    setStatus(String(error.message || error), true);
  }
  window.setTimeout(poll, POLL_MS);
}

document.getElementById('model').addEventListener('change', (event) => {
  selectModel(event.target.value);
});
poll();
