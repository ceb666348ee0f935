//! The record store: its ports are core types (`eds_core::store`, re-exported here);
//! the DynamoDB adapter is [`dynamodb`].

pub mod dynamodb;

pub use eds_core::store::*;
