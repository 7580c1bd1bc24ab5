// A minimal Redis (RESP) client for the node test suites (tests/interop, tests/browser): enough
// for SCAN / DEL / PING / GET, with no dependency beyond node itself, so both suites share it.
'use strict'

const net = require('node:net')

/** Sends one command and resolves with its parsed reply (errors reject). */
function redisCommand ({ host, port }, args, timeout = 3000) {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port })
    let buf = Buffer.alloc(0)
    const timer = setTimeout(() => fail(new Error(`redis ${args[0]}: no answer in ${timeout} ms`)), timeout)
    const fail = (e) => { clearTimeout(timer); socket.destroy(); reject(e) }
    socket.on('error', fail)
    socket.on('connect', () => {
      let out = `*${args.length}\r\n`
      for (const a of args) out += `$${Buffer.byteLength(String(a))}\r\n${a}\r\n`
      socket.write(out)
    })
    socket.on('data', (chunk) => {
      buf = Buffer.concat([buf, chunk])
      const parsed = parseResp(buf, 0)
      if (parsed === undefined) return
      clearTimeout(timer)
      socket.end()
      if (parsed.value instanceof Error) reject(parsed.value)
      else resolve(parsed.value)
    })
  })
}

/** One RESP value from `buf` at `at`: `{ value, end }`, or undefined if incomplete. */
function parseResp (buf, at) {
  const eol = buf.indexOf('\r\n', at)
  if (eol < 0) return undefined
  const type = String.fromCharCode(buf[at])
  const line = buf.toString('utf8', at + 1, eol)
  switch (type) {
    case '+': return { value: line, end: eol + 2 }
    case '-': return { value: new Error(line), end: eol + 2 }
    case ':': return { value: Number(line), end: eol + 2 }
    case '$': {
      const n = Number(line)
      if (n < 0) return { value: null, end: eol + 2 }
      if (buf.length < eol + 2 + n + 2) return undefined
      return { value: buf.toString('utf8', eol + 2, eol + 2 + n), end: eol + 2 + n + 2 }
    }
    case '*': {
      const n = Number(line)
      if (n < 0) return { value: null, end: eol + 2 }
      const items = []
      let end = eol + 2
      for (let i = 0; i < n; i++) {
        const item = parseResp(buf, end)
        if (item === undefined) return undefined
        items.push(item.value)
        end = item.end
      }
      return { value: items, end }
    }
    default: throw new Error(`unexpected RESP type ${JSON.stringify(type)}`)
  }
}

/** Every key under `prefix` (SCAN MATCH prefix*). */
module.exports = { redisCommand, parseResp }
