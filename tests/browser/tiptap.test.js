'use strict'
// Tiptap 3 with @hocuspocus/provider 4.x in a real headless Chromium against docroom's
// /hocuspocus (SPEC §5b, issue 13): what a user of README's "Using it from Tiptap" does — type
// into the editor — reaches the other editors, and survives a restart of the service; and what a
// backend reads of it (SPEC §9) is what y-prosemirror reads.
//
// The page (tiptap/editor.js) is bundled with esbuild when the test starts and served by a tiny
// HTTP server of the test's own; docroom is the built binary with this test's own key prefix and
// database (lib/docroom.js).
//
//   cargo build && (cd tests/browser && npm ci && node --test tiptap.test.js)

const http = require('node:http')
const path = require('node:path')
const { after, before, test } = require('node:test')
const assert = require('node:assert/strict')

const esbuild = require('esbuild')
const Y = require('yjs')
const { yXmlFragmentToProsemirrorJSON } = require('y-prosemirror')

const { cleanup, deleteKeys, deployment, launchChromium, startDocroom, stopDocroom } = require('./lib/docroom')

const DEP = deployment('tt')
const REPLICA = 'tiptap-replica'
const WAIT = 10000

const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>docroom tiptap</title></head>
<body><div id="editor"></div><script src="/editor.js"></script></body></html>`

let service = null // { child, base, logs }: the running docroom
let pages = null // { server, base }: the static server of the editor page
let browser = null

/** Bundles tiptap/editor.js (Tiptap, Yjs and the provider) into one script for the page. */
async function bundle () {
  const result = await esbuild.build({
    entryPoints: [path.join(__dirname, 'tiptap', 'editor.js')],
    bundle: true,
    format: 'iife',
    target: 'es2020',
    write: false,
    logLevel: 'silent'
  })
  return result.outputFiles[0].contents
}

/** Serves the page and its script on a free loopback port; anything else is a 404. */
async function servePage (script) {
  const server = http.createServer((req, res) => {
    const route = new URL(req.url, 'http://x').pathname
    if (route === '/') {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' })
      res.end(PAGE)
    } else if (route === '/editor.js') {
      res.writeHead(200, { 'Content-Type': 'text/javascript; charset=utf-8' })
      res.end(script)
    } else {
      res.writeHead(404)
      res.end()
    }
  })
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  return { server, base: `http://127.0.0.1:${server.address().port}` }
}

/**
 * A fresh browser context (a separate user) with the editor on document `doc`, once its
 * provider has synced with the running docroom.
 */
async function openEditor (doc) {
  const context = await browser.newContext()
  const page = await context.newPage()
  const problems = []
  page.on('pageerror', (err) => problems.push(`page error: ${err.message}`))
  const url = service.base.replace(/^http/, 'ws') + '/hocuspocus'
  await page.goto(`${pages.base}/?url=${encodeURIComponent(url)}&doc=${encodeURIComponent(doc)}`)
  try {
    await page.waitForFunction(() => window.collab && window.collab.synced, null, { timeout: WAIT })
  } catch (e) {
    throw new Error(`the provider never synced (${problems.join('; ') || 'no page error'}): ${e.message}`)
  }
  assert.equal(await page.evaluate(() => window.collab.authenticated), 'read-write')
  return { context, page, problems }
}

/** Clicks into the editor, moves to the end of the document and types with the keyboard. */
async function typeAtEnd (page, keys) {
  await page.locator('.ProseMirror').click()
  await page.keyboard.press('Control+End')
  for (const key of keys) {
    if (key.startsWith('press:')) await page.keyboard.press(key.slice('press:'.length))
    else await page.keyboard.type(key)
  }
}

/** What the editor holds: its text (blocks separated by blank lines) and its ProseMirror JSON. */
function content (page) {
  return page.evaluate(() => ({
    text: window.collab.editor.getText(),
    json: JSON.stringify(window.collab.editor.getJSON())
  }))
}

/** Waits until the editor's text is exactly `expected`. */
async function waitForText (page, expected, who) {
  try {
    await page.waitForFunction((want) => window.collab.editor.getText() === want, expected, { timeout: WAIT })
  } catch (e) {
    const { text } = await content(page)
    throw new Error(`${who}: the editor never read ${JSON.stringify(expected)}; it reads ${JSON.stringify(text)}`)
  }
}

/** Waits until docroom has confirmed storing everything the page's provider sent (SPEC §5b). */
async function waitForNoUnsyncedChanges (page, who) {
  try {
    await page.waitForFunction(() => window.collab.provider.hasUnsyncedChanges === false, null, { timeout: WAIT })
  } catch (e) {
    const n = await page.evaluate(() => window.collab.provider.unsyncedChanges)
    throw new Error(`${who}'s provider still has ${n} unsynced change(s)`)
  }
}

before(async () => {
  const [started, script] = await Promise.all([startDocroom(DEP, REPLICA), bundle()])
  service = started
  pages = await servePage(script)
  browser = await launchChromium()
})

after(async () => {
  const errors = []
  for (const step of [
    async () => { if (browser) await browser.close() },
    async () => { if (pages) await new Promise((resolve) => pages.server.close(resolve)) },
    () => stopDocroom(service),
    () => cleanup(DEP)
  ]) {
    try { await step() } catch (e) { errors.push(e) }
  }
  if (errors.length) throw errors[0]
})

test('what is typed into one Tiptap editor shows up in the other, both ways', { timeout: 60000 }, async () => {
  const a = await openEditor('tiptap/shared-notes')
  const b = await openEditor('tiptap/shared-notes')
  try {
    await typeAtEnd(a.page, ['Hello from A'])
    await waitForText(b.page, 'Hello from A', 'B')

    await typeAtEnd(b.page, ['press:Enter', 'and B answers'])
    await waitForText(a.page, 'Hello from A\n\nand B answers', 'A')

    await typeAtEnd(a.page, ['!'])
    await waitForText(b.page, 'Hello from A\n\nand B answers!', 'B')

    const [fromA, fromB] = [await content(a.page), await content(b.page)]
    assert.equal(fromA.text, fromB.text)
    assert.equal(fromA.json, fromB.json, 'both editors hold the same document')
    await waitForNoUnsyncedChanges(a.page, 'A')
    await waitForNoUnsyncedChanges(b.page, 'B')
    assert.deepEqual([...a.problems, ...b.problems], [])
  } finally {
    await a.context.close()
    await b.context.close()
  }
})

test('a fresh editor loads the text after docroom restarts with an empty cache', { timeout: 60000 }, async (t) => {
  const doc = 'tiptap/kept'
  const writer = await openEditor(doc)
  let written
  try {
    await typeAtEnd(writer.page, ['Kept ', 'press:Control+b', 'across', 'press:Control+b', ' a restart'])
    await waitForText(writer.page, 'Kept across a restart', 'the writer')
    written = await content(writer.page)
    assert.match(written.json, /"type":"bold"/, 'Control+B made the word bold')
    // Everything the provider sent is stored before the service is stopped.
    await waitForNoUnsyncedChanges(writer.page, 'the writer')
    assert.deepEqual(writer.problems, [])
  } finally {
    await writer.context.close()
  }

  // An orchestrator's stop: SIGTERM drains to PostgreSQL. Then the cache is emptied (this test's
  // keys only) and the service started again on the same database, so the text can only come
  // from PostgreSQL.
  const stopped = await stopDocroom(service)
  assert.deepEqual(stopped, { code: 0, signal: null }, 'docroom exits cleanly on SIGTERM')
  t.diagnostic(`deleted ${await deleteKeys(DEP)} Redis key(s) of this test`)
  service = await startDocroom(DEP, REPLICA)

  const reader = await openEditor(doc)
  try {
    await waitForText(reader.page, 'Kept across a restart', 'the fresh editor')
    assert.equal((await content(reader.page)).json, written.json, 'the same document, marks included')
    assert.deepEqual(reader.problems, [])
  } finally {
    await reader.context.close()
  }
})

/** `json` with every text run's marks in name order (see `prosemirror.rs`: yrs does not keep
 * the order formats were applied in; ProseMirror sorts a node's marks by its schema anyway). */
function marksInNameOrder (json) {
  if (Array.isArray(json)) return json.map(marksInNameOrder)
  if (json === null || typeof json !== 'object') return json
  const out = {}
  for (const [key, value] of Object.entries(json)) out[key] = marksInNameOrder(value)
  if (Array.isArray(out.marks)) out.marks = [...out.marks].sort((a, b) => a.type.localeCompare(b.type))
  return out
}

test('a backend reads a Tiptap document as y-prosemirror reads it, and as text', { timeout: 60000 }, async () => {
  const doc = 'tiptap-rendered'
  const writer = await openEditor(doc)
  try {
    await typeAtEnd(writer.page, [
      '# Meeting notes', 'press:Enter',
      'Hello ', 'press:Control+b', 'bold', 'press:Control+i', ' both', 'press:Control+b',
      'press:Control+i', ' plain', 'press:Enter', 'press:Enter',
      '- first item', 'press:Enter', 'second é 文 😀'
    ])
    await waitForNoUnsyncedChanges(writer.page, 'the writer')
    assert.deepEqual(writer.problems, [])
  } finally {
    await writer.context.close()
  }
  const get = async (format) => {
    const res = await fetch(`${service.base}/docs/${doc}?format=${format}`)
    assert.equal(res.status, 200, `format=${format}: ${res.status}`)
    return res
  }

  const update = new Uint8Array(await (await get('update')).arrayBuffer())
  const ydoc = new Y.Doc()
  Y.applyUpdate(ydoc, update)
  const expected = yXmlFragmentToProsemirrorJSON(ydoc.getXmlFragment('default'))
  const rendered = await (await get('prosemirror')).json()

  assert.equal(expected.content[0].type, 'heading', JSON.stringify(expected))
  assert.match(JSON.stringify(expected), /"italic"/, 'a run with two marks')
  assert.deepEqual(marksInNameOrder(rendered), marksInNameOrder(expected))
  // Tiptap keeps an empty paragraph after a list that ends the document: the last line.
  assert.deepEqual(expected.content.at(-1), { type: 'paragraph' })
  const text = await (await get('text')).text()
  assert.equal(text, 'Meeting notes\nHello bold both plain\n\nfirst item\nsecond é 文 😀\n')
})

test('an agent edits what it read while a Tiptap editor types into the same paragraph: both survive', { timeout: 60000 }, async () => {
  const doc = 'tiptap-agent'
  const member = await openEditor(doc)
  try {
    await typeAtEnd(member.page, ['# Plan', 'press:Enter', 'Draft text'])
    await waitForNoUnsyncedChanges(member.page, 'the member')
    const read = await fetch(`${service.base}/docs/${doc}?format=prosemirror`)
    assert.equal(read.status, 200)
    const base = read.headers.get('x-docroom-state-vector')
    assert.ok(base, 'the rendering names the state vector it was read at')
    const json = await read.json()

    // While the agent thinks, the member goes on typing at the end of that paragraph (the
    // second line: Tiptap may keep an empty paragraph after it).
    await member.page.locator('.ProseMirror').click()
    for (const key of ['Control+Home', 'ArrowDown', 'End']) await member.page.keyboard.press(key)
    await member.page.keyboard.type(' typed meanwhile')
    await waitForNoUnsyncedChanges(member.page, 'the member')
    const paragraph = json.content[1]
    assert.deepEqual(paragraph, { type: 'paragraph', content: [{ type: 'text', text: 'Draft text' }] })
    paragraph.content[0].text = 'Better draft text'
    json.content = [json.content[0], paragraph,
      { type: 'paragraph', content: [{ type: 'text', text: 'Added by the agent', marks: [{ type: 'bold', attrs: {} }] }] }]
    const put = await fetch(`${service.base}/docs/${doc}/prosemirror?base=${encodeURIComponent(base)}`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(json)
    })
    const answer = await put.json()
    assert.equal(put.status, 200, JSON.stringify(answer))
    assert.equal(answer.stored, 'cache')

    await waitForText(member.page, 'Plan\n\nBetter draft text typed meanwhile\n\nAdded by the agent', 'the member')
    const update = new Uint8Array(await (await fetch(`${service.base}/docs/${doc}?format=update`)).arrayBuffer())
    const ydoc = new Y.Doc()
    Y.applyUpdate(ydoc, update)
    // What the agent wrote is laid out as y-prosemirror lays it out: it reads back the same.
    const rendered = await (await fetch(`${service.base}/docs/${doc}?format=prosemirror`)).json()
    assert.deepEqual(marksInNameOrder(rendered), marksInNameOrder(yXmlFragmentToProsemirrorJSON(ydoc.getXmlFragment('default'))))
    assert.deepEqual(rendered.content.at(-1).content[0].marks, [{ type: 'bold', attrs: {} }])
    assert.deepEqual(member.problems, [])
  } finally {
    await member.context.close()
  }
})
