// The reference y-websocket server, exactly as y-websocket@1.5.4 ships it (bin/server.js):
// documents in memory, no persistence (YPERSISTENCE unset).
//
//   HOST=127.0.0.1 PORT=1234 node y-websocket-server.js
//
// Logs `listening addr=HOST:PORT` on stderr once it accepts connections.
"use strict";

const path = require("path");

const host = (process.env.HOST = process.env.HOST || "127.0.0.1");
const port = (process.env.PORT = process.env.PORT || "1234");
const log = console.log;
console.log = (...args) => {
  // bin/server.js announces itself on stdout; say it the way every bench server does.
  if (String(args[0]).startsWith("running at")) console.error(`listening addr=${host}:${port}`);
  else log(...args);
};
// package.json "exports" does not expose bin/server.js, so load it by path.
require(path.join(__dirname, "node_modules", "y-websocket", "bin", "server.js"));
