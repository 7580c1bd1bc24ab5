//! docroom's integration tests: the app started in this process (the built binary as a child
//! process where a signal, a kill or the exit is the story), real Redis, real PostgreSQL, real
//! WebSocket clients. `harness` says what every test gets; each other module is one area of
//! behaviour, its tests named after what they prove.

mod harness;

mod abuse;
mod bad_input;
mod breaker_admin;
mod cache_layout;
mod client_tokens;
mod cold_reads;
mod config_files;
mod crash_recovery;
mod data_stores;
mod data_stores_tls;
mod database_outage;
mod document_ids;
mod double_faults;
mod duplicates;
mod durability_holes;
mod editing;
mod flushing;
mod history;
mod hocuspocus;
mod hostile_input;
mod import_hocuspocus;
mod large_documents;
mod leaving;
mod log_points;
mod long_database_outage;
mod long_double_outage;
mod metrics_and_tokens;
mod operator_api;
mod origins_and_limits;
mod recovery;
mod redis_outage;
mod replay_journal;
mod replica_faults;
mod replica_lifecycle;
mod replica_races;
mod replicas;
mod shutdown;
mod update_log;
mod versions;
mod webhooks;
mod yjs_protocol;
