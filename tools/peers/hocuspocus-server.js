// Hocuspocus 4.x as a team would deploy it next to docroom: @hocuspocus/extension-redis for
// Redis, @hocuspocus/extension-database storing each document's Yjs state in PostgreSQL (pg).
//
//   HOST=127.0.0.1 PORT=1235 DATABASE_URL=postgres://postgres@127.0.0.1:5432/docroom_bench \
//   REDIS_URL=redis://127.0.0.1:6379 REDIS_PREFIX=bench-hocuspocus node hocuspocus-server.js
//
// Logs `listening addr=HOST:PORT` on stderr once it accepts connections; SIGTERM stores every
// loaded document and exits (Hocuspocus's own signal handling).
"use strict";

const { Server } = require("@hocuspocus/server");
const { Redis } = require("@hocuspocus/extension-redis");
const { Database } = require("@hocuspocus/extension-database");
const { Pool } = require("pg");

const host = process.env.HOST || "127.0.0.1";
const port = Number(process.env.PORT || 1235);
const redisUrl = new URL(process.env.REDIS_URL || "redis://127.0.0.1:6379");
const pool = new Pool({
  connectionString:
    process.env.DATABASE_URL || "postgres://postgres@127.0.0.1:5432/docroom_bench",
  max: 8,
});

async function main() {
  await pool.query(`create table if not exists hocuspocus_documents (
    name text primary key,
    data bytea not null,
    updated_at timestamptz not null default now()
  )`);
  const server = new Server({
    address: host,
    port,
    quiet: true,
    extensions: [
      new Redis({
        host: redisUrl.hostname,
        port: Number(redisUrl.port || 6379),
        prefix: process.env.REDIS_PREFIX || "bench-hocuspocus",
      }),
      new Database({
        fetch: async ({ documentName }) => {
          const { rows } = await pool.query(
            "select data from hocuspocus_documents where name = $1",
            [documentName],
          );
          return rows.length ? rows[0].data : null;
        },
        store: async ({ documentName, state }) => {
          await pool.query(
            `insert into hocuspocus_documents (name, data) values ($1, $2)
             on conflict (name) do update set data = excluded.data, updated_at = now()`,
            [documentName, state],
          );
        },
      }),
    ],
  });
  await server.listen();
  console.error(`listening addr=${host}:${port}`);
}

main().catch((err) => {
  console.error("hocuspocus-server:", err);
  process.exit(1);
});
