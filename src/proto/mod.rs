//! Code generated from `proto/falco/*.proto` (see `build.rs`), in modules that mirror the proto
//! packages, plus the encoded descriptor set served by reflection, and (`convert`) the
//! conversions from stored records to messages.

pub mod convert;
pub mod wire;

#[allow(clippy::all, missing_docs, non_camel_case_types)]
pub mod falco {
    pub mod schema {
        tonic::include_proto!("falco.schema");
    }
    pub mod version {
        tonic::include_proto!("falco.version");
    }
    pub mod outputs {
        tonic::include_proto!("falco.outputs");
    }
    pub mod inputs {
        tonic::include_proto!("falco.inputs");
    }
    pub mod drops {
        tonic::include_proto!("falco.drops");
    }
    pub mod rules {
        tonic::include_proto!("falco.rules");
    }
    pub mod configs {
        tonic::include_proto!("falco.configs");
    }
    pub mod sidecar {
        tonic::include_proto!("falco.sidecar");
    }
    pub mod metrics {
        tonic::include_proto!("falco.metrics");
    }
    pub mod tokens {
        tonic::include_proto!("falco.tokens");
    }
    pub mod fleet {
        tonic::include_proto!("falco.fleet");
    }
    pub mod store {
        tonic::include_proto!("falco.store");
    }
}

pub use falco::{
    configs, drops, fleet, inputs, metrics, outputs, rules, schema, sidecar, store, tokens, version,
};

/// The encoded `FileDescriptorSet` of every falco-api proto, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/falco_descriptor.bin"));
