//! Integration tests for `roundhouse-auth` (real HTTP against a local JWKS server).

mod hs256;
mod jwks;
mod service;
mod support;
