//! docroom's integration tests: the built binary as a child process, real Redis, real PostgreSQL,
//! real WebSocket clients. `harness` says what every test gets; each other module is one area of
//! behaviour, its tests named after what they prove.

mod harness;

mod bad_input;
mod cache_layout;
mod cold_reads;
mod database_outage;
mod duplicates;
mod editing;
mod flushing;
mod leaving;
mod operator_api;
mod recovery;
