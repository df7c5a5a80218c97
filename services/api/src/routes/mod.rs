pub mod callbacks;
pub mod health;
pub mod jobs;
pub mod queues;
pub mod rag;
pub mod schedules;
