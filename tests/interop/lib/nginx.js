'use strict'
// Debian's nginx as a load balancer in front of docroom replicas, for tests: run as a
// non-daemon child on a free port, with its own prefix directory, never the system's nginx or
// its configuration. The proxy settings are the repository's config/nginx/docroom.conf (the one
// docker-compose.yml uses), with its upstream servers and listen port replaced by the test's.

const { spawn } = require('node:child_process')
const fs = require('node:fs')
const net = require('node:net')
const os = require('node:os')
const path = require('node:path')

const REPO = path.resolve(__dirname, '..', '..', '..')
const SITE = path.join(REPO, 'config', 'nginx', 'docroom.conf')

/** The nginx binary: $NGINX, Debian's /usr/sbin/nginx, or `nginx` on PATH; null if none. */
function findNginx () {
  const candidates = [process.env.NGINX, '/usr/sbin/nginx', '/usr/local/sbin/nginx']
  for (const dir of (process.env.PATH || '').split(':')) if (dir) candidates.push(path.join(dir, 'nginx'))
  return candidates.find((c) => c && fs.existsSync(c)) || null
}

/** config/nginx/docroom.conf pointed at `upstreams` ('IP:PORT' each) and listening on `port`. */
function siteConfig (upstreams, port) {
  const text = fs.readFileSync(SITE, 'utf8')
  const servers = upstreams.map((u) => `    server ${u} max_fails=1 fail_timeout=5s;`).join('\n')
  const replaced = text
    .replace(/upstream docroom \{[^}]*\}/, `upstream docroom {\n${servers}\n}`)
    .replace(/listen \d+;/, `listen 127.0.0.1:${port};`)
  if (!replaced.includes(servers) || !replaced.includes(`listen 127.0.0.1:${port};`)) {
    throw new Error(`${SITE}: no \`upstream docroom { ... }\` block or \`listen PORT;\` line to replace`)
  }
  return replaced
}

function freePort () {
  return new Promise((resolve, reject) => {
    const server = net.createServer()
    server.on('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address()
      server.close(() => resolve(port))
    })
  })
}

/** Signals every process of `child`'s group; one already gone is not an error. */
function killGroup (child, signal) {
  try {
    process.kill(-child.pid, signal)
  } catch (e) {
    if (e.code !== 'ESRCH') throw e
  }
}

class Nginx {
  constructor (bin, dir, port) {
    this.bin = bin
    this.dir = dir
    this.port = port
    this.addr = `127.0.0.1:${port}`
    this.logs = []
    this.child = null
  }

  /** Starts nginx in front of `apps` (started `Docroom`s); resolves once it proxies /healthz. */
  static async start (apps, track) {
    const bin = findNginx()
    if (!bin) throw new Error('nginx not found (apt-get install nginx, or set NGINX)')
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'docroom-nginx-'))
    const nginx = new Nginx(bin, dir, await freePort())
    fs.writeFileSync(path.join(dir, 'docroom.conf'), siteConfig(apps.map((a) => a.addr), nginx.port))
    const temp = (name) => path.join(dir, 'temp', name)
    for (const name of ['body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) fs.mkdirSync(temp(name), { recursive: true })
    // As root the master would hand its workers to `nobody`, who cannot enter this directory.
    const user = process.getuid && process.getuid() === 0 ? 'user root;\n' : ''
    fs.writeFileSync(path.join(dir, 'nginx.conf'), `${user}worker_processes 1;
daemon off;
pid ${path.join(dir, 'nginx.pid')};
error_log stderr info;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path ${temp('body')};
    proxy_temp_path ${temp('proxy')};
    fastcgi_temp_path ${temp('fastcgi')};
    uwsgi_temp_path ${temp('uwsgi')};
    scgi_temp_path ${temp('scgi')};
    include ${path.join(dir, 'docroom.conf')};
}
`)
    // Its own process group: the master forks a worker, and a kill must reach both (a worker
    // orphaned by a killed master keeps the output pipes, and this test process, alive).
    const child = spawn(bin, ['-p', dir, '-c', path.join(dir, 'nginx.conf'), '-e', 'stderr'], {
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true
    })
    track({ kill: (signal) => killGroup(child, signal), on: (event, fn) => child.on(event, fn) })
    nginx.child = child
    for (const stream of [child.stdout, child.stderr]) {
      stream.setEncoding('utf8')
      stream.on('data', (chunk) => {
        for (const line of chunk.split('\n')) if (line) nginx.logs.push(`[nginx] ${line}`)
        if (process.env.DOCROOM_TEST_LOG) process.stderr.write(chunk)
      })
    }
    let exited = null
    child.on('exit', (code, signal) => { exited = { code, signal } })
    const deadline = Date.now() + 10000
    for (;;) {
      if (exited) throw new Error(`nginx exited: ${JSON.stringify(exited)}\n${nginx.logs.join('\n')}`)
      try {
        const reply = await fetch(nginx.url('/healthz'))
        if (reply.status === 200) return nginx
      } catch {}
      if (Date.now() > deadline) throw new Error(`nginx did not proxy /healthz within 10 s\n${nginx.logs.join('\n')}`)
      await new Promise((resolve) => setTimeout(resolve, 25))
    }
  }

  url (route) {
    return `http://${this.addr}${route}`
  }

  /** What a `WebsocketProvider` takes as its server URL, through the balancer. */
  get yjsUrl () {
    return `ws://${this.addr}/yjs`
  }

  /** Kills nginx, master and worker, and removes its directory. */
  cleanup () {
    if (this.child) killGroup(this.child, 'SIGKILL')
    fs.rmSync(this.dir, { recursive: true, force: true })
  }
}

module.exports = { Nginx, findNginx, siteConfig }
