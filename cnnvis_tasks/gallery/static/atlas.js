/* The channel atlases (docs/gallery.md, "Channel atlases"):
 *   gallery/atlas.html?model=M&setting=S[&sort=K&page=N]: a layer's channels, 50 to a page,
 *     each with its filter visualisation, its top examples, its selectivity and its classes;
 *   gallery/channel.html?model=M&setting=S&channel=N: one channel, larger.
 * Reads data/atlas/index.js (loaded by the page), the atlas's meta.js and the one page file
 * that holds what is shown.  A tile is a patch_size square of a strip (tile i at x = i *
 * patch_size), shown as the strip's background; it leads to its image's page when the
 * image is in the image index, else to the image file.  Paths are relative to the results
 * folder, one level up.
 */
(function () {
  'use strict';

  const C = window.cnnvis;
  const DATA = 'data/atlas/';
  const ROOT = '../';
  const ROW_TILE = 64;       // a tile's side in the atlas's rows
  const LARGE_TILE = 160;    // and on a channel's page
  const THUMB = 64;          // the filter visualisation in a row
  const $ = id => document.getElementById(id);

  /** The atlas the address names: its index entry, its meta and its files' loader. */
  async function atlasOf(params) {
    const index = await C.load(DATA + 'index.js', 'atlas/index');
    const atlases = index.atlases || [];
    const found = atlases.find(a => a.model === params.model && a.setting === params.setting);
    if (!found) {
      throw new Error('this run has no atlas of "' + (params.model || '') + '" at "' + (params.setting || '') + '"');
    }
    const dir = found.dir;
    const meta = await C.load(DATA + C.url(dir + '/meta.js'), 'atlas/' + dir + '/meta');
    const page = (sort, number) => C.load(DATA + C.url(dir + '/' + sort + '.' + number + '.js'),
      'atlas/' + dir + '/' + sort + '/' + number);
    return {entry: found, meta, page};
  }

  /** The address of an atlas page or a channel page. */
  function atlasHref(meta, sort, page) {
    return 'atlas.html?' + C.paramString({model: meta.model, setting: meta.setting,
      sort: sort === 'channel' ? null : sort, page: page > 1 ? page : null});
  }
  function channelHref(meta, channel) {
    return 'channel.html?' + C.paramString({model: meta.model, setting: meta.setting, channel});
  }

  /** Where an example leads: its image's page when the index has it, else the image file. */
  function imageHref(meta, image) {
    if (meta.image_pages && image.id !== null && image.id !== undefined) {
      return 'image.html?' + C.paramString({model: meta.model, id: image.id});
    }
    return ROOT + C.url(image.file);
  }

  /** An image's name as shown. */
  function imageName(image) {
    return image.name || String(image.file).split('/').pop();
  }

  /** Tile `at` of a strip, `side` pixels wide, as a link to its image. */
  function tile(meta, page, strip, item, at, side) {
    const image = page.images[item.image];
    const patch = meta.patch_size || 64;
    const style = {width: side + 'px', height: side + 'px'};
    if (strip) {
      Object.assign(style, {backgroundImage: 'url("' + ROOT + C.url(strip) + '")',
        backgroundPosition: (-at * side) + 'px 0', backgroundSize: 'auto ' + side + 'px'});
    }
    const title = imageName(image) + (image.label ? ' (' + image.label + ')' : '') + ', score ' + C.number(item.score);
    const known = image.id !== null && image.id !== undefined;
    return C.el('a', {href: imageHref(meta, image), className: 'tile-link', title,
      dataset: known ? {image: String(image.id)} : null},
      C.el('span', {className: 'tile' + (strip ? '' : ' no-strip'), style, role: 'img',
        'aria-label': title, dataset: {patch: String(patch)}}));
  }

  /** "8 of 9 labelled 'cat'", or why there is no such line. */
  function selectivityText(channel) {
    const chosen = channel.selectivity;
    if (!chosen) return channel.top.length ? 'no top image has a label' : 'no top images';
    const unlabelled = channel.top.length - chosen.labelled;
    return chosen.count + ' of ' + channel.top.length + ' labelled \u2018' + chosen.label + '\u2019'
      + (unlabelled > 0 ? ' (' + unlabelled + ' unlabelled)' : '');
  }

  /** A class as "name (index)". */
  function className(item) {
    return (item.name || 'class') + (item.index === null || item.index === undefined ? '' : ' (' + item.index + ')');
  }

  /** The classes a channel pushes up and down, one line each. */
  function classLines(channel) {
    if (!channel.classes) return C.el('span', {className: 'note'}, '\u2013');
    return ['up', 'down'].map(way => C.el('div', {className: 'classes-' + way},
      (way === 'up' ? '\u2191 ' : '\u2193 ') + ((channel.classes[way] || []).map(className).join(', ') || '\u2013')));
  }

  /** The facts above both pages. */
  function facts(meta) {
    const parts = [meta.labels.join(', '), meta.channels + ' channels', (meta.scanned || 0) + ' images scanned',
      'score: ' + (meta.statistic || '?') + ' activation'];
    if (meta.receptive_field) parts.push('patches of ' + meta.receptive_field + ' input pixels');
    if (meta.classes_from === 'gradient') parts.push('classes: mean gradient of each class logit at the layer');
    return parts.join(' \u00b7 ');
  }

  /** The channel's filter visualisation, or a dash. */
  function filterPicture(picture, side) {
    if (!picture) return C.el('span', {className: 'note'}, '\u2013');
    const src = ROOT + C.url(picture);
    return C.el('a', {href: src}, C.el('img', {src, alt: 'filter visualisation', width: side, height: side,
      className: 'filter-viz', loading: 'lazy'}));
  }

  /** atlas.html: the form, the pager and a row per channel of the page. */
  async function drawAtlas(params) {
    const {meta, page} = await atlasOf(params);
    const sorts = meta.sorts || [];
    const sort = sorts.some(s => s.key === params.sort) ? params.sort : 'channel';
    const pages = Math.max(1, meta.pages);
    const number = Math.min(Math.max(1, parseInt(params.page, 10) || 1), pages);
    $('title').textContent = meta.title.charAt(0).toUpperCase() + meta.title.slice(1) + ': ' + meta.model
      + ' \u2014 ' + meta.labels.join(', ');
    document.title = $('title').textContent;
    $('facts').textContent = facts(meta);
    C.fill($('sort'), sorts.map(s => C.el('option', {value: s.key, selected: s.key === sort}, s.label)));
    $('sort').onchange = () => { location.search = '?' + atlasHref(meta, $('sort').value, 1).split('?')[1]; };
    C.point($('first-page'), number > 1 ? atlasHref(meta, sort, 1) : null);
    C.point($('prev-page'), number > 1 ? atlasHref(meta, sort, number - 1) : null);
    C.point($('next-page'), number < pages ? atlasHref(meta, sort, number + 1) : null);
    C.point($('last-page'), number < pages ? atlasHref(meta, sort, pages) : null);
    const first = (number - 1) * meta.page_size;
    $('range').textContent = meta.channels ? 'channels ' + (first + 1) + '\u2013'
      + Math.min(first + meta.page_size, meta.channels) + ' of ' + meta.channels + ' (page ' + number + ' of '
      + pages + ')' : 'no channels';
    const heads = ['channel', meta.filter_viz ? meta.filter_viz.title : null, 'top examples', 'selectivity',
      'classes'].filter(Boolean);
    C.fill(document.querySelector('#channels thead'), C.el('tr', {}, heads.map(text => C.el('th', {}, text))));
    if (!meta.channels) {
      C.fill(document.querySelector('#channels tbody'));
      return C.say('The atlas has no channels.', 'empty');
    }
    const data = await page(sort, number - 1);
    const rows = data.channels.map(channel => C.el('tr', {dataset: {channel: String(channel.channel)}},
      C.el('td', {className: 'channel'}, C.el('a', {href: channelHref(meta, channel.channel)}, String(channel.channel))),
      meta.filter_viz ? C.el('td', {className: 'thumb'}, filterPicture(channel.filter_viz, THUMB)) : null,
      C.el('td', {className: 'strip'}, channel.top.map((item, at) =>
        tile(meta, data, channel.strips.top, item, at, ROW_TILE))),
      C.el('td', {className: 'selectivity'}, selectivityText(channel)),
      C.el('td', {className: 'classes'}, classLines(channel))));
    C.fill(document.querySelector('#channels tbody'), rows);
    C.say('');
  }

  /** One example, large, with its score, image and label. */
  function example(meta, page, strip, item, at) {
    const image = page.images[item.image];
    return C.el('figure', {className: 'example'}, tile(meta, page, strip, item, at, LARGE_TILE),
      C.el('figcaption', {},
        C.el('div', {className: 'score'}, 'score ' + C.number(item.score)),
        C.el('div', {}, C.el('a', {href: imageHref(meta, image)}, imageName(image))),
        C.el('div', {className: 'label'}, image.label ? 'label: ' + image.label : 'unlabelled')));
  }

  /** channel.html: one channel of the atlas. */
  async function drawChannel(params) {
    const {meta, page} = await atlasOf(params);
    const wanted = Number(params.channel);
    const starts = meta.page_starts || [];
    let at = -1;
    starts.forEach((start, place) => { if (start <= wanted) at = place; });
    const data = at < 0 || !Number.isInteger(wanted) ? null : await page('channel', at);
    const channel = data && data.channels.find(c => c.channel === wanted);
    $('back').href = atlasHref(meta, 'channel', Math.max(at, 0) + 1);
    if (!channel) throw new Error('the atlas has no channel ' + (params.channel || '(none)'));
    const name = 'channel ' + channel.channel + ' \u2014 ' + meta.model + ' \u2014 ' + meta.labels.join(', ');
    $('title').textContent = name.charAt(0).toUpperCase() + name.slice(1);
    document.title = $('title').textContent;
    document.body.dataset.channel = String(channel.channel);
    $('facts').textContent = facts(meta);
    C.point($('prev'), channel.prev === null || channel.prev === undefined ? null : channelHref(meta, channel.prev));
    C.point($('next'), channel.next === null || channel.next === undefined ? null : channelHref(meta, channel.next));
    $('filter-viz-title').textContent = meta.filter_viz ? meta.filter_viz.title : 'Visualisation';
    C.fill($('filter-viz'), channel.filter_viz ? filterPicture(channel.filter_viz, LARGE_TILE)
      : C.el('p', {className: 'note'}, 'None in this gallery.'));
    C.fill($('selectivity'), C.el('p', {}, selectivityText(channel)));
    if (channel.classes) {
      const rows = ['up', 'down'].flatMap(way => (channel.classes[way] || []).map(item =>
        C.el('tr', {dataset: {way}}, C.el('td', {}, way === 'up' ? '\u2191' : '\u2193'),
          C.el('td', {className: 'name'}, className(item)), C.el('td', {className: 'number'}, C.number(item.value)))));
      C.fill($('classes'), C.el('table', {className: 'classes'}, C.el('thead', {}, C.el('tr', {},
        ['', 'class', meta.classes_from === 'gradient' ? 'mean gradient' : 'value'].map(text =>
          C.el('th', {}, text)))), C.el('tbody', {}, rows)));
    } else {
      C.fill($('classes'), C.el('p', {className: 'note'}, 'Not computed.'));
    }
    for (const way of ['top', 'bottom']) {
      const listed = channel[way] || [];
      C.fill($(way), listed.length ? listed.map((item, place) => example(meta, data, channel.strips[way], item, place))
        : C.el('p', {className: 'note'}, way === 'bottom' && !(meta.counts || {}).bottom
          ? 'The atlas keeps none (its bottom count is 0).' : 'No examples.'));
    }
    C.say('');
  }

  async function render() {
    C.ready(false);
    const params = C.params(location.search.replace(/^\?/, ''));
    const onAtlas = Boolean($('channels'));
    try {
      await (onAtlas ? drawAtlas(params) : drawChannel(params));
    } catch (error) {
      C.say('Could not show the ' + (onAtlas ? 'atlas' : 'channel') + ': ' + error.message, 'failed');
    }
    C.ready(true);
  }

  render();
})();
