//! Greenhouse simulator (placeholder).
