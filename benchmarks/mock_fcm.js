#!/usr/bin/env node
// A fast stand-in for FCM HTTP v1, for throughput benchmarks only: Node's HTTP/2 (nghttp2) over
// TLS keeps up with a client where the project's Python mock (owlmetry/fcm/mock) saturates its
// core first. It checks what a throughput run needs checked and no more: the token endpoint
// verifies the JWT-bearer assertion's RS256 signature against the service account's key (and
// its scope and expiry) and issues one opaque access token; `messages:send` checks that bearer
// token, the project in the path and that the body is a message with a token, and answers
// {"name": ...}. Every rule and fault FCM has is the Python mock's job (and the tests').
//
// node benchmarks/mock_fcm.js --service-account sa.json --cert cert.pem --key key.pem
//   [--port 0] [--stats-port 0] [--max-streams 1000]
// Prints one JSON line {"mock_fcm": "listening", "port", "url", "token_uri", "stats_port"} once
// listening (the token endpoint has a port of its own). GET /stats on the stats port (plain
// HTTP/1.1): the Python mock's counter names; POST /reset zeroes them (the tokens seen too).
'use strict';
const http2 = require('node:http2');
const http = require('node:http');
const https = require('node:https');
const fs = require('node:fs');
const crypto = require('node:crypto');

function parseArgs(argv) {
  const o = { port: 0, statsPort: 0, maxStreams: 1000, serviceAccount: null, cert: null, key: null };
  const names = {
    '--port': ['port', Number], '--stats-port': ['statsPort', Number],
    '--max-streams': ['maxStreams', Number], '--service-account': ['serviceAccount', String],
    '--cert': ['cert', String], '--key': ['key', String],
  };
  for (let i = 2; i < argv.length; i += 2) {
    const name = names[argv[i]];
    if (!name || i + 1 >= argv.length) { console.error(`unknown or incomplete flag ${argv[i]}`); process.exit(2); }
    o[name[0]] = name[1](argv[i + 1]);
  }
  for (const required of ['serviceAccount', 'cert', 'key']) {
    if (!o[required]) { console.error(`--${required.replace(/[A-Z]/g, c => '-' + c.toLowerCase())} is required`); process.exit(2); }
  }
  return o;
}

const opt = parseArgs(process.argv);
const account = JSON.parse(fs.readFileSync(opt.serviceAccount, 'utf8'));
const publicKey = crypto.createPublicKey(account.private_key);
const SEND_PATH = `/v1/projects/${account.project_id}/messages:send`;
const SCOPE = 'https://www.googleapis.com/auth/firebase.messaging';
const ACCESS_TOKEN = 'ya29.bench-' + crypto.randomBytes(12).toString('hex');

const stats = {
  delivered: 0, unique_delivered: 0, duplicate_delivered: 0, refused: 0,
  connections_opened: 0, token_requests: 0, tokens_issued: 0,
};
const deliveredTokens = new Set();

// Sends answer on HTTP/2 streams, the token endpoint on HTTP/1.1 responses: one shape for both.
function answer(out, status, body) {
  try {
    if (out.respond) {
      out.respond({ ':status': status, 'content-type': 'application/json; charset=UTF-8' });
    } else {
      out.writeHead(status, { 'content-type': 'application/json; charset=UTF-8' });
    }
    out.end(JSON.stringify(body));
  } catch (e) { /* the stream went away */ }
}

function refuse(out, status, message) {
  stats.refused++;
  answer(out, status, { error: { code: status, message, status: status === 401 ? 'UNAUTHENTICATED' : 'INVALID_ARGUMENT' } });
}

function readBody(source, then) {
  const chunks = [];
  source.on('data', (chunk) => chunks.push(chunk));
  source.on('end', () => then(Buffer.concat(chunks)));
}

function verifyAssertion(assertion) {
  const parts = (assertion || '').split('.');
  if (parts.length !== 3) return 'not a JWT';
  const signed = Buffer.from(`${parts[0]}.${parts[1]}`);
  const signature = Buffer.from(parts[2], 'base64url');
  if (!crypto.verify('RSA-SHA256', signed, publicKey, signature)) return 'bad signature';
  const claims = JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8'));
  const scopes = String(claims.scope || '').split(' ');
  if (!scopes.includes(SCOPE) && !scopes.includes('https://www.googleapis.com/auth/cloud-platform')) return 'scope';
  if (!(claims.exp > Date.now() / 1000)) return 'expired';
  return null;
}

function token(response, body) {
  stats.token_requests++;
  const form = new URLSearchParams(body.toString('utf8'));
  const problem = verifyAssertion(form.get('assertion'));
  if (problem) {
    answer(response, 400, { error: 'invalid_grant', error_description: problem });
    return;
  }
  stats.tokens_issued++;
  answer(response, 200, { access_token: ACCESS_TOKEN, expires_in: 3599, token_type: 'Bearer' });
}

function send(stream, headers, body) {
  if (headers.authorization !== `Bearer ${ACCESS_TOKEN}`) return refuse(stream, 401, 'bad access token');
  let message;
  try { message = JSON.parse(body.toString('utf8')).message; } catch (e) { message = null; }
  if (!message || typeof message.token !== 'string') return refuse(stream, 400, 'no message.token');
  stats.delivered++;
  if (deliveredTokens.has(message.token)) stats.duplicate_delivered++;
  else { deliveredTokens.add(message.token); stats.unique_delivered++; }
  answer(stream, 200, { name: `projects/${account.project_id}/messages/${stats.delivered}` });
}

const tls = { key: fs.readFileSync(opt.key), cert: fs.readFileSync(opt.cert) };
// The sends over HTTP/2 with Node's stream API (its HTTP/1 compatibility layer costs as much
// CPU per message as the client under test); the token request, which aiohttp and google-auth
// make over HTTP/1.1, on a port of its own.
const server = http2.createSecureServer({ ...tls, settings: { maxConcurrentStreams: opt.maxStreams } });
server.on('session', (session) => { stats.connections_opened++; session.on('error', () => {}); });
server.on('stream', (stream, headers) => {
  stream.on('error', () => {});
  readBody(stream, (body) => {
    if (headers[':method'] === 'POST' && headers[':path'] === SEND_PATH) return send(stream, headers, body);
    return refuse(stream, 404, `no route ${headers[':method']} ${headers[':path']}`);
  });
});

const tokenServer = https.createServer(tls, (request, response) => {
  readBody(request, (body) => {
    if (request.method === 'POST' && request.url === '/token') return token(response, body);
    return refuse(response, 404, `no route ${request.method} ${request.url}`);
  });
});

const statsServer = http.createServer((request, response) => {
  if (request.method === 'POST' && request.url === '/reset') {  // between runs of one mock
    for (const name of Object.keys(stats)) stats[name] = 0;
    deliveredTokens.clear();
  }
  response.setHeader('content-type', 'application/json');
  response.end(JSON.stringify(stats));
});

server.listen(opt.port, '127.0.0.1', () => {
  tokenServer.listen(0, '127.0.0.1', () => {
    statsServer.listen(opt.statsPort, '127.0.0.1', () => {
      const port = server.address().port;
      console.log(JSON.stringify({
        mock_fcm: 'listening', port, url: `https://127.0.0.1:${port}`,
        token_uri: `https://127.0.0.1:${tokenServer.address().port}/token`,
        stats_port: statsServer.address().port }));
    });
  });
});
for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => process.exit(0));
