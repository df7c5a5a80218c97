pub mod health;
pub mod jobs;
pub mod queues;
pub mod schedules;
