// Pratai's Node.js runtime: runs INSIDE the sandbox (Node stdlib only, never npm packages).
//
//     node --max-old-space-size=N /runtime/bootstrap.js '<json config>'
//
// The same frame protocol and config as pratai/runtimes/python/bootstrap.py: struct "!II"
// (header length, body length), a JSON header, a body, on the pipe fds in_fd / out_fd.
//
//     driver -> runtime   {"op": "call", "content_type", "timeout"}   body: payload
//     runtime -> driver   {"op": "ready"} | {"op": "init_error", "error", "stdout", "stderr"}
//                         {"op": "result", "status", "error", "duration_ms", "maxrss_kb",
//                          "lens": [result, stdout, stderr]}   body: result + stdout + stderr
//
// The handler "path.export" names /code/<path>.js (CommonJS, or ES module via import()) and
// its export, called as export(payload, context[, callback]); it may return a Promise.
// Frames are read with blocking fs.readSync: between calls nothing else runs (as on Lambda),
// and a call costs no event-loop round trip unless the handler awaits something.
'use strict';

const fs = require('fs');

const cfg = JSON.parse(process.argv[2]);
const SELF = __filename;

// The pipes arrive without close-on-exec (they had to survive the exec of node), so the
// handler's child processes would inherit them. Node cannot set the flag, but libuv opens
// every file with it: reopen each pipe through /proc (the driver makes the sandbox uid own them).
function reopen(fd, flags) {
  try {
    const fresh = fs.openSync(`/proc/self/fd/${fd}`, flags);
    fs.closeSync(fd);
    return fresh;
  } catch (_) {
    return fd;
  }
}

const IN_FD = reopen(cfg.in_fd, fs.constants.O_RDONLY);
const OUT_FD = reopen(cfg.out_fd, fs.constants.O_WRONLY);

function readExact(n) {
  const buf = Buffer.allocUnsafe(n);
  let off = 0;
  while (off < n) {
    let got;
    try {
      got = fs.readSync(IN_FD, buf, off, Math.min(n - off, 1 << 20), null);
    } catch (e) {
      if (e.code === 'EAGAIN' || e.code === 'EINTR') continue;
      if (e.code === 'EOF') return null;
      throw e;
    }
    if (got === 0) return null;
    off += got;
  }
  return buf;
}

function recv() {
  const head = readExact(8);
  if (head === null) return null;
  const hlen = head.readUInt32BE(0);
  const blen = head.readUInt32BE(4);
  const header = readExact(hlen);
  if (header === null) return null;
  const body = blen ? readExact(blen) : Buffer.alloc(0);
  if (body === null) return null;
  return [JSON.parse(header.toString('utf8')), body];
}

function send(header, body) {
  const head = Buffer.from(JSON.stringify(header), 'utf8');
  const prefix = Buffer.allocUnsafe(8);
  prefix.writeUInt32BE(head.length, 0);
  prefix.writeUInt32BE(body ? body.length : 0, 4);
  const data = body && body.length ? Buffer.concat([prefix, head, body]) : Buffer.concat([prefix, head]);
  let off = 0;
  while (off < data.length) {
    try {
      off += fs.writeSync(OUT_FD, data, off, data.length - off);
    } catch (e) {
      if (e.code !== 'EAGAIN' && e.code !== 'EINTR') throw e;
    }
  }
}

// ------------------------------------------------------------------------------- output

// Per-call output from console.* and process.stdout/stderr.write. Node has no dup2, so the
// streams' write methods are replaced; output of child processes is not captured.
class Capture {
  constructor(limit) {
    this.limit = limit;
    this.active = false;
    this.parts = [[], []];
    this.sizes = [0, 0];
  }

  start() {
    this.parts = [[], []];
    this.sizes = [0, 0];
    this.active = true;
  }

  write(i, chunk, encoding) {
    if (!this.active || this.sizes[i] > this.limit) return;
    let buf;
    if (typeof chunk === 'string') {
      buf = Buffer.from(chunk, typeof encoding === 'string' ? encoding : 'utf8');
    } else if (chunk instanceof Uint8Array) {
      buf = Buffer.from(chunk); // a copy: callers may reuse their buffer
    } else {
      buf = Buffer.from(String(chunk), 'utf8');
    }
    const room = this.limit + 1 - this.sizes[i];
    if (buf.length > room) buf = buf.subarray(0, room);
    this.parts[i].push(buf);
    this.sizes[i] += buf.length;
  }

  stop() {
    this.active = false;
    return this.parts.map((parts) => {
      let data = Buffer.concat(parts);
      if (data.length > this.limit) {
        const note = `\n[output truncated at ${this.limit} bytes]\n`;
        data = Buffer.concat([data.subarray(0, this.limit), Buffer.from(note)]);
      }
      return data;
    });
  }
}

function hookStreams(capture) {
  [process.stdout, process.stderr].forEach((stream, i) => {
    stream.write = function write(chunk, encoding, callback) {
      capture.write(i, chunk, encoding);
      const cb = typeof encoding === 'function' ? encoding : callback;
      if (typeof cb === 'function') process.nextTick(cb);
      return true;
    };
  });
}

// ------------------------------------------------------------------------------- errors

function cleanStack(stack) {
  return String(stack)
    .split('\n')
    .filter((line) => !line.includes(SELF))
    .join('\n');
}

function errorOf(e) {
  if (e instanceof Error || (e !== null && typeof e === 'object' && typeof e.stack === 'string')) {
    if (e instanceof RangeError && /Array buffer allocation failed/.test(e.message)) {
      return {
        type: 'MemoryLimitExceeded',
        message: `the function exceeded the memory limit of ${cfg.memory_mb} MB`,
        traceback: cleanStack(e.stack),
      };
    }
    return {
      type: String(e.name || (e.constructor && e.constructor.name) || 'Error'),
      message: String(e.message),
      traceback: cleanStack(e.stack),
    };
  }
  // `throw "boom"` and friends: typed by what was thrown, as AWS Lambda does
  let type = typeof e;
  if (e === null) type = 'null';
  else if (type === 'object') type = (e.constructor && e.constructor.name) || 'Object';
  let message;
  try {
    message = typeof e === 'string' ? e : require('util').inspect(e, { depth: 4 });
  } catch (_) {
    message = String(e);
  }
  return { type, message, traceback: '' };
}

function plainError(type, message) {
  return { type, message, traceback: '' };
}

// ------------------------------------------------------------------------------- handler

async function load(spec) {
  const dot = spec.lastIndexOf('.');
  if (dot <= 0 || dot === spec.length - 1) {
    throw new Error(`handler ${JSON.stringify(spec)} must look like 'file.function', e.g. 'index.main'`);
  }
  const base = `/code/${spec.slice(0, dot)}`;
  const name = spec.slice(dot + 1);
  // require() alone would not find index.mjs / index.cjs
  const ext = ['.js', '.cjs', '.mjs'].find((e) => fs.existsSync(base + e));
  const file = ext ? base + ext : base;
  let mod;
  try {
    if (ext === '.mjs') throw Object.assign(new Error('an ES module'), { code: 'ERR_REQUIRE_ESM' });
    mod = require(file);
  } catch (e) {
    if (e === null || typeof e !== 'object' || e.code !== 'ERR_REQUIRE_ESM') throw e;
    mod = await import(require('url').pathToFileURL(file).href);
  }
  let func = mod == null ? undefined : mod[name];
  if (func === undefined && mod != null && mod.default != null) func = mod.default[name];
  if (typeof func !== 'function') {
    const names = mod != null && typeof mod === 'object' ? Object.keys(mod) : [];
    throw new TypeError(
      `${spec.slice(0, dot)}.js does not export a function ${JSON.stringify(name)}` +
        ` (its exports: ${names.length ? names.join(', ') : 'none'})`,
    );
  }
  return func;
}

class Context {
  constructor(timeout) {
    this.functionName = cfg.name;
    this.memoryLimitInMB = cfg.memory_mb;
    this._deadline = Date.now() + timeout * 1000;
    this._id = null;
  }

  get awsRequestId() {
    if (this._id === null) this._id = require('crypto').randomBytes(16).toString('hex');
    return this._id;
  }

  get invocationId() {
    return this.awsRequestId;
  }

  getRemainingTimeInMillis() {
    return Math.max(0, this._deadline - Date.now());
  }
}

function decode(body, contentType) {
  const media = String(contentType || '').split(';', 1)[0].trim().toLowerCase();
  if (media === 'application/json' || media.endsWith('+json')) {
    const text = body.toString('utf8');
    return text.trim() ? JSON.parse(text) : null;
  }
  return body;
}

// Errors thrown outside the awaited chain (a timer, an unhandled rejection) fail the call in
// flight instead of killing the runtime; so does a Promise that can never settle.
let failCall = null;

function onStray(e) {
  if (failCall !== null) failCall(e);
  else process.stderr.write(`pratai: error outside a call: ${errorOf(e).traceback || String(e)}\n`);
}

function neverSettles() {
  if (failCall !== null) {
    const e = new Error(
      'the Promise returned by the handler can never settle: nothing is left to wait for ' +
        '(a missing resolve()?)',
    );
    e.name = 'PromiseNeverSettled';
    failCall(e);
  }
}

function callHandler(func, payload, context) {
  if (func.length >= 3) {
    // AWS callback style: handler(event, context, callback)
    return new Promise((resolve, reject) => {
      const returned = func(payload, context, (err, value) => (err ? reject(err) : resolve(value)));
      if (returned && typeof returned.then === 'function') returned.then(resolve, reject);
    });
  }
  return func(payload, context);
}

async function invoke(func, header, body) {
  let payload;
  try {
    payload = decode(body, header.content_type);
  } catch (e) {
    return ['failed', plainError('InvalidPayload', `payload is not JSON: ${e.message}`), null];
  }
  let value;
  try {
    value = callHandler(func, payload, new Context(header.timeout));
    if (value !== null && typeof value === 'object' && typeof value.then === 'function') {
      value = await new Promise((resolve, reject) => {
        failCall = reject;
        value.then(resolve, reject);
      });
    }
  } catch (e) {
    return ['failed', errorOf(e), null];
  } finally {
    failCall = null;
  }
  let text;
  try {
    text = JSON.stringify(value === undefined ? null : value);
  } catch (e) {
    return ['failed', plainError('TypeError', `the return value is not JSON-serialisable: ${e.message}`), null];
  }
  if (text === undefined) {
    return ['failed', plainError('TypeError', `the return value is not JSON-serialisable: a ${typeof value}`), null];
  }
  const result = Buffer.from(text, 'utf8');
  if (result.length > cfg.max_result) {
    return [
      'failed',
      plainError(
        'ResultTooLarge',
        `the return value is ${result.length} bytes encoded as JSON, over the limit of ${cfg.max_result} bytes`,
      ),
      null,
    ];
  }
  return ['succeeded', null, result];
}

async function main() {
  if (cfg.spare) {
    // A spare sandbox (pratai/drivers/spares.py): loaded nothing yet; a function claims it.
    // What is the same for every function is made first: the output streams (lazy, and slow).
    void process.stdout;
    void process.stderr;
    send({ op: 'spare' });
    const claim = recv();
    if (claim === null) process.exit(0); // stopped before any function claimed it
    Object.assign(cfg, claim[0].config);
    Object.assign(process.env, claim[0].env);
  }
  process.on('SIGXFSZ', () => {}); // an over-long write fails instead of killing
  process.on('uncaughtException', onStray);
  process.on('unhandledRejection', onStray);
  process.on('beforeExit', neverSettles);
  const capture = new Capture(cfg.max_output);
  hookStreams(capture);
  capture.start();
  let func;
  try {
    func = await load(cfg.handler);
  } catch (e) {
    const [out, err] = capture.stop();
    send({
      op: 'init_error',
      error: errorOf(e),
      stdout: out.toString('utf8'),
      stderr: err.toString('utf8'),
    });
    process.exit(1);
  }
  capture.stop();
  send({ op: 'ready' });
  for (;;) {
    const frame = recv();
    if (frame === null) process.exit(0);
    const [header, body] = frame;
    if (header.op !== 'call') continue;
    capture.start();
    const started = process.hrtime.bigint();
    const [status, error, result] = await invoke(func, header, body);
    const duration = Number(process.hrtime.bigint() - started) / 1e6;
    const [out, err] = capture.stop();
    const res = result || Buffer.alloc(0);
    send(
      {
        op: 'result',
        status,
        error,
        duration_ms: duration,
        maxrss_kb: process.resourceUsage().maxRSS,
        lens: [res.length, out.length, err.length],
      },
      Buffer.concat([res, out, err]),
    );
  }
}

main();
