/* The gallery's browse pages (images.html, gallery/image.html): what both need.
 *
 * Data files (docs/gallery.md) are scripts that call cnnvis.receive(KEY, VALUE): a page
 * opened from the file system cannot read JSON, but it can load scripts.  cnnvis.load
 * adds such a script and resolves with its value.  The rest: building the DOM from data
 * without ever parsing it as HTML, links to files whose names hold any character, and
 * the rules of the order files (which file holds a position, descending order).
 */
(function () {
  'use strict';

  const MAX_IN_FLIGHT = 16;        // scripts loading at once
  const ROWS_PER_FOLDER = 1000;    // rows/K/ID.js: K = ID // 1000
  const OUTCOMES = ['right', 'wrong', 'unlabelled', 'failed'];

  const values = new Map();        // key -> value a script handed over
  const pending = new Map();       // key -> promise of a load under way or done
  const deliveredBy = new WeakMap(); // script element -> the key it handed over
  const queue = [];
  let inFlight = 0;
  const requested = [];            // every path loaded, in order (for tests and curiosity)

  /** Called by a data script: keep its value under its key. */
  function receive(key, value) {
    values.set(key, value);
    const script = document.currentScript;
    if (script) deliveredBy.set(script, key);
  }

  /** Start queued loads while fewer than MAX_IN_FLIGHT are under way. */
  function pump() {
    while (inFlight < MAX_IN_FLIGHT && queue.length) {
      inFlight += 1;
      queue.shift()();
    }
  }

  /** Add a <script src=path> and settle once it ran (or failed to load). */
  function inject(path, key) {
    return new Promise((resolve, reject) => {
      queue.push(() => {
        requested.push(path);
        const script = document.createElement('script');
        const finish = () => {
          script.remove();
          inFlight -= 1;
          pump();
        };
        script.onload = () => {
          finish();
          if (values.has(key)) {
            resolve(values.get(key));
          } else {
            const got = deliveredBy.get(script);
            reject(new Error(path + ' ran but ' + (got === undefined
              ? 'handed over nothing' : 'handed over "' + got + '"') + ' instead of "' + key + '"'));
          }
        };
        script.onerror = () => {
          finish();
          reject(new Error('could not load ' + decodeURI(path) + ' (missing or unreadable)'));
        };
        script.src = path;
        document.head.appendChild(script);
      });
      pump();
    });
  }

  /** The value that the script at `path` (a URL, already encoded) hands over under `key`;
   * loaded once per key, and not at all if it was handed over already (a <script> tag). */
  function load(path, key) {
    if (values.has(key)) return Promise.resolve(values.get(key));
    if (!pending.has(key)) {
      const promise = inject(path, key);
      pending.set(key, promise);
      promise.catch(() => pending.delete(key));  // a failed load may be tried again
    }
    return pending.get(key);
  }

  /** A URL for a path relative to the results folder: each segment encoded, '/' kept. */
  function url(path) {
    return String(path).split('/').map(encodeURIComponent).join('/');
  }

  /** An element with attributes and children (nodes or text; text is never parsed as HTML).
   * Attributes that are null, undefined or false are left out; `className`, `dataset`
   * and `style` are set as properties. */
  function el(tag, attributes, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === 'className') node.className = value;
      else if (name === 'dataset') Object.assign(node.dataset, value);
      else if (name === 'style') Object.assign(node.style, value);
      else node.setAttribute(name, value === true ? '' : String(value));
    }
    append(node, children);
    return node;
  }

  /** Append children (nested arrays, nodes, text; null and false skipped) to a node. */
  function append(node, children) {
    for (const child of [children].flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  /** Replace a node's children. */
  function fill(node, ...children) {
    node.replaceChildren();
    return append(node, children);
  }

  /** A number with `digits` decimals, or an en dash when there is none. */
  function number(value, digits = 3) {
    return typeof value === 'number' && Number.isFinite(value) ? value.toFixed(digits) : '\u2013';
  }

  /** URL parameters (a query or a fragment, without its '?' or '#') as a plain object. */
  function params(text) {
    const found = {};
    for (const [name, value] of new URLSearchParams(text)) found[name] = value;
    return found;
  }

  /** A plain object as URL parameters; null and undefined values left out. */
  function paramString(object) {
    const search = new URLSearchParams();
    for (const [name, value] of Object.entries(object)) {
      if (value !== null && value !== undefined && value !== '') search.append(name, String(value));
    }
    return search.toString().replace(/\+/g, '%20');
  }

  /** The bucket of a filter: `all`, `o-OUTCOME`, `cCLASS` or `cCLASS-o-OUTCOME`
   * (classBucket: a class's `bucket`, or null for every class; outcome: null for all). */
  function bucketName(classBucket, outcome) {
    if (!classBucket) return outcome ? 'o-' + outcome : 'all';
    return outcome ? classBucket + '-o-' + outcome : classBucket;
  }

  /** A bucket's class bucket and outcome (the reverse of bucketName). */
  function parseBucket(bucket) {
    const text = String(bucket || 'all');
    if (text === 'all') return {classBucket: null, outcome: null};
    if (text.startsWith('o-')) return {classBucket: null, outcome: text.slice(2)};
    const at = text.indexOf('-o-');
    return at < 0 ? {classBucket: text, outcome: null}
      : {classBucket: text.slice(0, at), outcome: text.slice(at + 3)};
  }

  /** Where position `pos` of a list is in its ascending order file: descending reads the
   * `valued` images backwards, then those without a value in name order. */
  function ascendingIndex(pos, descending, valued) {
    return descending && pos < valued ? valued - 1 - pos : pos;
  }

  /** Loaders of one model's files under a data folder (`base`, ending in '/'). */
  function modelData(base, index, model) {
    const dir = model.dir;
    const perFile = index.ids_per_file || 1000;
    return {
      /** A bucket's meta.js: `count` and `valued` (sort -> images with a value). */
      meta(bucket) {
        return load(base + url(dir + '/order/' + bucket + '/meta.js'), 'order/' + dir + '/' + bucket);
      },
      /** One image's row. */
      row(id) {
        const shard = Math.floor(id / ROWS_PER_FOLDER);
        return load(base + url(dir + '/rows/' + shard + '/' + id + '.js'), 'row/' + dir + '/' + id);
      },
      /** The image ids at `positions` of a bucket in a sort and direction (`valued`: the
       * bucket's count of images with a value for the sort); reads only the files that
       * hold them. */
      async ids(bucket, sort, descending, valued, positions) {
        const wanted = positions.map(pos => ascendingIndex(pos, descending, valued));
        const files = Array.from(new Set(wanted.map(at => Math.floor(at / perFile))));
        const lists = new Map(await Promise.all(files.map(async file => [file, await load(
          base + url(dir + '/order/' + bucket + '/' + sort + '.' + file + '.js'),
          'order/' + dir + '/' + bucket + '/' + sort + '/' + file)])));
        return wanted.map(at => {
          const id = lists.get(Math.floor(at / perFile))[at % perFile];
          if (id === undefined) {
            throw new Error('the order file of ' + bucket + ' by ' + sort + ' has no position ' + at);
          }
          return id;
        });
      },
    };
  }

  /** The method and measure of a metric sort (its own `method`/`measure`, or its key
   * `m-METHOD-MEASURE` read against the model's methods and measures), or null. */
  function sortMetric(model, sort) {
    if (!sort) return null;
    if (sort.method && sort.measure) return {method: sort.method, measure: sort.measure};
    for (const method of model.methods || []) {
      for (const measure of model.measures || []) {
        if (sort.key === 'm-' + method.key + '-' + measure.key) return {method: method.key, measure: measure.key};
      }
    }
    return null;
  }

  /** The direction a sort starts in: names A to Z, the most confident first, and for a
   * measure the worst first (lowest when higher is better). */
  function defaultDirection(sort) {
    if (!sort || sort.key === 'name') return 'asc';
    if (sort.key === 'confidence') return 'desc';
    if (sort.higher_is_better === false) return 'desc';
    return 'asc';
  }

  /** Show a line in the page's #status (or nothing): `kind` is its class (loading, empty, failed). */
  function say(text, kind) {
    const status = document.getElementById('status');
    status.textContent = text || '';
    status.className = 'status' + (kind ? ' ' + kind : '');
    status.hidden = !text;
  }

  /** Point a link somewhere, or switch it off (no href, aria-disabled). */
  function point(link, href) {
    if (href) {
      link.href = href;
      link.removeAttribute('aria-disabled');
    } else {
      link.removeAttribute('href');
      link.setAttribute('aria-disabled', 'true');
    }
  }

  /** Mark the page as rendered (1) or rendering (0): tests wait for 1. */
  function ready(done) {
    document.body.dataset.ready = done ? '1' : '0';
  }

  window.cnnvis = {
    receive, load, url, el, append, fill, number, params, paramString, bucketName, parseBucket,
    ascendingIndex, modelData, sortMetric, defaultDirection, say, point, ready, requested, OUTCOMES,
  };
})();
