/* images.html: every image of a run under one model, filtered, sorted, a page at a time.
 *
 * The state (model, class, outcome, sort, dir, method, page) lives in the address's
 * fragment.  A render reads index.js (already on the page), the bucket's meta.js, the
 * order file(s) holding the page's positions and the rows shown: nothing else.
 */
(function () {
  'use strict';

  const C = window.cnnvis;
  const DATA = 'gallery/data/';
  const $ = id => document.getElementById(id);
  let index = null;
  let generation = 0;  // a newer render makes an older one's results stale

  /** The state in the fragment, completed with defaults and checked against index.js. */
  function readState() {
    const raw = C.params(location.hash.replace(/^#/, ''));
    const models = index.models || [];
    const model = models.find(m => m.name === raw.model) || models[0] || null;
    if (!model) return null;
    const classes = model.classes || [];
    // class: a class's bucket (c3, as views.html links) or its index (3)
    const cls = classes.find(c => c.bucket === raw.class || String(c.index) === raw.class) || null;
    const outcome = C.OUTCOMES.includes(raw.outcome) ? raw.outcome : null;
    const sorts = model.sorts && model.sorts.length ? model.sorts : [{key: 'name', label: 'name'}];
    const sort = sorts.find(s => s.key === raw.sort) || sorts[0];
    const dir = raw.dir === 'asc' || raw.dir === 'desc' ? raw.dir : C.defaultDirection(sort);
    const methods = model.methods || [];
    const metric = C.sortMetric(model, sort);
    const method = methods.find(m => m.key === raw.method)
      || (metric && methods.find(m => m.key === metric.method)) || methods[0] || null;
    const page = Math.max(1, parseInt(raw.page, 10) || 1);
    return {model, cls, outcome, sort, sorts, dir, method, page};
  }

  /** The fragment for a state (plain values: model name, class bucket, keys). */
  function fragment(values) {
    return '#' + C.paramString({
      model: values.model, class: values.class || 'all', outcome: values.outcome || 'all',
      sort: values.sort, dir: values.dir, method: values.method, page: values.page,
    });
  }

  /** A state's plain values, as fragment() takes them. */
  function plain(state) {
    return {
      model: state.model.name, class: state.cls ? state.cls.bucket : null, outcome: state.outcome,
      sort: state.sort.key, dir: state.dir, method: state.method ? state.method.key : null, page: state.page,
    };
  }

  /** The number of images in a bucket, from index.js. */
  function bucketCount(model, bucket) {
    const count = (model.buckets || {})[bucket];
    if (typeof count === 'number') return count;
    if (bucket === 'all') return model.count || 0;
    return 0;
  }

  /** Fill a <select> with [value, text] pairs (or <optgroup>s: [label, pairs]) and choose one. */
  function options(select, entries, chosen) {
    const make = ([value, text]) => C.el('option', {value}, text);
    C.fill(select, entries.map(entry => Array.isArray(entry[1])
      ? C.el('optgroup', {label: entry[0]}, entry[1].map(make)) : make(entry)));
    select.value = chosen;
  }

  /** The form's choices for a state, with counts. */
  function drawForm(state) {
    const model = state.model;
    options($('model'), index.models.map(m => [m.name, m.name + ' (' + m.count + ' images)']), model.name);
    options($('class'), [['all', 'all classes (' + bucketCount(model, 'all') + ')']].concat(
      (model.classes || []).map(c => [c.bucket, c.name + ' (' + c.index + '): ' + c.count + ' images'])),
    state.cls ? state.cls.bucket : 'all');
    const classBucket = state.cls ? state.cls.bucket : null;
    const outcomes = [['all', 'all (' + bucketCount(model, C.bucketName(classBucket, null)) + ')']];
    for (const outcome of C.OUTCOMES) {
      const count = bucketCount(model, C.bucketName(classBucket, outcome));
      if (count > 0 || outcome === state.outcome) outcomes.push([outcome, outcome + ' (' + count + ')']);
    }
    options($('outcome'), outcomes, state.outcome || 'all');
    const plainSorts = [];
    const byMethod = new Map();
    for (const sort of state.sorts) {
      const metric = C.sortMetric(model, sort);
      if (!metric) {
        plainSorts.push([sort.key, sort.label || sort.key]);
        continue;
      }
      const method = (model.methods || []).find(m => m.key === metric.method);
      const group = method ? method.label : metric.method;
      if (!byMethod.has(group)) byMethod.set(group, []);
      byMethod.get(group).push([sort.key, sort.label || sort.key]);
    }
    options($('sort'), plainSorts.concat(Array.from(byMethod)), state.sort.key);
    const words = state.sort.key === 'name' ? ['A to Z', 'Z to A'] : ['lowest first', 'highest first'];
    options($('dir'), [['asc', 'ascending (' + words[0] + ')'], ['desc', 'descending (' + words[1] + ')']], state.dir);
    const methods = model.methods || [];
    $('method-control').hidden = !methods.length;
    options($('method'), methods.map(m => [m.key, m.label || m.key]), state.method ? state.method.key : '');
  }

  /** The table's head: the image's facts, then the chosen method's measures. */
  function drawHead(state) {
    const measures = state.method ? state.model.measures || [] : [];
    const cells = ['image', 'name', 'label', 'prediction', 'probability', 'outcome', 'status']
      .map(text => C.el('th', {scope: 'col'}, text));
    for (const measure of measures) {
      const arrow = measure.higher_is_better === true ? ' \u2191' : measure.higher_is_better === false ? ' \u2193' : '';
      cells.push(C.el('th', {scope: 'col', className: 'measure'},
        C.el('span', {className: 'method'}, state.method.label || state.method.key), C.el('br'),
        (measure.label || measure.key) + arrow));
    }
    C.fill($('images').tHead, C.el('tr', {}, cells));
    return measures;
  }

  /** A class as "name (index)", or a dash. */
  function className(name, index) {
    if (index === null || index === undefined) return name || '\u2013';
    return (name || 'class') + ' (' + index + ')';
  }

  /** What the status column says of a row: ok, or what failed and why. */
  function statusText(row) {
    if (row.status !== 'ok') return (row.status || 'failed') + ': ' + (row.reason || 'the image cannot be used');
    const failures = row.failures || [];
    if (!failures.length) return row.failed ? 'failed' : 'ok';
    const first = failures[0];
    const text = first.result + ' ' + first.status + (first.reason ? ': ' + first.reason : '');
    return failures.length > 1 ? text + ' (and ' + (failures.length - 1) + ' more)' : text;
  }

  /** One row of the table. */
  function drawRow(state, bucket, position, row, measures) {
    const link = 'gallery/image.html?' + C.paramString({
      model: state.model.name, id: row.id, list: bucket, sort: state.sort.key, dir: state.dir,
      pos: position, method: state.method ? state.method.key : null,
    });
    const thumb = row.status === 'ok' && row.image
      ? C.el('img', {src: C.url(row.image), alt: row.name, loading: 'lazy', className: 'thumb'})
      : C.el('span', {className: 'no-thumb'}, 'cannot be shown');
    const metrics = (row.scores || {})[state.method ? state.method.key : ''] || {};
    const failed = row.status !== 'ok' || row.failed;
    return C.el('tr', {dataset: {id: String(row.id)}, className: 'outcome-' + row.outcome},
      C.el('td', {className: 'thumb'}, C.el('a', {href: link}, thumb)),
      C.el('td', {className: 'name'}, C.el('a', {href: link, title: row.name}, row.path || row.name)),
      C.el('td', {}, row.label_class === null || row.label_class === undefined
        ? (row.label || 'unlabelled') : className(row.label_name, row.label_class)),
      C.el('td', {}, className(row.prediction_name, row.prediction)),
      C.el('td', {className: 'number'}, C.number(row.probability)),
      C.el('td', {className: 'outcome'}, row.outcome),
      C.el('td', {className: failed ? 'failed' : 'ok'}, statusText(row)),
      measures.map(measure => C.el('td', {className: 'number'}, C.number(metrics[measure.key]))));
  }

  /** Point a pager link at a page, or switch it off. */
  function pageLink(id, state, page, usable) {
    const link = $(id);
    if (usable) {
      link.href = fragment(Object.assign(plain(state), {page}));
      link.removeAttribute('aria-disabled');
    } else {
      link.removeAttribute('href');
      link.setAttribute('aria-disabled', 'true');
    }
  }

  /** The pager for `total` rows at the state's page. */
  function drawPager(state, total, pages) {
    const size = index.page_size || 50;
    const first = total ? (state.page - 1) * size + 1 : 0;
    const last = Math.min(total, state.page * size);
    $('range').textContent = total
      ? 'rows ' + first + '\u2013' + last + ' of ' + total + ' (page ' + state.page + ' of ' + pages + ')'
      : 'no rows';
    pageLink('first-page', state, 1, state.page > 1);
    pageLink('prev-page', state, state.page - 1, state.page > 1);
    pageLink('next-page', state, state.page + 1, state.page < pages);
    pageLink('last-page', state, pages, state.page < pages);
  }

  /** Draw the page for the state in the address. */
  async function render() {
    const mine = ++generation;
    C.ready(false);
    try {
      const state = readState();
      if (!state) {
        C.say('This run has no images.', 'empty');
        C.fill($('images').tBodies[0]);
        C.ready(true);
        return;
      }
      drawForm(state);
      const measures = drawHead(state);
      const model = state.model;
      const bucket = C.bucketName(state.cls ? state.cls.bucket : null, state.outcome);
      const body = $('images').tBodies[0];
      const size = index.page_size || 50;
      let total = bucketCount(model, bucket);
      let rows = [];
      let start = 0;
      if (total > 0) {
        C.say('loading\u2026', 'loading');
        $('images').setAttribute('aria-busy', 'true');
        const data = C.modelData(DATA, index, model);
        const meta = await data.meta(bucket);
        total = meta.count;
        const valued = (meta.valued || {})[state.sort.key];
        const pages = Math.max(1, Math.ceil(total / size));
        state.page = Math.min(state.page, pages);
        start = (state.page - 1) * size;
        const positions = [];
        for (let pos = start; pos < Math.min(total, start + size); pos += 1) positions.push(pos);
        const ids = await data.ids(bucket, state.sort.key, state.dir === 'desc',
          typeof valued === 'number' ? valued : total, positions);
        rows = await Promise.all(ids.map(id => data.row(id).catch(error => ({id, error}))));
      }
      if (mine !== generation) return;
      const wanted = fragment(plain(state));
      if (location.hash !== wanted) history.replaceState(null, '', wanted);
      const pages = Math.max(1, Math.ceil(total / size));
      C.fill(body, rows.map((row, at) => row.error
        ? C.el('tr', {dataset: {id: String(row.id)}}, C.el('td', {colspan: 7 + measures.length, className: 'failed'},
          'image ' + row.id + ': ' + row.error.message))
        : drawRow(state, bucket, start + at, row, measures)));
      drawPager(state, total, pages);
      C.say(total ? '' : 'No images match.', total ? null : 'empty');
      $('images').removeAttribute('aria-busy');
      document.title = document.title.replace(/ \u2014 .*$/, '') + ' \u2014 ' + model.name;
    } catch (error) {
      if (mine !== generation) return;
      C.say('Could not show the images: ' + error.message, 'failed');
      $('images').removeAttribute('aria-busy');
    }
    if (mine === generation) C.ready(true);
  }

  /** Go to a state given by plain values: a new history entry, then draw. */
  function go(values) {
    C.ready(false);
    const wanted = fragment(values);
    if (location.hash !== wanted) history.pushState(null, '', wanted);
    render();
  }

  /** A form control changed: the new state (back to the first page unless only the columns changed). */
  function changed(event) {
    const state = readState();
    if (!state) return;
    const values = plain(state);
    const value = event.target.value;
    switch (event.target.id) {
      case 'model': {
        const model = index.models.find(m => m.name === value);
        values.model = value;
        if (model && !(model.sorts || []).some(s => s.key === values.sort)) {
          values.sort = null;
          values.dir = null;
        }
        break;
      }
      case 'class': values.class = value === 'all' ? null : value; break;
      case 'outcome': values.outcome = value === 'all' ? null : value; break;
      case 'sort': {
        const sort = state.sorts.find(s => s.key === value);
        values.sort = value;
        values.dir = C.defaultDirection(sort);
        const metric = C.sortMetric(state.model, sort);
        if (metric) values.method = metric.method;
        break;
      }
      case 'dir': values.dir = value; break;
      case 'method': values.method = value; go(values); return;
      default: return;
    }
    values.page = 1;
    go(values);
  }

  /** Start: read index.js (its <script> tag ran already), draw, follow the address. */
  async function start() {
    C.ready(false);
    try {
      index = await C.load(DATA + 'index.js', 'index');
    } catch (error) {
      C.say('Could not read the index: ' + error.message + '. Every image is also listed in summary.csv.', 'failed');
      C.ready(true);
      return;
    }
    $('controls').addEventListener('change', changed);
    $('controls').addEventListener('submit', event => event.preventDefault());
    window.addEventListener('hashchange', render);
    render();
  }

  start();
})();
