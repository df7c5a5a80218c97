//! The `roundhouse` binary against a real stack (api and worker in process,
//! a private database and RabbitMQ prefix), run as a process.

mod errors;
mod helpers;
mod jobs;
mod migrate;
mod queues;
mod schedules;
mod tail;
