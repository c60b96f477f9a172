//! `fetcher`: CID-verified retrieval of UnixFS files from IPFS gateways and local mirrors,
//! and CIDs computed exactly as `ipfs add` does.
//!
//! Pure cores: [`cid`], [`pb`], [`dagpb`], [`unixfs`], [`car`], [`verify`] (the DAG walk)
//! and [`importer`] (CID computation). Shells: [`gateway`] (HTTP), [`mirror`] (a local
//! directory) and [`fetch`] (sources in order, each with its share of the total timeout;
//! temp file, rename). [`error`] holds the one error type and [`error::report`], the one
//! way an error is printed.

pub mod car;
pub mod cid;
pub mod cli;
pub mod dagpb;
pub mod error;
pub mod fetch;
pub mod gateway;
pub mod importer;
pub mod mirror;
pub mod output;
pub mod pb;
pub mod unixfs;
pub mod verify;

pub use error::{FetchError, Result};
