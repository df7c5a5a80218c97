pub mod callbacks;
pub mod events;
pub mod health;
pub mod jobs;
pub mod queues;
pub mod rag;
pub mod schedules;
pub mod ws;
