// A webhook receiver for the benchmarks: answers 204 to every request, counts them by
// x-docroom-event, and prints the counts as one JSON line on stdout when stopped (SIGTERM/SIGINT).
//
//   HOST=127.0.0.1 PORT=1234 node webhook-receiver.js
//
// Logs `listening addr=HOST:PORT` on stderr once it accepts connections.
"use strict";

const http = require("http");

const host = process.env.HOST || "127.0.0.1";
const port = Number(process.env.PORT || "1234");
const counts = { requests: 0, events: {} };

const server = http.createServer((req, res) => {
  const event = req.headers["x-docroom-event"] || "none";
  req.resume(); // the body is not read: drain it so the connection can be reused
  req.on("end", () => {
    counts.requests += 1;
    counts.events[event] = (counts.events[event] || 0) + 1;
    res.writeHead(204).end();
  });
});
server.listen(port, host, () => console.error(`listening addr=${host}:${port}`));

for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => {
    process.stdout.write(`${JSON.stringify(counts)}\n`);
    process.exit(0);
  });
}
