//! Checks of the configuration against what is written about it.

mod readme;
