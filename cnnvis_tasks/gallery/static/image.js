/* gallery/image.html?model=M&id=N[&list=BUCKET&sort=S&dir=D&pos=P]: one image under one
 * model.  Reads index.js and the image's row; with a list (the index's filter, order and
 * position) also the bucket's meta.js and the order file(s) of the positions before and
 * after, so that previous and next follow that list.  Paths in the rows are relative to
 * the results folder, one level up.
 */
(function () {
  'use strict';

  const C = window.cnnvis;
  const DATA = 'data/';
  const ROOT = '../';
  const PICTURE_SIZE = 192;
  const INPUT_SIZE = 384;
  const $ = id => document.getElementById(id);

  /** A class as "name (index)". */
  function className(name, index) {
    if (index === null || index === undefined) return name || '\u2013';
    return (name || 'class') + ' (' + index + ')';
  }

  /** Lines of a label: a list, or text with line breaks. */
  function lines(label) {
    if (label === null || label === undefined) return [];
    return Array.isArray(label) ? label.map(String) : String(label).split('\n');
  }

  /** Text with line breaks between lines. */
  function withBreaks(parts) {
    return parts.flatMap((part, at) => at ? [C.el('br'), part] : [part]);
  }

  /** The input picture with its box over it (the box scales with the picture: percentages
   * of row.size), or why it cannot be shown. */
  function drawInput(row) {
    if (row.status !== 'ok' || !row.image) {
      return C.fill($('input'), C.el('p', {className: 'failed'},
        'The image cannot be shown: ' + (row.status || 'failed') + (row.reason ? ' \u2014 ' + row.reason : '')));
    }
    const size = Array.isArray(row.size) && row.size[0] > 0 && row.size[1] > 0 ? row.size : null;
    const attributes = {src: ROOT + C.url(row.image), alt: row.name, className: 'input'};
    if (size) {
      const scale = INPUT_SIZE / Math.max(size[0], size[1]);
      attributes.width = Math.round(size[0] * scale);
      attributes.height = Math.round(size[1] * scale);
    }
    const link = C.el('a', {href: ROOT + C.url(row.image)}, C.el('img', attributes));
    const frame = C.el('div', {className: 'frame'}, link);
    if (size && Array.isArray(row.box) && row.box.length === 4) {
      const [x0, y0, x1, y1] = row.box.map(Number);
      const percent = value => (100 * value).toFixed(3) + '%';
      frame.append(C.el('div', {className: 'box', title: 'box ' + row.box.join(', '), style: {
        left: percent(x0 / size[0]), top: percent(y0 / size[1]),
        width: percent((x1 - x0) / size[0]), height: percent((y1 - y0) / size[1]),
      }}));
    }
    C.fill($('input'), frame);
  }

  /** Label, outcome, prediction and the image's facts. */
  function drawFacts(row) {
    const label = row.label_class === null || row.label_class === undefined
      ? (row.label ? row.label + ' (no class index)' : 'unlabelled')
      : className(row.label_name, row.label_class);
    const facts = [
      ['label', label],
      ['outcome', row.outcome + (row.failed && row.outcome !== 'failed' ? ' (a result failed)' : '')],
      ['prediction', row.prediction === null || row.prediction === undefined ? '\u2013'
        : className(row.prediction_name, row.prediction) + ', p = ' + C.number(row.probability)],
      ['size', Array.isArray(row.size) ? row.size[0] + ' \u00d7 ' + row.size[1] + ' px' : '\u2013'],
      ['box', Array.isArray(row.box) ? row.box.join(', ') : 'none'],
    ];
    if (row.status !== 'ok') facts.push(['image check', row.status + (row.reason ? ': ' + row.reason : '')]);
    C.fill($('facts'), facts.map(([name, value]) => [C.el('dt', {}, name), C.el('dd', {}, value)]));
  }

  /** The top-5 predictions with a bar each; the label's class marked. */
  function drawTop(row) {
    const top = row.top || [];
    if (!top.length) return C.fill($('top5'), C.el('p', {className: 'note'}, 'No predictions.'));
    const rows = top.map(([index, name, probability], rank) => {
      const isLabel = index === row.label_class;
      const share = typeof probability === 'number' ? Math.max(0, Math.min(1, probability)) : 0;
      return C.el('tr', {className: isLabel ? 'label' : null, dataset: {class: String(index)}},
        C.el('td', {}, String(rank + 1)),
        C.el('td', {className: 'name'}, className(name, index),
          isLabel ? C.el('span', {className: 'tag'}, 'label') : null),
        C.el('td', {className: 'bar'},
          C.el('div', {className: 'bar', style: {width: (100 * share).toFixed(1) + '%'}})),
        C.el('td', {className: 'number'}, C.number(probability)));
    });
    C.fill($('top5'), C.el('table', {className: 'top5'},
      C.el('thead', {}, C.el('tr', {}, ['#', 'class', '', 'probability'].map(text => C.el('th', {}, text)))),
      C.el('tbody', {}, rows)));
  }

  /** The model's pictures of this image: its paths filled in with the image's name and
   * chunk, and the status of those it lacks (row.picture_problems, by place). */
  function picturesOf(row, model) {
    const problems = row.picture_problems || {};
    return (model.pictures || []).map((picture, place) => {
      const [status, reason] = problems[String(place)] || ['ok', null];
      const src = picture.path.split('{image}').join(row.name).split('{chunk}').join(row.chunk || '');
      return {section: picture.section, title: picture.title, label: picture.label, src, status, reason};
    });
  }

  /** Every picture, by section, at one size, with its label lines below. */
  function drawPictures(row, model) {
    const sections = new Map();
    for (const picture of picturesOf(row, model)) {
      if (!sections.has(picture.section)) {
        sections.set(picture.section, {title: picture.title || picture.section, items: []});
      }
      sections.get(picture.section).items.push(picture);
    }
    if (!sections.size) return C.fill($('pictures'), C.el('p', {className: 'note'}, 'No pictures.'));
    const figure = (picture, title) => {
      const caption = C.el('figcaption', {}, withBreaks(lines(picture.label)));
      if (picture.status === 'ok' && picture.src) {
        const src = ROOT + C.url(picture.src);
        const alt = title + ' ' + lines(picture.label).join(' ');
        const img = C.el('img', {src, alt, loading: 'lazy', width: PICTURE_SIZE, height: PICTURE_SIZE});
        const shown = C.el('figure', {}, C.el('a', {href: src}, img), caption);
        // a picture the tables call ok but whose file is gone (deleted, or a run cut short): say so
        img.addEventListener('error', () => C.fill(shown, C.el('div', {className: 'placeholder'},
          'missing: ' + picture.src), caption));
        return shown;
      }
      const why = (picture.status || 'missing') + (picture.reason ? ': ' + picture.reason : '');
      return C.el('figure', {className: 'missing'}, C.el('div', {className: 'placeholder'}, why), caption);
    };
    C.fill($('pictures'), Array.from(sections, ([key, section]) =>
      C.el('section', {className: 'pictures', dataset: {section: key}}, C.el('h3', {}, section.title),
        C.el('div', {className: 'strip'}, section.items.map(picture => figure(picture, section.title))))));
  }

  /** The trust metrics: a row per method, a column per measure. */
  function drawMetrics(row, model) {
    const metrics = row.scores || {};
    const methods = (model.methods || []).slice();
    for (const key of Object.keys(metrics)) {
      if (!methods.some(m => m.key === key)) methods.push({key, label: key});
    }
    const measures = model.measures || [];
    if (!methods.length || !measures.length) {
      return C.fill($('metrics'), C.el('p', {className: 'note'}, 'No trust metrics for this model.'));
    }
    const arrow = measure => measure.higher_is_better === true ? ' \u2191'
      : measure.higher_is_better === false ? ' \u2193' : '';
    const head = C.el('tr', {}, C.el('th', {}, 'method'), measures.map(measure =>
      C.el('th', {dataset: {measure: measure.key}}, (measure.label || measure.key) + arrow(measure))));
    const body = methods.map(method => C.el('tr', {dataset: {method: method.key}},
      C.el('th', {scope: 'row'}, method.label || method.key),
      measures.map(measure => C.el('td', {className: 'number'},
        C.number((metrics[method.key] || {})[measure.key])))));
    C.fill($('metrics'), C.el('table', {className: 'trust'}, C.el('thead', {}, head), C.el('tbody', {}, body)),
      C.el('p', {className: 'note'}, '\u2191 higher is better, \u2193 lower is better; \u2013: no value.'));
  }

  /** What failed for this image, and why. */
  function drawFailures(row) {
    const failures = (row.failures || []).slice();
    if (row.status !== 'ok' && !failures.some(f => f.result === 'image')) {
      failures.unshift({result: 'image', status: row.status, reason: row.reason});
    }
    if (!failures.length) return C.fill($('failures'), C.el('p', {className: 'note'}, 'Nothing failed.'));
    C.fill($('failures'), C.el('ul', {}, failures.map(failure => C.el('li', {className: 'failed'},
      C.el('strong', {}, failure.result),
      ': ' + (failure.status || 'failed') + (failure.reason ? ' \u2014 ' + failure.reason : '')))));
  }

  /** Previous and next: along the list the index showed (when the address names one),
   * else in name order; and the way back to the index. */
  async function drawNeighbours(params, model, row, index) {
    const page = id => 'image.html?' + C.paramString({model: model.name, id});
    const list = params.list;
    const pos = parseInt(params.pos, 10);
    const sort = (model.sorts || []).find(s => s.key === params.sort);
    // only a list index.js knows (an address from an older run, or typed, falls back to name order)
    const known = list && ((model.buckets || {})[list] || 0) > 0;
    if (known && sort && pos >= 0) {
      const descending = params.dir === 'desc';
      const {classBucket, outcome} = C.parseBucket(list);
      const cls = (model.classes || []).find(c => c.bucket === classBucket);
      const back = C.paramString({model: model.name, class: cls ? cls.bucket : 'all', outcome: outcome || 'all',
        sort: sort.key, dir: params.dir, method: params.method, page: Math.floor(pos / (index.page_size || 50)) + 1});
      $('back').href = ROOT + 'images.html#' + back;
      const data = C.modelData(DATA, index, model);
      const meta = await data.meta(list);
      const valued = (meta.valued || {})[sort.key];
      const around = [pos - 1, pos + 1].filter(at => at >= 0 && at < meta.count);
      const ids = await data.ids(list, sort.key, descending, typeof valued === 'number' ? valued : meta.count, around);
      const at = new Map(around.map((position, i) => [position, ids[i]]));
      const link = position => at.has(position) ? 'image.html?' + C.paramString({
        model: model.name, id: at.get(position), list, sort: sort.key, dir: params.dir, pos: position,
        method: params.method}) : null;
      C.point($('prev'), link(pos - 1));
      C.point($('next'), link(pos + 1));
      $('position').textContent = 'image ' + (pos + 1) + ' of ' + meta.count + ' in the list';
      return;
    }
    $('back').href = ROOT + 'images.html#' + C.paramString({model: model.name});
    C.point($('prev'), row.prev === null || row.prev === undefined ? null : page(row.prev));
    C.point($('next'), row.next === null || row.next === undefined ? null : page(row.next));
    $('position').textContent = 'image ' + (row.id + 1) + ' of ' + model.count + ' by name';
  }

  /** Draw the page for the address. */
  async function render() {
    C.ready(false);
    const params = C.params(location.search.replace(/^\?/, ''));
    try {
      const index = await C.load(DATA + 'index.js', 'index');
      const models = index.models || [];
      const model = models.find(m => m.name === params.model) || models.find(m => m.dir === params.model);
      if (!model) throw new Error('this run has no model named "' + (params.model || '') + '"');
      const id = Number(params.id);
      if (!Number.isInteger(id) || id < 0 || id >= model.count) {
        throw new Error('no image number ' + (params.id || '(none)') + ' (the run has ' + model.count + ')');
      }
      const row = await C.modelData(DATA, index, model).row(id);
      $('title').textContent = (row.path || row.name) + ' \u2014 ' + model.name;
      document.title = (row.path || row.name) + ' \u2014 ' + model.name + ' \u2014 ' + (index.title || 'cnnvis');
      document.body.dataset.id = String(row.id);
      drawInput(row);
      drawFacts(row);
      drawTop(row);
      drawPictures(row, model);
      drawMetrics(row, model);
      drawFailures(row);
      C.say('');
      try {
        await drawNeighbours(params, model, row, index);
      } catch (error) {
        C.say('Previous and next along the list are not available: ' + error.message, 'failed');
      }
    } catch (error) {
      C.say('Could not show the image: ' + error.message, 'failed');
    }
    C.ready(true);
  }

  render();
})();
