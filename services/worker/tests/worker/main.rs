//! End-to-end tests of the job lifecycle: the real API router, worker and
//! scheduler (in-process, or as real processes where a crash matters)
//! against the real PostgreSQL and RabbitMQ.

mod helpers;

mod cancel;
mod chaos;
mod crash;
mod data_sync;
mod database;
mod events;
mod http_jobs;
mod lifecycle;
mod llm;
mod maintenance;
mod metrics;
mod notifications;
mod priority;
mod rag;
mod traces;
