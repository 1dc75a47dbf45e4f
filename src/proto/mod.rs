//! Generated gRPC code (package `dfs.v1`) and, in `convert.rs`, every translation between
//! wire messages and domain types. Only service layers, the SDK's transport and the
//! conversions touch `pb` types.

pub mod convert;

#[allow(clippy::all, clippy::pedantic)]
pub mod pb {
    tonic::include_proto!("dfs.v1");
}

/// Every RPC of every service, generated from the proto definitions by build.rs.
pub mod methods {
    include!(concat!(env!("OUT_DIR"), "/rpc_methods.rs"));
}
