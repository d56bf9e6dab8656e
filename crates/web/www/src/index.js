// qchar web console: the index page. Lists the chardevs from /api/chardevs
// and refreshes the list every second. Every value is put in the page as
// text (textContent), never as HTML.
'use strict';

const body = document.querySelector('#chardevs tbody');
const status = document.getElementById('status');

function cell(row, text, cls) {
  const td = document.createElement('td');
  td.textContent = text;
  if (cls) td.className = cls;
  row.appendChild(td);
  return td;
}

function link(td, href, text) {
  const a = document.createElement('a');
  a.href = href;
  a.textContent = text;
  td.appendChild(a);
}

function when(ms) {
  if (ms === null || ms === undefined) return '-';
  const d = new Date(ms);
  return d.toLocaleString();
}

function render(list) {
  body.textContent = '';
  for (const c of list) {
    const row = document.createElement('tr');
    row.dataset.id = c.id;
    cell(row, c.id, 'id');
    cell(row, c.filename, 'backend');
    cell(row, c.frontend, 'frontend');
    cell(row, String(c.clients), 'num clients');
    cell(row, String(c['bytes-in']), 'num bytes-in');
    cell(row, String(c['bytes-out']), 'num bytes-out');
    cell(row, c.changes ? `${when(c['last-change'])} (${c.changes})` : '-', 'changed');
    const td = cell(row, '', 'links');
    const path = '/console/' + encodeURIComponent(c.id);
    link(td, path, 'open');
    td.appendChild(document.createTextNode(' '));
    link(td, path + '?ro=1', 'view only');
    body.appendChild(row);
  }
}

async function refresh() {
  try {
    const r = await fetch('/api/chardevs', { cache: 'no-store' });
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    render(await r.json());
    status.textContent = 'live';
    status.className = 'status live';
  } catch (e) {
    status.textContent = `not reachable (${e.message})`;
    status.className = 'status down';
  }
}

refresh();
setInterval(refresh, 1000);
