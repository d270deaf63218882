//! The integration tests of Stock Flow, as one test binary: the real application against real
//! MariaDB and Redis (see `common`). Run them all with `cargo test -p stock-flow --test suite`,
//! one module or test with `cargo test -p stock-flow --test suite <module::name or part of it>`.

mod common;

mod channels;
mod chaos;
mod cluster;
mod cluster_infra;
mod db_lock;
mod demo;
mod edge;
mod events;
mod faults;
mod final_answers;
mod fulfilment;
mod holds;
mod locations;
mod metrics;
mod movements;
mod openapi;
mod operators;
mod outage;
mod products;
mod reconcile;
mod redis_path;
mod request_ids;
mod scale;
mod stock_states;
mod store_hours;
mod stores;
mod webhooks;
