'use strict'
// `@hocuspocus/provider` 2.x, 3.x and 4.x (npm aliases hp2, hp3, hp4) against docroom's
// `/hocuspocus`, opened exactly as an application would (only the URL is docroom's).

const crypto = require('node:crypto')
const WebSocket = require('ws')

// Node 20 has no WebSocket global; a 2.x provider given `url` ignores `WebSocketPolyfill`.
globalThis.WebSocket = globalThis.WebSocket || WebSocket

const { Y, eventually } = require('./docroom')

const VERSIONS = {
  '2.x': require('hp2'),
  '3.x': require('hp3'),
  '4.x': require('hp4')
}

/** An HS256 JWT with docroom's claims (SPEC §3), valid for an hour. */
function jwt (secret, docs, scope) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url')
  const head = b64({ alg: 'HS256', typ: 'JWT' })
  const body = b64({ docs, scope, exp: Math.floor(Date.now() / 1000) + 3600 })
  const sig = crypto.createHmac('sha256', secret).update(`${head}.${body}`).digest('base64url')
  return `${head}.${body}.${sig}`
}

function hocuspocusUrl (app) {
  return `ws://${app.addr}/hocuspocus`
}

/**
 * A provider of `version` on a fresh Y.Doc; on its own socket, or on `socket` (a
 * `HocuspocusProviderWebsocket` from `openSocket`). Records the events tests look at.
 */
function openHp (ctx, version, app, name, { token, socket, awareness } = {}) {
  const { HocuspocusProvider } = VERSIONS[version]
  const document = new Y.Doc()
  const events = { authenticated: [], failed: [], closes: 0, disconnects: 0 }
  const config = {
    name,
    document,
    onAuthenticated: (e) => events.authenticated.push(e ? e.scope : undefined),
    onAuthenticationFailed: (e) => events.failed.push(e ? e.reason : undefined),
    onClose: () => { events.closes += 1 },
    onDisconnect: () => { events.disconnects += 1 }
  }
  if (token !== undefined) config.token = token
  if (socket) {
    config.websocketProvider = socket
  } else {
    config.url = hocuspocusUrl(app)
    config.WebSocketPolyfill = WebSocket
  }
  const provider = new HocuspocusProvider(config)
  // 3.x/4.x attach to a shared socket only when told; 2.x attaches itself.
  if (socket && version !== '2.x') provider.attach()
  if (awareness) provider.setAwarenessField('user', awareness)
  provider.events = events
  ctx.defer(() => {
    provider.destroy()
    // A 2.x provider given `url` leaves the socket it made (and its timers) running.
    if (!socket && version === '2.x') provider.configuration.websocketProvider.destroy()
    document.destroy()
  })
  return provider
}

function openSocket (ctx, version, app) {
  const { HocuspocusProviderWebsocket } = VERSIONS[version]
  const socket = new HocuspocusProviderWebsocket({ url: hocuspocusUrl(app), WebSocketPolyfill: WebSocket })
  ctx.defer(() => socket.destroy())
  return socket
}

async function synced (provider, what = 'provider to sync') {
  await eventually(what, () => {
    if (!provider.isSynced && !provider.synced) throw new Error('not synced')
  })
  return provider
}

async function openSynced (ctx, version, app, name, opts) {
  return synced(openHp(ctx, version, app, name, opts), `${version} provider on ${name} to sync`)
}

module.exports = { VERSIONS, jwt, openHp, openSocket, openSynced, synced, hocuspocusUrl }
